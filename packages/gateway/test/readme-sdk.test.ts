/**
 * The README's `@airlock/sdk` examples, type-checked against the SDK's source in this
 * repository, so that a renamed export or option fails here rather than in a reader's editor.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { removeDir } from "./support/gateway.js";

const repoRoot = fileURLToPath(new URL("../../..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "airlock-readme-sdk-"));

afterAll(() => removeDir(dir));

/** Every ```ts block of the README that imports the SDK. */
function sdkExamples(): string[] {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  return [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)]
    .map((match) => match[1]!)
    .filter((code) => code.includes('from "@airlock/sdk"'));
}

/**
 * Runs the compiler (the native one: no JS API) on the files, `@airlock/sdk` mapped to the
 * SDK's source, with the repository's own strictness; its diagnostics as it prints them.
 */
function typeCheck(files: Record<string, string>): Promise<{ code: number; output: string }> {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      extends: join(repoRoot, "tsconfig.base.json"),
      compilerOptions: {
        noEmit: true,
        // An agent on Node.js, as the example is: fetch from the DOM's types, process from Node's.
        lib: ["es2023", "dom"],
        typeRoots: [join(repoRoot, "node_modules", "@types")],
        paths: { "@airlock/sdk": [join(repoRoot, "packages", "sdk", "src", "index.ts")] },
      },
      files: Object.keys(files),
    }),
  );
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(repoRoot, "node_modules", "typescript", "bin", "tsc"), "-p", dir, "--pretty", "false"],
      { cwd: dir, timeout: 60_000 },
      (error, stdout, stderr) =>
        resolve({
          code: error ? (typeof error.code === "number" ? error.code : 1) : 0,
          output: stdout + stderr,
        }),
    );
  });
}

describe("the README's SDK example", () => {
  it("type-checks against the SDK, and a name the SDK does not export would not", async () => {
    const examples = sdkExamples();
    expect(examples.length).toBeGreaterThan(0);
    const files: Record<string, string> = {};
    examples.forEach((code, i) => {
      files[`example-${i}.mts`] = code;
    });
    // The same first example importing one more name: shows that the check would catch it,
    // rather than pass because the SDK was not found or was typed as any.
    const first = examples[0]!;
    const wrong = first.replace(
      /import \{([^}]*)\} from "@airlock\/sdk";/,
      'import {$1, AirlockNoSuchExport } from "@airlock/sdk";',
    );
    expect(wrong).not.toBe(first);
    files["wrong.mts"] = `${wrong}\nexport const used = AirlockNoSuchExport;\n`;

    const { code, output } = await typeCheck(files);
    const diagnostics = output.split("\n").filter((line) => /error TS\d+/.test(line));
    // Only the altered copy fails, and for the name it made up.
    expect(diagnostics.filter((line) => !line.startsWith("wrong.mts"))).toEqual([]);
    expect(diagnostics.join("\n")).toMatch(/wrong\.mts.*error TS2305:.*AirlockNoSuchExport/);
    expect(code).not.toBe(0);
  });
});
