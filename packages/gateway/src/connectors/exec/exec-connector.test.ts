/** The exec connector against real processes: validation first, then what actually runs. */
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Environment } from "@marcbachmann/cel-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Json } from "../../common/canonical-json.js";
import { AirlockError } from "../../errors.js";
import { createLogger } from "../../observability/logger.js";
import type { Connector } from "../connector.js";
import { execConnectorType } from "./exec-connector.js";

const logger = createLogger({ level: "silent" });
const never = new AbortController().signal;
const open: Connector[] = [];
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "airlock-exec-"));
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function connector(config: Record<string, unknown>, secrets: string[] = []): Connector {
  const parsed = execConnectorType.configSchema.parse({ type: "exec", ...config });
  const c = execConnectorType.create("ops", parsed, { logger, secrets });
  open.push(c);
  return c;
}

/** One command named `run`; the usual shape of these tests. */
function single(command: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return connector({ commands: { run: command }, ...extra });
}

async function run(c: Connector, input: Record<string, unknown> = {}, signal = never) {
  return c.execute("run", c.parse("run", input), signal);
}

function issues(config: Record<string, unknown>): { path: string; message: string }[] {
  const result = execConnectorType.configSchema.safeParse({ type: "exec", ...config });
  if (result.success) return [];
  return result.error.issues.map((i) => ({ path: i.path.join("."), message: i.message }));
}

function refusal(action: () => unknown): AirlockError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(AirlockError);
    return error as AirlockError;
  }
  throw new Error("expected a refusal");
}

