import { createPublicKey, type KeyObject } from "node:crypto";
import { createWriteStream, openSync, readFileSync, type WriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  appendCheckpoint,
  createKeyWatch,
  keyIdOf,
  readKey,
  signedHead,
} from "../../audit/audit-checkpoints.js";
import {
  checkRecordedHead,
  exportAudit,
  LISTED_PROBLEMS,
  parseRecordedHead,
  verifyAudit,
} from "../../audit/audit-service.js";
import { openStore } from "../../store/open-store.js";
import {
  CliError,
  configOption,
  loadConfigOrExit,
  parse,
  parseSince,
  subcommand,
} from "../cli-support.js";

const usage = `Usage:
  airlock audit verify [--all] [--expect-head SEQ:HASH] [--public-key FILE]...   check the whole hash chain
  airlock audit export --format jsonl|csv [--since 7d|DATE] [--after-seq N] [--output FILE]
  airlock audit checkpoint                               sign the chain's head now (audit.signingKey)

Options: --config FILE. verify exits 1 and names the first bad event when the chain is broken;
with --all, it goes on past each problem and lists each with its event (an edit, a deletion
or an insertion is one problem, even with the events after it renumbered): the first ${LISTED_PROBLEMS},
and how many there were in all.
On a long chain, both say how far they got on stderr every few seconds.
verify prints the chain's head; record it elsewhere, and pass it later as --expect-head to
show that no event up to it was cut off or rewritten since. With --public-key (the PEM public
half of audit.signingKey), it also checks every signed checkpoint, and says how far they vouch
for the chain; give --public-key once for each signing key the gateway has signed with, in any
order: a key's first checkpoint replaces the keys that signed before it, whose checkpoints may
vouch for no event from there on, and each key given must have signed.
export says on stderr how many events it wrote and the last one's number: pass that as
--after-seq next time to export only what came since (events are numbered in chain order;
their times need not be, so --since may leave out an event written late). --since takes a
time ago (12h, 7d, 1h30m) or a date or instant (2026-11-01, 2026-11-01T09:30:00Z).`;

