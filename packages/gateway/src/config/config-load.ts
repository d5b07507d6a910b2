/**
 * Reads airlock.yaml: YAML, then references, then the schema, then the rules' conditions.
 * Every problem is collected with its path before anything is reported, so one run of
 * `airlock config check` lists them all. The result is frozen.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { isMap, isSeq, parseDocument } from "yaml";
import { deepFreeze } from "../common/deep-freeze.js";
import { connectorType } from "../connectors/connector-registry.js";
import { toolNameClashes } from "../connectors/tool-names.js";
import { loopback } from "../identity/oidc-config.js";
import { createRedactor, MIN_SECRET_LENGTH } from "../masking/secret-redactor.js";
import { checkCondition, compilePolicy, type Policy } from "../policy/policy-compile.js";
import { ConfigError, type ConfigIssue, schemaIssue } from "./config-errors.js";
import { type ResolvedRefs, resolveRefs } from "./config-refs.js";
import { configSchema, type ParsedConfig, quorumOf } from "./config-schema.js";

export type AirlockConfig = Omit<ParsedConfig, "server"> & {
  server: ParsedConfig["server"] & { publicUrl: string };
};

export interface LoadedConfig {
  config: AirlockConfig;
  policy: Policy;
  /** Values resolved from references; scrubbed from every output. */
  secrets: readonly string[];
  warnings: ConfigIssue[];
  /** Where the config came from, for messages. */
  source: string;
  /** Directory that relative paths in the config (sqlite:, ${file:}) are resolved against. */
  baseDir: string;
}

export interface LoadOptions {
  env?: Record<string, string | undefined>;
  /** A name for messages when the text did not come from a file. */
  source?: string;
  baseDir?: string;
}

export function configPath(explicit: string | undefined, env = process.env): string {
  return resolve(explicit ?? env.AIRLOCK_CONFIG ?? "airlock.yaml");
}

export function loadConfigFile(path: string, options: LoadOptions = {}): LoadedConfig {
  if (!existsSync(path)) {
    throw new ConfigError(path, [
      {
        path: [],
        message:
          "no such file; pass --config FILE, set AIRLOCK_CONFIG, or run `airlock demo` to try Airlock first",
      },
    ]);
  }
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new ConfigError(path, [
      {
        path: [],
        message:
          code === "EISDIR"
            ? "is a directory; pass the config file itself, like --config airlock.yaml"
            : `cannot be read (${code ?? (error as Error).message}); check the path and its permissions`,
      },
    ]);
  }
  return loadConfigText(text, {
    ...options,
    source: options.source ?? path,
    baseDir: options.baseDir ?? dirname(resolve(path)),
  });
}

export function loadConfigText(text: string, options: LoadOptions = {}): LoadedConfig {
  const source = options.source ?? "config";
  const baseDir = options.baseDir ?? process.cwd();
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((error) => ({
        path: yamlPathAt(doc.contents, error.pos[0]),
        // prettyErrors puts "at line L, column C:" and a code frame after the first line
        message: (error.message.split("\n")[0] ?? error.message).replace(/:$/, ""),
      })),
    );
  }
  let raw: unknown;
  try {
    // Aliases are expanded here: a document built to expand without end is refused.
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (error) {
    throw new ConfigError(source, [
      { path: [], message: `cannot be read as YAML: ${(error as Error).message}` },
    ]);
  }
  const refs = resolveRefs(raw, { env: options.env ?? process.env, baseDir });
  const issues: ConfigIssue[] = [...refs.issues];
  const parsed = configSchema.safeParse(refs.value);
  if (!parsed.success) {
    issues.push(...parsed.error.issues.map(schemaIssue));
  }
  issues.push(...crossFieldIssues(refs.value), ...conditionIssues(refs.value, refs.referenced));
  const refused = (found: ConfigIssue[]) =>
    new ConfigError(source, redactIssues(found, refs.secrets));
  if (!parsed.success || issues.length > 0) throw refused(issues);
  const data = parsed.data;
  const { policy, issues: policyIssues } = compilePolicy(data.rules);
  if (policyIssues.length > 0) throw refused(policyIssues);

  const config: AirlockConfig = {
    ...data,
    server: {
      ...data.server,
      publicUrl: data.server.publicUrl ?? `http://localhost:${data.server.port}`,
    },
  };
  return {
    config: deepFreeze(config),
    policy: deepFreeze(policy),
    secrets: Object.freeze([...new Set(refs.secrets)]),
    warnings: redactIssues(warningsFor(config, refs), refs.secrets),
    source,
    baseDir,
  };
}

/**
 * A message can quote what it is about (a value it refuses, a rule's or channel's name),
 * which may have come from a secret reference.
 */
function redactIssues(issues: ConfigIssue[], secrets: readonly string[]): ConfigIssue[] {
  const redactor = createRedactor(secrets);
  return issues.map((issue) => ({ ...issue, message: redactor.redactText(issue.message) }));
}

