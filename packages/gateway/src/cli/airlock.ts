#!/usr/bin/env node
/** The `airlock` command. */
import { version } from "../main.js";
import { CliError, runCommand, subcommand } from "./cli-support.js";
import { audit } from "./commands/audit.js";
import { configCheck } from "./commands/config-check.js";
import { demo } from "./commands/demo.js";
import { outbox } from "./commands/outbox.js";
import { policyTest } from "./commands/policy-test.js";
import { requests } from "./commands/requests.js";
import { serve } from "./commands/serve.js";
import { token } from "./commands/token.js";

const usage = `Airlock ${version}: a human decision between automated actors and privileged operations.

Usage: airlock <command> [options]     (airlock <command> --help for more)

  serve [--config FILE]                   run the gateway
  demo [--port N] [--upstream-port N]     run it on the bundled example, with a demo upstream
  token create --agent NAME | --reviewer EMAIL
  token list | revoke ID
  requests list [--status S] | show ID | approve ID | deny ID [--comment TEXT]
  policy test CASES.yaml                  evaluate rule cases without running anything
  audit verify [--expect-head SEQ:HASH] [--public-key FILE]...
                                          check the audit hash chain (and its signatures)
  audit export --format jsonl|csv [--since TIME] [--output FILE]
  audit checkpoint                        sign the chain's head now (audit.signingKey)
  outbox list [--dead] | redeliver ID... | redeliver --all [--channel NAME]
                                          deliveries still to make, dead letters, and resending them
  config check [--config FILE]            validate a config, listing every error by path

The config is --config FILE, else $AIRLOCK_CONFIG, else ./airlock.yaml.`;

const [command, ...args] = process.argv.slice(2);

await runCommand(async () => {
  switch (command) {
    case "serve":
      return serve(args);
    case "demo":
      return demo(args);
    case "token":
      return token(args);
    case "requests":
      return requests(args);
    case "policy":
      return policyTest(args);
    case "audit":
      return audit(args);
    case "outbox":
      return outbox(args);
    case "config":
      return configCheck(
        subcommand(args, "Usage: airlock config check [--config FILE]", "config", ["check"])[1],
      );
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
