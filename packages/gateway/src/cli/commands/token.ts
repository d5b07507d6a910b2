import { createLiveConfig } from "../../config/live-config.js";
import { createIdentityService } from "../../identity/identity-service.js";
import { openStore } from "../../store/open-store.js";
import { CliError, configOption, loadConfigOrExit, parse, subcommand } from "../cli-support.js";

const usage = `Usage:
  airlock token create --agent NAME       a token for an agent in the config
  airlock token create --reviewer EMAIL   a personal token for a reviewer in the config
  airlock token list                      tokens, by id and hint (never the token)
  airlock token revoke ID

Options: --config FILE. A new token is printed once, on stdout; only its hash is stored.`;

export async function token(args: string[]): Promise<number> {
  const [sub, rest] = subcommand(args, usage, "token", ["create", "list", "revoke"]);
  const { values, positionals } = parse(
    rest,
    { ...configOption, agent: { type: "string" }, reviewer: { type: "string" } },
    usage,
    sub === "revoke" ? 1 : 0,
  );
  const loaded = loadConfigOrExit(values.config);
  const store = await openStore(loaded.config.storage, loaded.baseDir, {
    // Only making a token may make the database: tokens come before the gateway's first start.
    create: sub === "create",
    migrate: sub === "create",
  });
  const identity = createIdentityService({
    store,
    live: createLiveConfig(loaded),
    // Stamped as the gateways stamp theirs: by the database's clock, not this host's.
    clock: () => store.now(),
  });
  const operator = `cli:${process.env.USER ?? "unknown"}`;
  try {
    if (sub === "create") {
      if ((values.agent === undefined) === (values.reviewer === undefined)) {
        throw new CliError("name exactly one of --agent NAME or --reviewer EMAIL", 2);
      }
      if (values.agent === "" || values.reviewer === "") {
        throw new CliError(
          values.agent === ""
            ? "--agent needs the name of an agent in the config, like --agent support-bot"
            : "--reviewer needs the e-mail of a reviewer in the config, like --reviewer bob@example.com",
          2,
        );
      }
      const kind = values.agent ? "agent" : "reviewer";
      const { token: secret, record } = await identity.createToken(
        kind,
        (values.agent ?? values.reviewer)!,
        operator,
      );
      process.stderr.write(`Token ${record.id} for ${kind} ${record.subject}; it is shown once:\n`);
      process.stdout.write(`${secret}\n`);
      return 0;
    }
    if (sub === "list") {
      const tokens = await store.listTokens();
      // On stderr, as outbox list says it has nothing: stdout stays the lines a script reads.
      if (tokens.length === 0) {
        process.stderr.write(
          "No tokens. Make one with: airlock token create --agent NAME, or --reviewer EMAIL\n",
        );
      }
      for (const t of tokens) {
        const state =
          t.revokedAt === null ? "active" : `revoked ${new Date(t.revokedAt).toISOString()}`;
        process.stdout.write(
          `${t.id}  ${t.kind.padEnd(8)}  ${t.subject.padEnd(28)}  ${t.hint}  ${state}\n`,
        );
      }
      return 0;
    }
    const id = positionals[0];
    if (!id) throw new CliError("name the token to revoke: airlock token revoke ID", 2);
    if (!(await identity.revokeToken(id, operator)))
      throw new CliError(
        `no active token ${id}; see the tokens and their ids with: airlock token list`,
      );
    process.stdout.write(`revoked ${id}\n`);
    return 0;
  } finally {
    await store.close();
  }
}
