import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { formatIssue, schemaIssue } from "../../config/config-errors.js";
import { createRedactor } from "../../masking/secret-redactor.js";
import { casesFileSchema, runPolicyCases } from "../../policy/policy-cases.js";
import { replayPolicy } from "../../policy/policy-replay.js";
import { openStore } from "../../store/open-store.js";
import {
  CliError,
  configOption,
  loadConfigOrExit,
  parse,
  parseSince,
  subcommand,
} from "../cli-support.js";

const usage = `Usage: airlock policy test CASES.yaml [--config FILE]
       airlock policy replay [--since 7d|DATE] [--config FILE]

test: evaluates each case against the rules, without running anything, and prints the result.
Exits 1 when any case gets a decision other than the one it expects.

replay: decides the requests stored since then (7 days by default) again by the config's
rules, as they came (same agent, action, facts and time), and lists those decided otherwise
than they were. Runs nothing and changes nothing; exits 1 when any is decided otherwise.
Run it with the file you are about to load, before sending the gateway SIGHUP.

CASES.yaml:
  cases:
    - name: refunds wait for finance
      agent: support-bot
      connection: billing-api
      operation: request
      input: { method: POST, path: /refunds, body: { amount: 20 } }
      expect: review                              # allow | deny | review
      rule: refunds need two finance reviewers    # optional; null means no rule matched`;

export async function policy(args: string[]): Promise<number> {
  const [sub, rest] = subcommand(args, usage, "policy", ["test", "replay"]);
  return sub === "test" ? policyTest(rest) : policyReplay(rest);
}

async function policyReplay(args: string[]): Promise<number> {
  const { values } = parse(args, { ...configOption, since: { type: "string" } }, usage);
  const sinceAt = parseSince(values.since ?? "7d");
  const loaded = loadConfigOrExit(values.config);
  // A rule's reason or an evaluation error can quote a secret of the config.
  const redactor = createRedactor(loaded.secrets);
  const store = await openStore(loaded.config.storage, loaded.baseDir, { migrate: false });
  // Counted back from the store's time, which stamped the requests, not this host's.
  const since = sinceAt(store.now());
  const started = performance.now();
  let said = started;
  try {
    const summary = await replayPolicy(
      store,
      loaded.policy,
      since,
      ({ request, was, now, error }) => {
        const preview = request.description.preview.split("\n", 1)[0] ?? "";
        process.stdout.write(
          redactor.redactText(
            `${request.id}  ${new Date(request.createdAt).toISOString()}  ${request.agent.name}  ${request.connection}  ${preview}\n  was ${was}\n  now ${now}${error ? ` (evaluation error: ${error})` : ""}\n`,
          ),
        );
      },
      (replayed) => {
        const now = performance.now();
        if (now - said < 2000) return;
        said = now;
        process.stderr.write(
          `replayed ${replayed.toLocaleString("en-US")} requests so far (${Math.round((now - started) / 1000)} s)\n`,
        );
      },
    );
    const moves = [...summary.moves].map(([move, n]) => `${n} ${move}`).join(", ");
    process.stdout.write(
      `${summary.replayed} request(s) since ${new Date(since).toISOString()} replayed: ${summary.replayed - summary.changed} decided as before, ${summary.changed} otherwise${moves ? ` (${moves})` : ""}\n`,
    );
    return summary.changed > 0 ? 1 : 0;
  } finally {
    await store.close();
  }
}

async function policyTest(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, configOption, usage, 1);
  if (!positionals[0])
    throw new CliError(`name the cases file: airlock policy test CASES.yaml\n\n${usage}`, 2);
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(positionals[0], "utf8"));
  } catch (error) {
    throw new CliError(`cannot read ${positionals[0]}: ${(error as Error).message}`);
  }
  const parsed = casesFileSchema.safeParse(raw);
  if (!parsed.success) {
    // Written as config errors are (`cases[0].expect: …`, `unknown key "x"`), one way for both.
    const lines = parsed.error.issues.map((i) => `  ${formatIssue(schemaIssue(i))}`);
    throw new CliError(`${positionals[0]} is not a valid cases file:\n${lines.join("\n")}`);
  }
  const loaded = loadConfigOrExit(values.config);
  const results = await runPolicyCases(loaded, parsed.data.cases);
  let failed = 0;
  for (const r of results) {
    if (r.ok) process.stdout.write(`  ok    ${r.name}: ${r.got}\n`);
    else {
      failed++;
      process.stdout.write(`  FAIL  ${r.name}: expected ${r.expected}, got ${r.got}\n`);
    }
    if (r.detail) process.stdout.write(`        ${r.detail}\n`);
  }
  process.stdout.write(`${results.length - failed} passed, ${failed} failed\n`);
  return failed > 0 ? 1 : 0;
}