export async function audit(args: string[]): Promise<number> {
  const [sub, rest] = subcommand(args, usage, "audit", ["verify", "export", "checkpoint"]);
  const { values } = parse(
    rest,
    {
      ...configOption,
      format: { type: "string" },
      since: { type: "string" },
      "after-seq": { type: "string" },
      output: { type: "string", short: "o" },
      "expect-head": { type: "string" },
      "public-key": { type: "string", multiple: true },
      all: { type: "boolean" },
    },
    usage,
  );
  // Given once per signing key the gateway has had: a rotated chain holds checkpoints of each.
  const publicKeys = ([] as string[]).concat(values["public-key"] ?? []).map(readPublicKey);
  const expectHead = values["expect-head"];
  const expect = expectHead === undefined ? undefined : parseRecordedHead(expectHead);
  if (expectHead !== undefined && !expect) {
    throw new CliError(
      "--expect-head must be a head as verify prints it: the event's number and its 64-character hash, like 1520:3f2a…",
      2,
    );
  }
  // A long chain takes minutes: a line on stderr every few seconds says how far it got.
  const started = performance.now();
  let said = started;
  const progress = (verb: string) => (events: number) => {
    const now = performance.now();
    if (now - said < 2000) return;
    said = now;
    process.stderr.write(
      `${verb} ${events.toLocaleString("en-US")} events so far (${Math.round((now - started) / 1000)} s)\n`,
    );
  };
  const loaded = loadConfigOrExit(values.config);
  // Even a checkpoint: one of a mistyped database would sign an empty chain made on the spot.
  const store = await openStore(loaded.config.storage, loaded.baseDir, { migrate: false });
  try {
    if (sub === "checkpoint") {
      const pem = loaded.config.audit.signingKey;
      if (!pem) {
        throw new CliError(
          "audit.signingKey is not set in the config: checkpoints are signed with it",
          2,
        );
      }
      const privateKey = readKey(pem, "sign");
      const keyId = keyIdOf(createPublicKey(privateKey));
      const head = await store.lastAuditEvent();
      if (!head || (await signedHead(store, head, keyId))) {
        process.stdout.write(
          head ? `event ${head.seq} is a checkpoint already\n` : "no events to sign yet\n",
        );
        return 0;
      }
      const others = loaded.config.audit.publicKeys;
      const successor = await createKeyWatch(createPublicKey(privateKey), {
        ...(others ? { publicKeys: others.map((other) => readKey(other, "check")) } : {}),
        forged: (checkpoint) =>
          process.stderr.write(
            `the audit checkpoint at event ${checkpoint.seq} is no rotation: ${checkpoint.why}; airlock audit verify rejects it\n`,
          ),
      }).replaced(store, head);
      if (successor) {
        throw new CliError(
          `audit.signingKey (key ${keyId}) was replaced by key ${successor.keyId} (its checkpoint at event ${successor.seq}): a checkpoint signed with it now would fail airlock audit verify; sign with the new key`,
        );
      }
      // Signed at the database's time, as the gateways sign theirs, not this host's.
      const data = await appendCheckpoint(store, privateKey, head, store.now(), {
        type: "operator",
        id: "airlock audit checkpoint",
      });
      process.stdout.write(`signed a checkpoint of event ${head.seq} (key ${data.keyId})\n`);
      return 0;
    }
    if (sub === "verify") {
      const walked = await verifyAudit(store, progress("verified"), {
        publicKeys,
        all: values.all === true,
      });
      const report = expect ? await checkRecordedHead(store, walked, expect) : walked;
      if (report.problems?.length) {
        const total = report.problemCount ?? report.problems.length;
        const unlisted = total - report.problems.length;
        process.stdout.write(
          `audit chain NOT OK: ${total.toLocaleString("en-US")} problem(s) in ${report.count.toLocaleString("en-US")} events\n${report.problems.map((p) => `${p.message}\n`).join("")}${unlisted > 0 ? `and ${unlisted.toLocaleString("en-US")} more after these, not listed (the first ${LISTED_PROBLEMS} are)\n` : ""}`,
        );
        return 1;
      }
      const problem = report.problem;
      if (problem) {
        const kind = problem.kind;
        process.stdout.write(
          kind === "cut_off" || kind === "rewritten"
            ? `audit chain does NOT hold the recorded head\n${problem.message}\n`
            : kind === "bad_signature" || kind === "retired_key" || kind === "unsigned"
              ? `audit chain NOT vouched for by its signatures\n${problem.message}\n`
              : `audit chain BROKEN after ${report.count - 1} good event(s)\n${problem.message}\n`,
        );
        return 1;
      }
      process.stdout.write(
        report.head
          ? `audit chain OK: ${report.count} events, head ${report.head.seq} ${report.head.hash}\n`
          : "audit chain OK: no events yet\n",
      );
      const signed = report.signed;
      if (signed && signed.checkpoints > 0) {
        process.stdout.write(
          `signatures OK: ${signed.checkpoints} checkpoint(s); events up to ${signed.through} are vouched for, signed ${signed.signedAt}${signed.unsigned > 0 ? `; ${signed.unsigned} later event(s) not signed yet (a running gateway signs within audit.checkpointEvery; airlock audit checkpoint signs now)` : ""}\n`,
        );
        if (signed.keys.length > 1) {
          process.stdout.write(
            `signing keys, oldest first: ${signed.keys.map((k) => `${k.keyId} (${k.checkpoints} checkpoint(s) from event ${k.first})`).join(", ")}; each key replaced the one before it at its first checkpoint, and only the newest vouches for what came after\n`,
          );
        }
      }
      return 0;
    }
    const format = values.format ?? "jsonl";
    if (format !== "jsonl" && format !== "csv")
      throw new CliError("--format must be jsonl or csv", 2);
    const sinceAt = values.since === undefined ? undefined : parseSince(values.since);
    let afterSeq: number | undefined;
    if (values["after-seq"] !== undefined) {
      afterSeq = /^\d{1,15}$/.test(values["after-seq"]) ? Number(values["after-seq"]) : undefined;
      if (afterSeq === undefined) {
        throw new CliError(
          "--after-seq must be an event's number, as the last export said (like --after-seq 1520)",
          2,
        );
      }
    }
    const lines = Readable.from(
      exportAudit(
        store,
        format,
        { since: sinceAt?.(store.now()), afterSeq },
        progress("exported"),
        (last, events) => {
          process.stderr.write(
            last === undefined
              ? `exported no events${afterSeq === undefined ? "" : ` after event ${afterSeq}`}\n`
              : `exported ${events.toLocaleString("en-US")} events, up to event ${last}: next time, --after-seq ${last} exports only what came since\n`,
          );
        },
      ),
    );
    if (values.output) await pipeline(lines, openOutput(values.output));
    else await pipeline(lines, process.stdout, { end: false });
    return 0;
  } finally {
    await store.close();
  }
}

function readPublicKey(path: string): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (error) {
    throw new CliError(
      `cannot read --public-key ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      2,
    );
  }
  try {
    return readKey(pem, "check");
  } catch (error) {
    throw new CliError(`--public-key ${path} ${(error as Error).message}`, 2);
  }
}

/** Opened at once, so that a path that cannot be written is named before anything is read. */
function openOutput(path: string): WriteStream {
  try {
    return createWriteStream(path, { fd: openSync(path, "w") });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "EISDIR"
        ? "it is a directory; name a file, like --output audit.jsonl"
        : code === "ENOENT"
          ? "its directory does not exist; create it first"
          : code === "EACCES" || code === "EPERM"
            ? "permission denied; choose a path you can write"
            : (code ?? (error as Error).message);
    throw new CliError(`cannot write --output ${path}: ${why}`);
  }
}
