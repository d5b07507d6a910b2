export interface ConfigIssue {
  path: (string | number)[];
  message: string;
}

/** Formats a path the way people write it: `rules[1].review.quorum`. */
export function formatPath(path: readonly (string | number | symbol)[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else out += out ? `.${String(segment)}` : String(segment);
  }
  return out || "(root)";
}

export function formatIssue(issue: ConfigIssue): string {
  return `${formatPath(issue.path)}: ${issue.message}`;
}

/**
 * A schema's problem (zod's) as an issue, in our words where zod's differ: `unknown key "x"`
 * for its `Unrecognized key: "x"`. For every file Airlock reads, so that all word it alike.
 */
export function schemaIssue(issue: {
  path: readonly PropertyKey[];
  code: string;
  message: string;
  keys?: string[];
}): ConfigIssue {
  const path = issue.path as (string | number)[];
  if (issue.code === "unrecognized_keys" && issue.keys) {
    const keys = issue.keys.map((k) => `"${k}"`).join(", ");
    return { path, message: `unknown key${issue.keys.length === 1 ? "" : "s"} ${keys}` };
  }
  return { path, message: issue.message };
}

/** Every problem found in a config, each with its path. Nothing starts while one exists. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  readonly source: string;

  constructor(source: string, issues: ConfigIssue[]) {
    super(
      `${source} has ${issues.length} error${issues.length === 1 ? "" : "s"}:\n${issues
        .map((issue) => `  ${formatIssue(issue)}`)
        .join("\n")}`,
    );
    this.name = "ConfigError";
    this.issues = issues;
    this.source = source;
  }
}
