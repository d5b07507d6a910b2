import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { casesFileSchema, runPolicyCases } from "../../policy/policy-cases.js";
import { CliError, configOption, loadConfigOrExit, parse, subcommand } from "../cli-support.js";

const usage = `Usage: airlock policy test CASES.yaml [--config FILE]

Evaluates each case against the rules, without running anything, and prints the result.
Exits 1 when any case gets a decision other than the one it expects.

CASES.yaml:
  cases:
    - name: refunds wait for finance
      agent: support-bot
      connection: billing-api
      operation: request
      input: { method: POST, path: /refunds, body: { amount: 20 } }
      expect: review                              # allow | deny | review
      rule: refunds need two finance reviewers    # optional; null means no rule matched`;

export async function policyTest(args: string[]): Promise<number> {
  const [, rest] = subcommand(args, usage, "policy", ["test"]);
  const { values, positionals } = parse(rest, configOption, usage, 1);
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
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".") || "(root)"}: ${i.message}`);
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