/**
 * Checks across entries (duplicates, review blocks), run on the raw tree so that they are
 * reported together with every schema error rather than after those are fixed.
 */
function crossFieldIssues(raw: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const tree = (raw ?? {}) as Record<string, unknown>;
  /** The list at `path` (`["channels", "webhooks"]`), or none. */
  const list = (...path: string[]) => {
    let at: unknown = tree;
    for (const key of path) at = (at as Record<string, unknown> | null | undefined)?.[key];
    return Array.isArray(at) ? (at as (Record<string, unknown> | null)[]) : [];
  };
  const duplicates = (
    path: string[],
    field: string,
    what: string,
    normalise = (v: string) => v,
  ) => {
    const first = new Map<string, number>();
    list(...path).forEach((item, index) => {
      const value = item?.[field];
      if (typeof value !== "string") return;
      const earlier = first.get(normalise(value));
      if (earlier === undefined) first.set(normalise(value), index);
      else
        issues.push({
          path: [...path, index, field],
          message: `${what} "${value}" is already defined at ${path.join(".")}[${earlier}]`,
        });
    });
  };
  // Sign-in over plain http would carry the session cookie and the sign-in code in clear.
  const publicUrl = (tree.server as Record<string, unknown> | undefined)?.publicUrl;
  const oidc = (tree.identity as Record<string, unknown> | undefined)?.oidc;
  if (oidc !== undefined && typeof publicUrl === "string" && URL.canParse(publicUrl)) {
    const url = new URL(publicUrl);
    if (url.protocol === "http:" && !loopback(url.hostname)) {
      issues.push({
        path: ["server", "publicUrl"],
        message:
          "must be https:// when identity.oidc is set (plain http is accepted only on loopback, for development): over http the session cookie and sign-in codes travel in clear",
      });
    }
  }
  // Each channel's deliveries wait under its name: two channels of one name would share them.
  duplicates(["channels", "webhooks"], "name", "webhook");
  list("channels", "webhooks").forEach((webhook, index) => {
    const name = webhook?.name;
    // The chat channels' names (SLACK_CHANNEL, TEAMS_CHANNEL), not imported: that would load
    // their SDKs to check a config.
    if (name === "slack" || name === "teams") {
      issues.push({
        path: ["channels", "webhooks", index, "name"],
        message: `"${name}" is the ${name} channel's name; give the webhook another`,
      });
    }
  });
  duplicates(["agents"], "name", "agent");
  duplicates(["reviewers"], "email", "reviewer", (v) => v.toLowerCase());
  duplicates(["rules"], "name", "rule");
  list("rules").forEach((rule, index) => {
    if (
      rule?.review !== undefined &&
      rule.decision !== "review" &&
      typeof rule.decision === "string"
    ) {
      issues.push({
        path: ["rules", index, "review"],
        message: `only a rule with decision: review takes a review block (this one is ${rule.decision})`,
      });
    }
  });
  return issues;
}

/**
 * Conditions are checked on the raw rules too, so a schema error elsewhere does not hide them.
 * CEL's errors quote pieces of the condition ("Unknown variable: AbcDEF"), which the redactor,
 * matching whole values, would let through: for a condition built from a reference, only
 * that it is invalid is said.
 */
function conditionIssues(raw: unknown, referenced: (string | number)[][]): ConfigIssue[] {
  const rules = (raw as { rules?: unknown } | null)?.rules;
  if (!Array.isArray(rules)) return [];
  const issues: ConfigIssue[] = [];
  rules.forEach((rule: { name?: unknown; when?: unknown } | null, index) => {
    if (typeof rule?.when !== "string") return;
    const problem = checkCondition(rule.when);
    if (!problem) return;
    const fromReference = referenced.some(
      (path) => path.length === 3 && path[0] === "rules" && path[1] === index && path[2] === "when",
    );
    issues.push({
      path: ["rules", index, "when"],
      message: `rule "${String(rule.name ?? index)}": ${
        fromReference
          ? "the condition, built with a ${env:} or ${file:} reference, is not valid CEL (the details are withheld: they may quote the secret); check the value it refers to and the text around it"
          : problem
      }`,
    });
  });
  return issues;
}