/** Alive and not a zombie waiting for a reaper that may never come in a container. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

async function gone(pid: number, ms = 1000): Promise<boolean> {
  for (let i = 0; i < ms / 20; i++) {
    if (!alive(pid)) return true;
    await sleep(20);
  }
  return false;
}

type RunResult = {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  truncated?: { stdout?: string; stderr?: string };
  timedOut?: true;
  aborted?: true;
};

describe("config", () => {
  it("fills the defaults", () => {
    const config = execConnectorType.configSchema.parse({
      type: "exec",
      commands: {
        restart: {
          argv: ["systemctl", "restart", "{service}"],
          args: { service: { enum: ["api", "worker"] } },
        },
      },
    });
    expect(config).toEqual({
      type: "exec",
      env: {},
      timeout: 30_000,
      maxOutputBytes: 1024 * 1024,
      commands: {
        restart: {
          argv: ["systemctl", "restart", "{service}"],
          args: { service: { enum: ["api", "worker"], maxLength: 4096, optional: false } },
          risk: "medium",
        },
      },
    });
  });

  it("names every template mistake by its path", () => {
    const cmd = (command: Record<string, unknown>) => issues({ commands: { x: command } });
    expect(cmd({ argv: ["/bin/echo", "--service={svc}"] })).toEqual([
      { path: "commands.x.argv.1", message: "{svc} is not declared in args" },
    ]);
    expect(cmd({ argv: ["/bin/echo"], args: { service: { enum: ["a"] } } })).toEqual([
      { path: "commands.x.args.service", message: "is declared but argv does not use {service}" },
    ]);
    const bad = cmd({ argv: ["/bin/echo", "{s}"], args: { s: { pattern: "([a-z]" } } });
    expect(bad).toHaveLength(1);
    expect(bad[0]?.path).toBe("commands.x.args.s.pattern");
    expect(bad[0]?.message).toMatch(/^is not a valid regular expression: /);
    expect(cmd({ argv: ["/bin/echo", "{s}"], args: { s: { enum: ["a"], pattern: "a" } } })).toEqual(
      [{ path: "commands.x.args.s", message: "give either enum or pattern, not both" }],
    );
    expect(cmd({ argv: ["/bin/echo", "{s}"], args: { s: {} } })[0]?.path).toBe("commands.x.args.s");
    expect(cmd({ argv: ["{s}"], args: { s: { enum: ["ls"] } } })).toEqual([
      {
        path: "commands.x.argv.0",
        message: "the program must be written out; placeholders may be used from argv[1] on",
      },
    ]);
    expect(cmd({ argv: [] })[0]?.path).toBe("commands.x.argv");
    expect(cmd({ argv: ["/bin/echo", "a{b"] })[0]).toEqual({
      path: "commands.x.argv.1",
      message: 'has an unclosed "{"; write "{{" for a literal brace',
    });
    expect(cmd({ argv: ["/bin/echo", "a}b"] })[0]?.path).toBe("commands.x.argv.1");
    expect(cmd({ argv: ["/bin/echo", "{not a name}"] })[0]?.path).toBe("commands.x.argv.1");
    expect(cmd({ argv: ["/bin/echo", "{s}"], args: { s: { enum: ["a"], default: "b" } } })).toEqual(
      [{ path: "commands.x.args.s.default", message: "is not one of the enum values" }],
    );
    expect(issues({ cwd: "srv/app", commands: { x: { argv: ["ls"] } } })[0]?.path).toBe("cwd");
    expect(issues({ commands: {} })[0]?.path).toBe("commands");
    expect(issues({ commands: { "bad name": { argv: ["ls"] } } })[0]?.path).toBe(
      "commands.bad name",
    );
  });

  it("refuses a pattern that would escape the anchors it is wrapped in", () => {
    // Wrapped without checking, `a)|(.*` would become ^(?:a)|(.*)$ and match anything.
    const found = issues({
      commands: { x: { argv: ["/bin/echo", "{s}"], args: { s: { pattern: "a)|(.*" } } } },
    });
    expect(found[0]?.path).toBe("commands.x.args.s.pattern");
  });
});

describe("parse", () => {
  const restart = () =>
    connector({
      commands: {
        restart: {
          argv: ["systemctl", "restart", "{service}"],
          args: { service: { enum: ["api", "worker"] } },
        },
        logs: {
          argv: ["journalctl", "-u", "{unit}", "--lines={lines}"],
          args: {
            unit: { pattern: "[a-z-]+", maxLength: 20 },
            lines: { pattern: "[0-9]{1,4}", default: "100" },
          },
        },
        tail: {
          argv: ["tail", "{file}", "--follow={follow}"],
          args: { file: { enum: ["/var/log/syslog"] }, follow: { enum: ["name"], optional: true } },
        },
      },
    });

  it("refuses an unknown command, listing the known ones", () => {
    const error = refusal(() => restart().parse("reboot", {}));
    expect(error.code).toBe("unknown_operation");
    expect(error.field).toBe("operation");
    expect(error.message).toBe(
      'connection ops (exec) has no command "reboot"; its commands are: restart, logs, tail',
    );
    expect(refusal(() => restart().parse("constructor", {})).code).toBe("unknown_operation");
  });

  it("refuses unknown, missing, mistyped and out-of-range arguments, naming the field", () => {
    const c = restart();
    const cases: [string, unknown, string, string][] = [
      ["restart", { service: "api", force: "yes" }, "input.force", "unknown argument"],
      ["restart", {}, "input.service", "input.service: is required"],
      ["restart", { service: "db" }, "input.service", 'must be one of "api", "worker"'],
      ["restart", { service: ["api"] }, "input.service", "must be a string"],
      ["restart", { service: "api\0" }, "input.service", "cannot contain a NUL character"],
      ["restart", "api", "input", "must be an object"],
      ["restart", ["api"], "input", "must be an object"],
      ["logs", { unit: "API" }, "input.unit", "must match the pattern [a-z-]+"],
      ["logs", { unit: "api; rm -rf /" }, "input.unit", "must match the pattern"],
      // `$` without the m flag, and the wrapping, leave no room for a trailing line.
      ["logs", { unit: "api\n" }, "input.unit", "must match the pattern"],
      ["logs", { unit: "a".repeat(21) }, "input.unit", "must be at most 20 characters"],
      ["logs", { unit: "api", lines: "12345" }, "input.lines", "must match the pattern"],
      ["logs", { unit: "api", lines: 1.5 }, "input.lines", "must match the pattern"],
      ["logs", { unit: "api", lines: Number.NaN }, "input.lines", "must be a string"],
    ];
    for (const [operation, input, field, message] of cases) {
      const error = refusal(() => c.parse(operation, input));
      expect(error.code, field).toBe("invalid_request");
      expect(error.field, JSON.stringify(input)).toBe(field);
      expect(error.message, JSON.stringify(input)).toContain(message);
    }
  });

  it("normalises to strings, fills defaults and leaves out absent optional arguments", () => {
    const c = restart();
    expect(c.parse("restart", { service: "api" })).toEqual({ service: "api" });
    expect(c.parse("logs", { unit: "api" })).toEqual({ unit: "api", lines: "100" });
    expect(c.parse("logs", { unit: "api", lines: 20 })).toEqual({ unit: "api", lines: "20" });
    expect(c.parse("logs", { unit: "api", lines: null })).toEqual({ unit: "api", lines: "100" });
    expect(c.parse("tail", { file: "/var/log/syslog" })).toEqual({ file: "/var/log/syslog" });
  });

  it("refuses an argument outside its pattern before anything runs", async () => {
    const c = single({
      argv: ["/usr/bin/touch", "{file}"],
      args: { file: { pattern: `${dir}/allowed-[a-z]+` } },
    });
    const forbidden = join(dir, "forbidden");
    for (const file of [forbidden, `${dir}/allowed-x/../forbidden`, `${dir}/allowed-`]) {
      await expect(run(c, { file })).rejects.toMatchObject({
        code: "invalid_request",
        field: "input.file",
      });
    }
    expect(existsSync(forbidden)).toBe(false);
    // The same template does run with a value its pattern allows.
    const out = await run(c, { file: join(dir, "allowed-ok") });
    expect(out.ok).toBe(true);
    expect(existsSync(join(dir, "allowed-ok"))).toBe(true);
  });
});

describe("shell syntax in arguments", () => {
  it("stays one literal argument each", async () => {
    const marker = join(dir, "injected");
    const c = single({
      argv: ["/bin/echo", "{text}"],
      args: { text: { pattern: "[\\s\\S]*" } },
    });
    const payloads = [
      "; rm -rf /",
      `$(touch ${marker})`,
      `\`touch ${marker}\``,
      "&& echo pwned",
      `x\ntouch ${marker}`,
      `| tee ${marker}`,
      `> ${marker}`,
      "*",
      `'"\\`,
    ];
    for (const text of payloads) {
      const out = await run(c, { text });
      expect(out.ok).toBe(true);
      expect((out.result as RunResult).stdout).toBe(`${text}\n`);
    }
    expect(existsSync(marker)).toBe(false);
  });

  it("keeps each placeholder one argument, spaces and all", async () => {
    const c = single({
      argv: ["printf", "[%s]", "{a}", "--b={b}", "{{{a}}}"],
      args: { a: { pattern: ".*" }, b: { pattern: ".*" } },
    });
    const out = await run(c, { a: "x y", b: "" });
    expect((out.result as RunResult).stdout).toBe("[x y][--b=][{x y}]");
  });
});

describe("describe and preview", () => {
  const ops = () =>
    connector({
      cwd: "/srv/app",
      commands: {
        restart: {
          argv: ["systemctl", "restart", "{service}"],
          args: { service: { enum: ["api", "worker"] } },
          risk: "high",
          description: "Restart a service",
          cwd: "/",
        },
        note: {
          argv: ["/bin/echo", "--msg={text}", "{tag}"],
          args: { text: { pattern: "[\\s\\S]*" }, tag: { pattern: "[a-z]+", optional: true } },
        },
      },
    });

  it("gives the exact argv as facts, a preview and the command's risk", async () => {
    const c = ops();
    const d = await c.describe("restart", c.parse("restart", { service: "api" }));
    expect(d).toEqual({
      preview: "cd / && systemctl restart api",
      notes: ["Restart a service"],
      facts: {
        exec: {
          command: "restart",
          program: "systemctl",
          argv: ["systemctl", "restart", "api"],
          args: { service: "api" },
        },
      },
      risk: { level: "high", reason: 'runs command "restart" (systemctl)' },
    });
  });

  it("quotes what a shell would need quoted and drops elements of absent optional arguments", async () => {
    const c = ops();
    const d = await c.describe("note", c.parse("note", { text: "hello world" }));
    expect(d.preview).toBe("cd /srv/app && /bin/echo '--msg=hello world'");
    expect(d.facts).toEqual({
      exec: {
        command: "note",
        program: "/bin/echo",
        argv: ["/bin/echo", "--msg=hello world"],
        args: { text: "hello world" },
      },
    });
    expect(d.risk.level).toBe("medium");
    expect(d.notes).toBeUndefined();
    const preview = (text: string, tag?: string) =>
      c.preview("note", c.parse("note", tag === undefined ? { text } : { text, tag }));
    expect(preview("it's", "x")).toBe(`cd /srv/app && /bin/echo '--msg=it'\\''s' x`);
    expect(preview("plain")).toBe("cd /srv/app && /bin/echo --msg=plain");
    // A reviewer must not read a line break or an invisible character as anything else.
    expect(preview("a\nrm -rf /")).toBe("cd /srv/app && /bin/echo $'--msg=a\\nrm -rf /'");
    expect(preview("safe\u202Eexe.txt")).toBe(
      "cd /srv/app && /bin/echo $'--msg=safe\\u202eexe.txt'",
    );
  });

  it("previews a masked input without the hidden value", () => {
    const c = ops();
    expect(c.preview("restart", { service: "[masked]" })).toBe(
      "cd / && systemctl restart '[masked]'",
    );
  });

  it("declares facts that CEL conditions can use", async () => {
    const c = ops();
    const { namespace, schema } = execConnectorType.facts;
    const env = new Environment().registerVariable({ name: namespace, schema });
    const condition =
      'exec.command == "restart" && exec.args["service"] == "api" && exec.argv.size() > 1 && exec.program == "systemctl"';
    expect(env.check(condition)).toMatchObject({ valid: true, type: "bool" });
    expect(env.check("exec.args.service == 1").valid).toBe(false);
    const facts = (await c.describe("restart", c.parse("restart", { service: "api" }))).facts;
    expect(env.evaluate(condition, facts)).toBe(true);
    const other = (await c.describe("restart", c.parse("restart", { service: "worker" }))).facts;
    expect(env.evaluate(condition, other)).toBe(false);
  });
});

describe("execute", () => {
  it("runs the argv and reports the exit code and output", async () => {
    const c = single({ argv: ["/bin/echo", "hello", "{name}"], args: { name: { enum: ["x"] } } });
    const out = await run(c, { name: "x" });
    expect(out).toEqual({
      ok: true,
      result: { exitCode: 0, signal: null, stdout: "hello x\n", stderr: "" },
      summary: "exit 0, 8 bytes of output",
    });
  });

  it("fails with the exit code", async () => {
    const c = single({ argv: ["/bin/sh", "-c", "echo oops >&2; exit 3"] });
    const out = await run(c);
    expect(out.ok).toBe(false);
    expect(out.reason).toBe("exited with code 3");
    expect(out.summary).toBe("exit 3, 5 bytes of output");
    expect(out.result).toMatchObject({ exitCode: 3, stderr: "oops\n" });
  });

  it("fails without throwing when the program or the working directory is missing", async () => {
    const missing = await run(single({ argv: ["/nonexistent/prog", "x"] }));
    expect(missing).toEqual({
      ok: false,
      result: null,
      summary: "not started",
      reason: "could not start: /nonexistent/prog not found",
    });
    const noDir = await run(single({ argv: ["/bin/echo"], cwd: join(dir, "nowhere") }));
    expect(noDir.reason).toBe(
      `could not start: the working directory ${dir}/nowhere does not exist`,
    );
    // A bare program name is looked up on the configured PATH, not on Airlock's.
    expect((await run(single({ argv: ["echo", "found"] }))).result).toMatchObject({
      stdout: "found\n",
    });
    const offPath = await run(single({ argv: ["echo", "x"], env: { PATH: "/nonexistent" } }));
    expect(offPath.reason).toBe("could not start: echo not found");
  });

  it("runs in the working directory it is given", async () => {
    const out = await run(single({ argv: ["/bin/pwd"] }, { cwd: dir }));
    expect((out.result as RunResult).stdout).toBe(`${dir}\n`);
  });

  it("kills the command and everything it started when the timeout passes", async () => {
    const pidFile = join(dir, "timeout.pid");
    const c = single({
      argv: ["/bin/sh", "-c", 'sleep 30 & echo $! > "$0"; sleep 30', pidFile],
      timeout: "500ms",
    });
    const started = Date.now();
    const out = await run(c);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(out.ok).toBe(false);
    expect(out.summary).toBe("killed after 0.5 s (timeout)");
    expect(out.reason).toBe("timed out after 500 ms and was killed");
    expect(out.result).toMatchObject({ exitCode: null, signal: "SIGTERM", timedOut: true });
    const grandchild = Number(readFileSync(pidFile, "utf8"));
    expect(grandchild).toBeGreaterThan(0);
    expect(await gone(grandchild)).toBe(true);
  });

  it("follows SIGTERM with SIGKILL when the command ignores it", async () => {
    const pidFile = join(dir, "stubborn.pid");
    // An ignored signal stays ignored across exec, so the sleeps shrug off SIGTERM too.
    const c = single({
      argv: ["/bin/sh", "-c", 'trap "" TERM; sleep 30 & echo $! > "$0"; sleep 30', pidFile],
      timeout: "300ms",
    });
    const started = Date.now();
    const out = await run(c);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(2000);
    expect(elapsed).toBeLessThan(6000);
    expect(out.result).toMatchObject({ signal: "SIGKILL", timedOut: true });
    expect(await gone(Number(readFileSync(pidFile, "utf8")))).toBe(true);
  });

  it("kills a process of the group that ignores SIGTERM even when it holds no output open", async () => {
    const pidFile = join(dir, "detached-output.pid");
    // Its output goes nowhere, so the command's pipes close at once and the result is in
    // before the grace is over; the process must still not outlive it.
    const c = single({
      argv: [
        "/bin/sh",
        "-c",
        '(trap "" TERM; exec sleep 30) >/dev/null 2>&1 </dev/null & echo $! > "$0"; sleep 30',
        pidFile,
      ],
      timeout: "300ms",
    });
    const out = await run(c);
    expect(out.result).toMatchObject({ timedOut: true });
    const stubborn = Number(readFileSync(pidFile, "utf8"));
    expect(stubborn).toBeGreaterThan(0);
    // SIGKILL follows SIGTERM after the grace (2 s).
    expect(await gone(stubborn, 5000)).toBe(true);
  });

  it("ends what the command left running in its group when it exits", async () => {
    const pidFile = join(dir, "leftover.pid");
    // The background sleep holds the output pipe: without the group kill this would wait 30 s.
    const c = single({ argv: ["/bin/sh", "-c", 'sleep 30 & echo $! > "$0"; echo done', pidFile] });
    const started = Date.now();
    const out = await run(c);
    expect(Date.now() - started).toBeLessThan(4000);
    expect(out.ok).toBe(true);
    expect((out.result as RunResult).stdout).toBe("done\n");
    expect(await gone(Number(readFileSync(pidFile, "utf8")))).toBe(true);
  });

  it("kills the command when the execution is aborted or the connector closes", async () => {
    const c = single({ argv: ["/bin/sleep", "30"] });
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 200);
    const out = await run(c, {}, controller.signal);
    expect(Date.now() - started).toBeLessThan(4000);
    expect(out).toMatchObject({
      ok: false,
      summary: "killed (aborted)",
      reason: "the execution was aborted and the command was killed",
      result: { aborted: true, signal: "SIGTERM" },
    });
    const before = await run(c, {}, AbortSignal.abort());
    expect(before).toMatchObject({ ok: false, summary: "not started" });

    const pending = run(c);
    await sleep(100);
    await c.close();
    expect(await pending).toMatchObject({ ok: false, result: { aborted: true } });
    expect(await run(c)).toMatchObject({ ok: false, reason: "the connection is closed" });
  });

  it("cuts stdout and stderr at the cap, reads the rest and says so", async () => {
    const c = single(
      {
        argv: [
          "/bin/sh",
          "-c",
          "head -c 300000 /dev/zero | tr '\\0' y; head -c 3000 /dev/zero | tr '\\0' z >&2",
        ],
      },
      { maxOutputBytes: 1024 },
    );
    const out = await run(c);
    const result = out.result as RunResult;
    expect(out.ok).toBe(true);
    expect(result.stdout).toBe("y".repeat(1024));
    expect(result.stderr).toBe("z".repeat(1024));
    expect(result.truncated).toEqual({
      stdout: "cut at 1024 of 300000 bytes",
      stderr: "cut at 1024 of 3000 bytes",
    });
    expect(out.summary).toBe("exit 0, 303000 bytes of output, truncated");
  });

  it("gives the command only its configured environment", async () => {
    process.env.AIRLOCK_TEST_LEAK = "leaked-value";
    try {
      const c = single(
        { argv: ["/usr/bin/env"], env: { EXTRA: "from-command" } },
        { env: { DEPLOY_TOKEN: "s3cr3t-token-value" } },
      );
      const stdout = (await run(c)).result as RunResult;
      const names = stdout.stdout
        .trim()
        .split("\n")
        .map((line) => line.split("=")[0])
        .sort();
      expect(names).toEqual(["DEPLOY_TOKEN", "EXTRA", "PATH"]);
      expect(stdout.stdout).not.toContain("leaked-value");
      expect(stdout.stdout).toContain(
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
      );
      expect(c.secrets).toEqual(["s3cr3t-token-value", "from-command"]);
    } finally {
      delete process.env.AIRLOCK_TEST_LEAK;
    }
  });

  it("masks what the detectors find where it cuts the output, and cuts no value or hint in two", async () => {
    const card = "4242 4242 4242 4242";
    const c = single(
      {
        argv: [
          "/bin/sh",
          "-c",
          'head -c "$0" /dev/zero | tr "\\0" y; printf " %s %s" "$1" "$2"',
          "{n}",
          "{card}",
          "{tail}",
        ],
        args: {
          n: { pattern: "[0-9]+" },
          card: { pattern: "[0-9 ]+" },
          tail: { pattern: "z*", maxLength: 4000 },
        },
      },
      { maxOutputBytes: 1024 },
    );
    const cuts = new Set<string>();
    for (const tail of ["zz", "z".repeat(3000)]) {
      for (let n = 1024 - card.length - 3; n <= 1024 + 1; n++) {
        const input = c.parse("run", { n: String(n), card, tail });
        const out = await c.execute("run", input, never, { hidden: [], detectors: ["card"] });
        const { stdout, truncated } = out.result as RunResult;
        // Short enough once masked: not cut after all.
        if (truncated === undefined) {
          expect(stdout).toBe(`${"y".repeat(n)} **** 4242 ${tail}`);
          continue;
        }
        expect(truncated.stdout).toMatch(/^cut at 1024 of/);
        const shown = stdout.replace(/^y* ?/, "");
        expect(`**** 4242 ${tail}`.startsWith(shown), shown).toBe(true);
        expect(shown.length > 0 && shown.length < "**** 4242".length, shown).toBe(false);
        cuts.add(shown.slice(0, 9));
      }
    }
    expect(cuts).toEqual(new Set(["", "**** 4242"]));
  });

  it("passes credentials to the command and scrubs them from what it prints", async () => {
    const c = connector(
      {
        env: { DEPLOY_TOKEN: "s3cr3t-token-value" },
        maxOutputBytes: 1024,
        commands: {
          check: {
            argv: ["/bin/sh", "-c", 'test "$DEPLOY_TOKEN" = s3cr3t-token-value && echo same'],
          },
          print: {
            argv: ["/bin/sh", "-c", 'printf "token=%s\\n" "$DEPLOY_TOKEN" >&2; echo "$0"', "{x}"],
            args: { x: { pattern: ".*" } },
          },
          edge: {
            argv: [
              "/bin/sh",
              "-c",
              'head -c 1020 /dev/zero | tr "\\0" y; printf %s "$DEPLOY_TOKEN"',
            ],
          },
          beyond: {
            argv: [
              "/bin/sh",
              "-c",
              'head -c 1020 /dev/zero | tr "\\0" y; printf %s "$DEPLOY_TOKEN"; head -c 5000 /dev/zero',
            ],
          },
        },
      },
      ["another-connection-secret"],
    );
    const exec = (op: string, input: Json = {}) => c.execute(op, c.parse(op, input), never);
    expect(((await exec("check")).result as RunResult).stdout).toBe("same\n");
    const printed = (await exec("print", { x: "another-connection-secret" })).result as RunResult;
    expect(printed.stderr).toBe("token=[redacted]\n");
    expect(printed.stdout).toBe("[redacted]\n");
    // The secret straddles the cap: it is scrubbed before the cut, so no piece of it remains.
    // Read to its end, the output is cut at the cap, before the marker rather than through it.
    const edge = (await exec("edge")).result as RunResult;
    expect(edge.stdout).toBe("y".repeat(1020));
    expect(edge.truncated?.stdout).toBe("cut at 1024 of 1038 bytes");
    // Read in part, whatever the cut keeps stops short of where a piece of a secret could sit.
    const beyond = (await exec("beyond")).result as RunResult;
    expect(beyond.stdout).toMatch(/^y{900,1020}$/);
    expect(beyond.truncated?.stdout).toBe("cut at 1024 of 6038 bytes");
  });
});
