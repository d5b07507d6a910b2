/**
 * `airlock demo` (what `npm start` runs): the example config against a built-in billing API,
 * on a fresh SQLite file, with tokens made up front and copy-paste commands to try.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { loadConfigFile } from "../../config/config-load.js";
import { isAirlockError } from "../../errors.js";
import { createGateway } from "../../main.js";
import { lockDatabase } from "../../store/sqlite/sqlite-lock.js";
import { addressInUse, CliError, parse } from "../cli-support.js";
import { startDemoUpstream } from "../demo-upstream.js";
import { untilSignal } from "./serve.js";

const usage = `Usage: airlock demo [--port 7070] [--upstream-port 9090] [--data DIR]

Runs Airlock on the bundled example config (examples/airlock.yaml) with a demo billing API,
fresh embedded storage under DIR (default ./.airlock), and tokens for the example's agent and
reviewers. Prints commands to try. Ctrl-C stops it. The config it runs is written to
DIR/demo.yaml, for the commands that open the store: airlock audit verify --config DIR/demo.yaml`;

export const exampleConfigPath = fileURLToPath(
  new URL("../../../examples/airlock.yaml", import.meta.url),
);

function portOption(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new CliError(`--${name} must be a port number`, 2);
  return port;
}

export async function demo(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    { port: { type: "string" }, "upstream-port": { type: "string" }, data: { type: "string" } },
    usage,
  );
  const port = portOption(values.port, 7070, "port");
  const upstreamPort = portOption(values["upstream-port"], 9090, "upstream-port");
  const dbPath = resolve(values.data ?? ".airlock", "demo.db");

  // A fresh file each run, unless another demo is using it right now.
  mkdirSync(dirname(dbPath), { recursive: true });
  try {
    lockDatabase(dbPath)();
  } catch (error) {
    if (!isAirlockError(error) || error.code !== "store_unavailable") throw error;
    // The store's own advice (one gateway per file, or PostgreSQL) is not what a demo needs.
    throw new CliError(
      `another demo is running on ${dirname(dbPath)} (it holds ${dbPath}.lock); stop it with Ctrl-C, or run this one beside it: npm start -- --data .airlock/second --port 7171 --upstream-port 9191`,
    );
  }
  for (const suffix of ["", "-wal", "-shm"]) rmSync(dbPath + suffix, { force: true });

  const credential = `demo_${randomBytes(18).toString("base64url")}`;
  const upstream = await startDemoUpstream({ port: upstreamPort, token: credential }).catch(
    (error) => {
      throw (
        addressInUse(
          error,
          `port ${upstreamPort}`,
          "pick another with: npm start -- --upstream-port 9191",
        ) ?? new CliError(String(error))
      );
    },
  );
  const publicUrl = `http://localhost:${port}`;
  // Written out, so that the commands that open the store (audit verify, token create, …)
  // can be pointed at this run's; the credential goes in a file of its own, not in the config.
  const configFile = writeDemoConfig(dirname(dbPath), {
    port,
    publicUrl,
    database: basename(dbPath),
    upstreamUrl: upstream.url,
    credential,
  });
  const loaded = loadConfigFile(configFile);
  const gateway = await createGateway(loaded, { logLevel: "warn" });
  try {
    await gateway.start();
  } catch (error) {
    await gateway.close();
    await upstream.close();
    throw (
      addressInUse(error, `port ${port}`, "pick another with: npm start -- --port 7171") ??
      new CliError(String(error))
    );
  }
  upstream.onCall = (method, path, authorized) =>
    process.stdout.write(
      `  [billing-api] ${method} ${path} ${authorized ? "with Airlock's credential" : "WITHOUT the credential: refused"}\n`,
    );

  const make = async (kind: "agent" | "reviewer", subject: string) =>
    (await gateway.identity.createToken(kind, subject, "demo")).token;
  const tokens = {
    AGENT: await make("agent", "support-bot"),
    BOB: await make("reviewer", "bob@example.com"),
    CAROL: await make("reviewer", "carol@example.com"),
    ALICE: await make("reviewer", "alice@example.com"),
  };

  const api = `${publicUrl}/v1/actions`;
  const curl = (input: string, extra = "") =>
    `curl -s ${extra ? `'${api}${extra}'` : api} -H "authorization: Bearer $AGENT" -H 'content-type: application/json' \\\n     -d '${input}'`;
  const cli = "npx airlock";
  const shownConfig = relative(process.cwd(), configFile).startsWith("..")
    ? configFile
    : relative(process.cwd(), configFile);
  process.stdout.write(`
Airlock demo is running.
  gateway   ${publicUrl}   storage ${dbPath} (fresh each run)
  upstream  ${upstream.url}   a demo billing API; only Airlock holds its credential

In a second terminal, paste these tokens (each is shown once):

export AGENT=${tokens.AGENT}   # agent support-bot, owned by alice
export BOB=${tokens.BOB}     # bob@example.com: finance, eng
export CAROL=${tokens.CAROL}   # carol@example.com: finance
export ALICE=${tokens.ALICE}   # alice@example.com: eng; owns support-bot, so never its approver
export AIRLOCK_URL=${publicUrl}

1. A read: allowed by rule "reads pass" and run at once (200, with the upstream's answer)
   ${curl('{"connection":"billing-api","operation":"request","input":{"method":"GET","path":"/invoices"}}')}

2. A delete: denied by rule "nothing else" (403)
   ${curl('{"connection":"billing-api","operation":"request","input":{"method":"DELETE","path":"/invoices/inv_1001"}}')}

3. A refund: held for two finance reviewers. This call waits up to 5 minutes for them:
   ${curl('{"connection":"billing-api","operation":"request","input":{"method":"POST","path":"/refunds","body":{"invoice":"inv_1001","amount":4200,"card_number":"4242424242424242"}},"justification":"Customer was charged twice"}', "?wait=300")}

   Then decide in a third terminal (paste the exports there too):
   AIRLOCK_TOKEN=$BOB ${cli} requests list
   AIRLOCK_TOKEN=$BOB ${cli} requests show <id>        # the card number is masked
   AIRLOCK_TOKEN=$ALICE ${cli} requests approve <id>   # refused: alice owns support-bot
   AIRLOCK_TOKEN=$BOB ${cli} requests approve <id> --comment "double charge confirmed"
   AIRLOCK_TOKEN=$CAROL ${cli} requests approve <id>   # the second approval: the refund runs

4. Every step above, in the tamper-evident audit trail:
   curl -s '${publicUrl}/v1/audit?limit=50' -H "authorization: Bearer $BOB"

5. An agent that speaks MCP connects to ${publicUrl}/mcp with the same token: its tools
   are the connections' operations (billing-api__request), each call decided as above.
   curl -s ${publicUrl}/mcp -H "authorization: Bearer $AGENT" -H 'content-type: application/json' \\
     -H 'accept: application/json, text/event-stream' -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'

6. The commands that open the store (audit, token, policy, outbox) take this run's config:
   ${cli} audit verify --config ${shownConfig}

Ctrl-C stops the demo.

`);
  await untilSignal();
  process.stdout.write("stopping…\n");
  await gateway.close();
  await upstream.close();
  return 0;
}

/**
 * The example config as this run serves it, written next to its store: `demo.yaml`, with the
 * upstream's credential in `billing-api.token` beside it (the example reads it from the
 * environment, which the commands run in another terminal do not have).
 */