/** `headers["X-Env"]`, `headers.X_Env` or `"X-Env" in …headers` in a condition. */
const capitalHeader =
  /headers\s*(\[\s*["'][^"']*[A-Z]|\.[\w-]*[A-Z])|["'][^"']*[A-Z][^"']*["']\s+in\s+[\w.]*headers\b/;

/** Things that load but probably do not do what the author meant. */
function warningsFor(
  config: AirlockConfig,
  refs: Pick<ResolvedRefs, "secrets" | "origins">,
): ConfigIssue[] {
  const warnings: ConfigIssue[] = [];
  const catchAll = config.rules.findIndex((rule) => rule.when === undefined);
  if (catchAll >= 0 && catchAll < config.rules.length - 1) {
    warnings.push({
      path: ["rules", catchAll + 1],
      message: `unreachable: rule "${config.rules[catchAll]!.name}" has no condition and always matches first`,
    });
  }
  config.rules.forEach((rule, index) => {
    if (!rule.review) return;
    const eligible = config.reviewers.filter(
      (r) =>
        rule.review!.approvers.length === 0 ||
        r.groups.some((g) => rule.review!.approvers.includes(g)),
    );
    const quorum = quorumOf(rule.review);
    if (eligible.length < quorum) {
      warnings.push({
        path: ["rules", index, "review", "quorum"],
        message: `needs ${quorum} approvers but only ${eligible.length} configured reviewer${eligible.length === 1 ? " is" : "s are"} in ${rule.review.approvers.join(", ") || "any group"}; members from the identity provider may make up the rest`,
      });
    }
    for (const [group, count] of Object.entries(rule.review.require ?? {})) {
      const members = config.reviewers.filter((r) => r.groups.includes(group)).length;
      if (members < count) {
        warnings.push({
          path: ["rules", index, "review", "require", group],
          message: `needs ${count} approval${count === 1 ? "" : "s"} from ${group} but only ${members} configured reviewer${members === 1 ? " is" : "s are"} in it; members from the identity provider may make up the rest`,
        });
      }
    }
  });
  config.rules.forEach((rule, index) => {
    // http header names are lower-cased as the input is read: a capital never matches.
    if (rule.when !== undefined && capitalHeader.test(rule.when)) {
      warnings.push({
        path: ["rules", index, "when"],
        message: `rule "${rule.name}" names a header with capitals, which never matches: http header names are lower-cased as the input is read (write headers["x-env"])`,
      });
    }
  });
  const clashes = toolNameClashes(
    Object.entries(config.connections).map(([connection, settings]) => ({
      connection,
      operations: connectorType(settings.type)?.operationNames(settings) ?? [],
    })),
  );
  for (const clash of clashes) {
    warnings.push({
      path: ["connections", clash.connection],
      message: `operation ${clash.operation} has no MCP tool of its own: its name ${clash.tool} is ${clash.problem}; agents on /mcp do not see it (POST /v1/actions still takes it), so rename the connection or the operation`,
    });
  }
  // Named by where it is and how it is referenced: the value itself would be quoted in clear,
  // as the redactor cannot find one this short.
  refs.secrets.forEach((secret, index) => {
    const origin = refs.origins[index];
    if (!origin || secret.length >= MIN_SECRET_LENGTH) return;
    warnings.push({
      path: origin.path,
      message: `${origin.reference} is shorter than ${MIN_SECRET_LENGTH} characters, too short to look for in text without blanking out ordinary words: it is not scrubbed from responses, logs or audit events; use a longer one`,
    });
  });
  return warnings;
}

/** The key path of the YAML node at a character offset, for parse errors. */
function yamlPathAt(node: unknown, offset: number): (string | number)[] {
  const path: (string | number)[] = [];
  let current = node;
  for (;;) {
    if (isMap(current)) {
      const pair = current.items.find((item) => {
        const range =
          (item.value as { range?: number[] } | null)?.range ??
          (item.key as { range?: number[] } | null)?.range;
        return range !== undefined && offset >= range[0]! && offset <= range[2]!;
      });
      if (!pair) return path;
      path.push(String((pair.key as { value?: unknown })?.value ?? pair.key));
      current = pair.value;
    } else if (isSeq(current)) {
      const index = current.items.findIndex((item) => {
        const range = (item as { range?: number[] } | null)?.range;
        return range !== undefined && offset >= range[0]! && offset <= range[2]!;
      });
      if (index < 0) return path;
      path.push(index);
      current = current.items[index];
    } else {
      return path;
    }
  }
}

/**
 * A rule's `review.channels` names approval channels (those that post a request for a
 * decision; webhooks hear about every request anyway): a misspelt name would leave its
 * reviews unseen. Checked where the channels are known: `config check` against the
 * configured ones, the gateway against those it was also given in code.
 */
export function reviewChannelIssues(
  loaded: { config: Pick<AirlockConfig, "rules">; secrets: readonly string[] },
  approvalChannels: readonly string[],
): ConfigIssue[] {
  const { config } = loaded;
  const issues: ConfigIssue[] = [];
  config.rules.forEach((rule, index) => {
    rule.review?.channels?.forEach((name, at) => {
      if (approvalChannels.includes(name)) return;
      issues.push({
        path: ["rules", index, "review", "channels", at],
        message: `no approval channel named "${name}" is configured (${approvalChannels.length ? `configured: ${approvalChannels.join(", ")}` : "configure channels.slack or channels.teams, or leave this list empty for the console and API only"})`,
      });
    });
  });
  return redactIssues(issues, loaded.secrets);
}
