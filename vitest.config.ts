import { Socket } from "node:net";
import { defineConfig, type TestProjectInlineConfiguration } from "vitest/config";

/** The scenarios that also run with every gateway's store on PostgreSQL. */
const onBothStores = [
  "approval-loop",
  "bad-input",
  "channels",
  "operations",
  "secrets",
  "webhooks",
  "slack",
  "teams",
  "oidc",
  "exec-actions",
  "postgres-actions",
  "retention",
].map((name) => `packages/gateway/test/${name}.test.ts`);

function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("error", () => done(false));
    socket.connect(port, "127.0.0.1", () => done(true));
  });
}

export default defineConfig(async () => {
  const projects: TestProjectInlineConfiguration[] = [
    {
      extends: true,
      test: {
        name: "sqlite",
        include: ["packages/*/src/**/*.test.ts", "packages/*/test/**/*.test.ts"],
      },
    },
  ];
  // CI runs the PostgreSQL scenarios for real; elsewhere they need a server to be there.
  const postgres =
    process.env.CI === "true" || process.env.AIRLOCK_TEST_POSTGRES !== undefined
      ? true
      : await reachable(5432);
  if (!postgres) {
    process.stderr.write(
      'PostgreSQL scenario runs skipped: nothing listens on 127.0.0.1:5432 (start PostgreSQL with a database "test", or set AIRLOCK_TEST_POSTGRES).\n',
    );
  }
  if (postgres) {
    projects.push({
      extends: true,
      test: {
        name: "postgres",
        include: onBothStores,
        env: { AIRLOCK_TEST_STORAGE: "postgres" },
        globalSetup: ["packages/gateway/test/support/drop-test-schemas.ts"],
      },
    });
  }
  return {
    test: {
      // Generous: several tests start node processes, slow on a busy 2-core machine.
      testTimeout: 45_000,
      hookTimeout: 20_000,
      pool: "forks",
      projects,
    },
  };
});
