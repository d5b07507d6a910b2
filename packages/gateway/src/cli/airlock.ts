#!/usr/bin/env node
/**
 * The `airlock` command. Nothing is imported up front: each command loads only its own
 * modules, after the line below, so that `serve` is never without its SIGHUP handler.
 */
import { createRequire } from "node:module";

const [command, ...args] = process.argv.slice(2);

// `serve` reloads its config on SIGHUP, whose default action ends the process, and loading
// the gateway's modules takes a second or more: until serve takes the signal over, a hangup
// is let pass. Serve reads its file after that, so the file read is the one signalled for.
if (command === "serve") process.on("SIGHUP", () => {});

const { CliError, runCommand, subcommand } = await import("./cli-support.js");
const { version } = createRequire(import.meta.url)("../../package.json") as { version: string };

const usage = `Airlock ${version}: a human decision between automated actors and privileged operations.

Usage: airlock <command> [options]     (airlock <command> --help for more)

  serve [--config FILE]                   run the gateway
  demo [--port N] [--upstream-port N] [--data DIR]
                                          run it on the bundled example, with a demo upstream
  token create --agent NAME | --reviewer EMAIL
  token list | revoke ID
  requests list [--status S] [--json] | show ID [--json]
  requests approve ID | deny ID [--comment TEXT] [--hash HASH]
  policy test CASES.yaml                  evaluate rule cases without running anything
  policy replay [--since 7d|DATE]         decide the stored requests again by the config's rules
  audit verify [--all] [--expect-head SEQ:HASH] [--public-key FILE]...
                                          check the audit hash chain (and its signatures)
  audit export --format jsonl|csv [--since 7d|DATE] [--after-seq N] [--output FILE]
  audit checkpoint                        sign the chain's head now (audit.signingKey)
  outbox list [--dead] [--after ID] [--limit N] [--json]
  outbox redeliver ID... | --all [--channel NAME]
                                          deliveries still to make, dead letters, and resending them
  config check [--config FILE]            validate a config, listing every error by path

The config is --config FILE, else $AIRLOCK_CONFIG, else ./airlock.yaml.`;

await runCommand(async () => {
  switch (command) {
    case "serve":
      return (await import("./commands/serve.js")).serve(args);
    case "demo":
      return (await import("./commands/demo.js")).demo(args);
    case "token":
      return (await import("./commands/token.js")).token(args);
    case "requests":
      return (await import("./commands/requests.js")).requests(args);
    case "policy":
      return (await import("./commands/policy.js")).policy(args);
    case "audit":
      return (await import("./commands/audit.js")).audit(args);
    case "outbox":
      return (await import("./commands/outbox.js")).outbox(args);
    case "config": {
      const { configCheck, usage: checkUsage } = await import("./commands/config-check.js");
      return configCheck(subcommand(args, checkUsage, "config", ["check"])[1]);
    }
    case "--version":
    case "-v":
      process.stdout.write(`${version}\n`);
      return 0;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(`${usage}\n`);
      return command === undefined ? 2 : 0;
    default:
      throw new CliError(`unknown command ${command}\n\n${usage}`, 2);
  }
});
