/**
 * `npm start` runs `airlock demo`. This runs it as a user would and pastes the commands it
 * prints into a shell, in order: the quickstart must work exactly as printed.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { airlockBin, freePort, killed, runCli } from "./support/cli.js";
import { removeDir } from "./support/gateway.js";

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
let demo: ChildProcess;
let output = "";
let dataDir: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "airlock-demo-"));
  // Left by an earlier run, readable by all: the demo makes it its owner's alone again.
  writeFileSync(join(dataDir, "billing-api.token"), "old\n", { mode: 0o644 });
  const [port, upstreamPort] = [await freePort(), await freePort()];
  demo = spawn(
    process.execPath,
    [
      airlockBin,
      "demo",
      "--port",
      String(port),
      "--upstream-port",
      String(upstreamPort),
      "--data",
      dataDir,
    ],
    {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  demo.stdout!.on("data", (d) => {
    output += d;
  });
  demo.stderr!.on("data", (d) => {
    output += d;
  });
  const deadline = Date.now() + 15_000;
  while (!output.includes("Ctrl-C stops the demo.")) {
    if (demo.exitCode !== null || Date.now() > deadline)
      throw new Error(`the demo did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
});

afterAll(async () => {
  if (demo.exitCode === null) {
    demo.kill("SIGINT");
    await killed(demo);
  }
  removeDir(dataDir);
});

/** Runs lines in bash with the printed exports, from the repository root. */
function shell(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const exports = output
    .split("\n")
    .filter((l) => l.startsWith("export "))
    .join("\n");
  return new Promise((resolve) => {
    execFile(
      "bash",
      ["-c", `${exports}\n${script}`],
      { cwd: repoRoot, timeout: 60_000 },
      (error, stdout, stderr) =>
        resolve({
          code: error ? (typeof error.code === "number" ? error.code : 1) : 0,
          stdout,
          stderr,
        }),
    );
  });
}

/** The printed commands, with continuation lines joined. */
function commands(): string[] {
  return output
    .replace(/\\\n\s*/g, "")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("curl ") || l.startsWith("AIRLOCK_TOKEN="))
    .map((l) => l.replace(/\s+#.*$/, ""));
}

it("prints tokens and the commands to try", () => {
  expect(output).toMatch(/export AGENT=alk_\S{43}/);
  expect(output).toMatch(/export BOB=alk_\S{43}/);
  expect(commands().filter((c) => c.startsWith("curl"))).toHaveLength(5);
  // A continuation the template literal swallowed joins two lines, leaving a run of spaces.
  expect(output).not.toMatch(/\S {3,}-[Hd] /);
});

it("works as printed: an allowed read, a denied delete, and a refund approved from a second terminal", async () => {
  const [read, remove, refund, audit, mcp] = commands().filter((c) => c.startsWith("curl"));
  const tools = JSON.parse((await shell(mcp!)).stdout);
  expect(tools.result.tools.map((t: { name: string }) => t.name)).toContain("billing-api__request");
  const allowed = JSON.parse((await shell(read!)).stdout);
  expect(allowed.status).toBe("succeeded");
  expect(allowed.result.body.invoices).toHaveLength(2);
  const denied = JSON.parse((await shell(remove!)).stdout);
  expect(denied.error.code).toBe("denied");

  const waiting = shell(refund!);
  const reviewerLines = commands().filter((c) => c.startsWith("AIRLOCK_TOKEN="));
  const list = reviewerLines.find((l) => l.endsWith("requests list"))!;
  let id: string | undefined;
  for (let i = 0; i < 100 && !id; i++) {
    id = /req_[0-9a-z]{26}/.exec((await shell(list)).stdout)?.[0];
    if (!id) await new Promise((r) => setTimeout(r, 100));
  }
  expect(id).toBeDefined();
  const run = (line: string) => shell(line.replace("<id>", id!));
  const show = await run(reviewerLines.find((l) => l.includes("requests show"))!);
  expect(show.stdout).toContain('"card_number": "[masked]"');
  const alice = await run(reviewerLines.find((l) => l.startsWith("AIRLOCK_TOKEN=$ALICE"))!);
  expect(alice.code).toBe(1);
  expect(alice.stderr).toContain("self_approval");
  const bob = await run(
    reviewerLines.find((l) => l.startsWith("AIRLOCK_TOKEN=$BOB") && l.includes("approve"))!,
  );
  expect(bob.stdout).toContain("1 of 2 approvals");
  const carol = await run(reviewerLines.find((l) => l.startsWith("AIRLOCK_TOKEN=$CAROL"))!);
  expect(carol.stdout).toContain("2 of 2 approvals");
  const refunded = JSON.parse((await waiting).stdout);
  expect(refunded.status).toBe("succeeded");
  expect(refunded.result.body).toMatchObject({ status: "issued", amount: 4200 });
  expect(output).toContain("[billing-api] POST /refunds with Airlock's credential");
  const trail = JSON.parse((await shell(audit!)).stdout);
  const types = trail.events
    .filter((e: { requestId: string }) => e.requestId === id)
    .map((e: { type: string }) => e.type);
  expect(types).toEqual([
    "request.submitted",
    "request.decided",
    "request.reviewed",
    "request.reviewed",
    "request.approved",
    "execution.started",
    "execution.succeeded",
  ]);
});

it("gives the commands that open the store its config, written out, with the upstream's credential in a file of its own", async () => {
  const line = output
    .split("\n")
    .map((l) => l.trim())
    .find((l) => l.startsWith("npx airlock audit verify --config "));
  expect(line).toBeDefined();
  const args = line!
    .replace(/\s+#.*$/, "")
    .split(/\s+/)
    .slice(2);
  const verified = await runCli(args, { cwd: repoRoot });
  expect(verified.stderr).toBe("");
  expect(verified.stdout).toMatch(/^audit chain OK: \d+ events/);
  const config = readFileSync(args.at(-1)!, "utf8");
  expect(config).toContain("${file:billing-api.token}");
  expect(config).not.toMatch(/demo_[A-Za-z0-9_-]{24}/);
  expect(statSync(join(dataDir, "billing-api.token")).mode & 0o777).toBe(0o600);
});

it("tells a second demo on the same data directory how to run beside the first", async () => {
  const second = await runCli(["demo", "--data", dataDir], { cwd: repoRoot });
  expect(second.code).toBe(1);
  expect(second.stderr).toContain(`another demo is running on ${dataDir}`);
  expect(second.stderr).toContain("npm start -- --data");
  expect(second.stderr).not.toContain("PostgreSQL");
});

it("stops cleanly on Ctrl-C", async () => {
  demo.kill("SIGINT");
  await killed(demo);
  expect(demo.exitCode).toBe(0);
});