function writeDemoConfig(
  dir: string,
  run: {
    port: number;
    publicUrl: string;
    database: string;
    upstreamUrl: string;
    credential: string;
  },
): string {
  const token = join(dir, "billing-api.token");
  writeFileSync(token, `${run.credential}\n`, { mode: 0o600 });
  // The mode applies only to a file it creates: one left by an earlier run keeps its own.
  chmodSync(token, 0o600);
  // Its opening comments (the schema's path among them) are the example's, not this copy's.
  const doc = parseDocument(readFileSync(exampleConfigPath, "utf8").replace(/^(#.*\n)+/, ""));
  doc.commentBefore =
    " Written by `airlock demo` for this run: examples/airlock.yaml with its ports, store and\n upstream. Written again, fresh, at the next run.";
  doc.setIn(["server", "port"], run.port);
  doc.setIn(["server", "publicUrl"], run.publicUrl);
  doc.setIn(["storage"], `sqlite:${run.database}`);
  doc.setIn(["connections", "billing-api", "baseUrl"], run.upstreamUrl);
  doc.setIn(
    ["connections", "billing-api", "headers", "authorization"],
    "Bearer ${file:billing-api.token}",
  );
  const file = join(dir, "demo.yaml");
  writeFileSync(file, doc.toString({ lineWidth: 0, flowCollectionPadding: false }));
  return file;
}
