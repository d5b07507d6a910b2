/**
 * `${env:NAME}` and `${file:PATH}` references, resolved in the parsed YAML tree so every
 * problem is reported at the path where it sits. Resolved values are remembered as secrets.
 */
import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import type { ConfigIssue } from "./config-errors.js";

/** `$${` (a literal `${`), a reference, or any other `${`, which is refused rather than kept. */
const reference = /\$\$\{|\$\{([a-z]+):([^}]*)\}|\$\{/g;

export interface RefContext {
  env: Record<string, string | undefined>;
  baseDir: string;
}

export interface ResolvedRefs {
  value: unknown;
  secrets: string[];
  /** Where each of `secrets` came from, in the same order: its path and its reference. */
  origins: { path: (string | number)[]; reference: string }[];
  issues: ConfigIssue[];
  /** Where a reference was resolved: what is built there may quote a secret in part. */
  referenced: (string | number)[][];
}

export function resolveRefs(tree: unknown, context: RefContext): ResolvedRefs {
  const secrets: string[] = [];
  const origins: ResolvedRefs["origins"] = [];
  const issues: ConfigIssue[] = [];
  const referenced: (string | number)[][] = [];
  const walk = (value: unknown, path: (string | number)[]): unknown => {
    if (typeof value === "string") return resolveString(value, path);
    if (Array.isArray(value)) return value.map((item, i) => walk(item, [...path, i]));
    if (value && typeof value === "object") {
      const out: Record<string, unknown> = {};
      for (const [key, child] of Object.entries(value)) {
        // Assigned, it would set the object's prototype: what it holds would pass for settings
        // of the object around it (the YAML parser keeps it as an ordinary key).
        if (key === "__proto__") {
          issues.push({
            path: [...path, key],
            message:
              "__proto__ cannot be a key; remove it, and move any settings under it up a level",
          });
          continue;
        }
        // Keys name things (a header, a label): a secret has no place there, and one left
        // unresolved would be taken as it is written.
        if (key.replaceAll("$${", "").includes("${")) {
          issues.push({
            path: [...path, key],
            message:
              "references are resolved in values only, not in keys; write the key out as it is",
          });
        }
        out[key] = walk(child, [...path, key]);
      }
      return out;
    }
    return value;
  };
  const resolveString = (text: string, path: (string | number)[]): string => {
    if (!text.includes("${")) return text;
    let resolved = false;
    const out = text.replace(
      reference,
      (match, kind: string | undefined, arg: string | undefined) => {
        if (match === "$${") return "${";
        if (match === "${") {
          issues.push({
            path,
            message:
              "${ starts no reference: write ${env:NAME} or ${file:PATH}, in lower case and closed by }; write $${ for a literal ${",
          });
          return "";
        }
        const name = (arg ?? "").trim();
        if (name === "" && (kind === "env" || kind === "file")) {
          issues.push({
            path,
            message: `\${${kind}:} names nothing; write ${kind === "env" ? "${env:NAME}, like ${env:API_TOKEN}" : "${file:PATH}, like ${file:/run/secrets/api-token}"}`,
          });
          return "";
        }
        if (kind === "env") {
          const found = context.env[name];
          if (found === undefined || found === "") {
            issues.push({ path, message: `environment variable ${name} is not set` });
            return "";
          }
          secrets.push(found);
          origins.push({ path, reference: match });
          resolved = true;
          return found;
        }
        if (kind === "file") {
          const file = isAbsolute(name) ? name : resolve(context.baseDir, name);
          try {
            const content = readFileSync(file, "utf8").replace(/\r?\n$/, "");
            // As an empty environment variable is: a secret file not filled in yet would
            // otherwise send a blank credential (`Bearer `) without a word.
            if (content === "") {
              issues.push({ path, message: `${file} is empty` });
              return "";
            }
            secrets.push(content);
            origins.push({ path, reference: match });
            resolved = true;
            return content;
          } catch (error) {
            const code = (error as NodeJS.ErrnoException).code;
            issues.push({
              path,
              message: `cannot read ${file}: ${code === "ENOENT" ? "no such file" : (code ?? String(error))}`,
            });
            return "";
          }
        }
        issues.push({
          path,
          message: `unknown reference \${${kind}:…}; use \${env:NAME} or \${file:PATH}`,
        });
        return "";
      },
    );
    if (resolved) referenced.push(path);
    return out;
  };
  return { value: walk(tree, []), secrets, origins, issues, referenced };
}
