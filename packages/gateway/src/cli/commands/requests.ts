/** Reviewers at a terminal: the same API the console uses, with a personal token. */

import { BIDI_CONTROLS } from "../../common/storable-text.js";
import type { ReviewerView } from "../../requests/request-views.js";
import { neededText } from "../../requests/review-quorum.js";
import { CliError, parse, subcommand } from "../cli-support.js";

const usage = `Usage:
  airlock requests list [--status pending|all|STATUS,...] [--json]
  airlock requests show ID [--json]
  airlock requests approve ID [--comment TEXT] [--hash HASH]
  airlock requests deny ID [--comment TEXT] [--hash HASH]

--hash takes the hash \`requests show\` printed: the vote then counts only for the request you
read, and is refused if ID names another.

Talks to the gateway at --url, else $AIRLOCK_URL, else http://localhost:7070, with the
personal token in $AIRLOCK_TOKEN (create one with: airlock token create --reviewer EMAIL).`;

interface ApiError {
  error: { code: string; message: string };
}

/** What a successful answer must look like, so that another server's is not read as one. */
const isPage = (value: unknown) => Array.isArray((value as { requests?: unknown }).requests);
const isView = (value: unknown) =>
  typeof (value as { id?: unknown }).id === "string" &&
  typeof (value as { status?: unknown }).status === "string" &&
  typeof (value as { hash?: unknown }).hash === "string";

async function call<T>(
  base: string,
  method: string,
  path: string,
  shape: (value: unknown) => boolean,
  body?: unknown,
): Promise<T> {
  const token = process.env.AIRLOCK_TOKEN?.trim();
  if (!token)
    throw new CliError(
      "set AIRLOCK_TOKEN to your personal token (airlock token create --reviewer EMAIL)",
      2,
    );
  // Said without the token, which fetch would quote in its header error. Tokens are ASCII.
  if (!/^[\x21-\x7e]+$/.test(token))
    throw new CliError(
      "AIRLOCK_TOKEN has a character a token cannot have (a space, a line break, a control or non-ASCII character); check how it was copied",
      2,
    );
  let response: Response;
  try {
    // Appended, not resolved against it: `new URL("/v1/…", base)` drops the path of a gateway
    // served under one (https://host/airlock), and would send the token to the host's root.
    response = await fetch(`${base.replace(/\/+$/, "")}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    throw new CliError(
      `cannot reach the gateway at ${base} (${(error as Error).cause ?? (error as Error).message}); is it running? Set --url or AIRLOCK_URL`,
    );
  }
  const payload = (await response.json().catch(() => undefined)) as T | ApiError | undefined;
  const error = (payload as ApiError | undefined)?.error;
  if (!response.ok && typeof error?.code === "string") {
    throw new CliError(printable(`${error.message} (${error.code})`));
  }
  if (!response.ok || payload === null || typeof payload !== "object" || !shape(payload)) {
    throw new CliError(
      `${base} did not answer as an Airlock gateway (HTTP ${response.status}${response.headers.get("content-type") ? `, ${response.headers.get("content-type")}` : ""}); check --url or AIRLOCK_URL`,
    );
  }
  return payload as T;
}

function timeLeft(iso: string | null): string {
  if (!iso) return "-";
  const ms = Date.parse(iso) - Date.now();
  if (ms <= 0) return "expired";
  const minutes = Math.round(ms / 60_000);
  return minutes < 1
    ? `${Math.round(ms / 1000)}s`
    : minutes < 120
      ? `${minutes}m`
      : `${Math.round(minutes / 60)}h`;
}

/**
 * Text for the terminal: an agent writes much of what is shown, and a control character
 * (ESC above all) could move the cursor, rewrite a line already printed ("risk low") or
 * hide the rest. Each is shown as a visible escape instead; newlines are kept.
 */
export function printable(text: string): string {
  return text.replace(unprintable, (c) =>
    c === "\t" ? "  " : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Control characters but the newline, line and paragraph separators, bidirectional controls. */
const unprintable = new RegExp(
  `[\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f\\u2028\\u2029${BIDI_CONTROLS}]`,
  "g",
);

/**
 * Text others wrote (the agent's justification, a preview built from its input, a comment),
 * set apart: every line behind "| ", so that none can pass for one of this command's own (a
 * forged "you: can approve" or "risk low"), and a run of blank lines as one.
 */
function quoted(text: string, indent = "  "): string[] {
  return text
    .replace(/\n(?:[ \t]*\n)+/g, "\n\n")
    .split("\n")
    .map((line) => `${indent}| ${line}`);
}

function describe(view: ReviewerView): string {
  const lines = [
    `${view.id}  ${view.status.toUpperCase()}  risk ${view.risk.level} (${view.risk.reason})`,
    `agent          ${view.agent.name} (owner ${view.agent.owner})`,
    `action         ${view.operation} on ${view.connection}`,
    `rule           ${view.decision.rule ?? "(none)"}: ${view.decision.reason}`,
  ];
  if (view.review) {
    lines.push(
      `approvals      ${view.review.approvals} of ${view.review.quorum} from ${view.review.approvers.join(", ") || "any reviewer"}${view.review.stepUp ? " (step-up sign-in required)" : ""}`,
    );
    if (view.review.require) {
      const needed = neededText(view.review.needed ?? {});
      lines.push(
        `required       ${neededText(view.review.require)}${needed ? `; still needed: ${needed}` : ""}`,
      );
    }
  }
  if (view.expiresAt) lines.push(`expires        ${view.expiresAt} (${timeLeft(view.expiresAt)})`);
  lines.push("", "preview:", ...quoted(view.preview));
  lines.push("", `input (masked: ${view.maskedFields.join(", ") || "nothing"}):`);
  lines.push(
    ...JSON.stringify(view.input, null, 2)
      .split("\n")
      .map((l) => `  ${l}`),
  );
  // After the preview, so that a long one cannot push the real preview out of sight.
  lines.push(
    "",
    "justification (the agent's claim):",
    ...(view.justification ? quoted(view.justification) : ["  (none given)"]),
  );
  if (view.reviews.length) {
    lines.push("", "reviews:");
    for (const r of view.reviews) {
      lines.push(`  ${r.at} ${r.reviewer} ${r.decision}${r.comment ? ":" : ""}`);
      if (r.comment) lines.push(...quoted(r.comment, "    "));
    }
  }
  if (view.outcome)
    lines.push(
      "",
      `outcome: ${view.outcome.summary}${view.outcome.reason ? ` (${view.outcome.reason})` : ""}`,
    );
  lines.push(
    "",
    `you: ${view.you.canApprove ? "can approve" : "cannot approve"}${view.you.reason ? ` (${view.you.reason})` : ""}`,
  );
  lines.push(`hash: ${view.hash}`);
  return printable(lines.join("\n"));
}

export async function requests(args: string[]): Promise<number> {
  const [sub, rest] = subcommand(args, usage, "requests", ["list", "show", "approve", "deny"]);
  const { values, positionals } = parse(
    rest,
    {
      url: { type: "string" },
      status: { type: "string" },
      json: { type: "boolean" },
      comment: { type: "string", short: "m" },
      hash: { type: "string" },
    },
    usage,
    sub === "list" ? 0 : 1,
  );
  const base = values.url ?? process.env.AIRLOCK_URL ?? "http://localhost:7070";
  // Not quoted: fetch refuses such a URL with an error that quotes it, and every message
  // naming the gateway would print it.
  const parsed = URL.canParse(base) ? new URL(base) : undefined;
  if (parsed && (parsed.username !== "" || parsed.password !== ""))
    throw new CliError(
      "--url and AIRLOCK_URL must not hold a user name or password: your personal token is the credential",
      2,
    );
  switch (sub) {
    case "list": {
      const query = values.status ? `?status=${encodeURIComponent(values.status)}` : "";
      const page = await call<{ requests: ReviewerView[] }>(
        base,
        "GET",
        `/v1/requests${query}`,
        isPage,
      );
      if (values.json) {
        process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
        return 0;
      }
      if (page.requests.length === 0) {
        process.stdout.write(values.status ? "no requests\n" : "nothing waiting for you\n");
        return 0;
      }
      process.stdout.write(
        `${"ID".padEnd(32)}  ${"STATUS".padEnd(9)}  ${"RISK".padEnd(8)}  ${"AGENT".padEnd(16)}  ${"VOTES".padEnd(5)}  ${"LEFT".padEnd(7)}  ACTION\n`,
      );
      for (const r of page.requests) {
        const votes = r.review ? `${r.review.approvals}/${r.review.quorum}` : "-";
        const action = r.preview.split("\n")[0] ?? "";
        process.stdout.write(
          `${printable(`${r.id.padEnd(32)}  ${r.status.padEnd(9)}  ${r.risk.level.padEnd(8)}  ${r.agent.name.padEnd(16)}  ${votes.padEnd(5)}  ${timeLeft(r.status === "pending" ? r.expiresAt : null).padEnd(7)}  ${action}`)}\n`,
        );
      }
      return 0;
    }
    case "show": {
      const id = positionals[0];
      if (!id) throw new CliError("name the request: airlock requests show ID", 2);
      const view = await call<ReviewerView>(
        base,
        "GET",
        `/v1/requests/${encodeURIComponent(id)}`,
        isView,
      );
      process.stdout.write(
        values.json ? `${JSON.stringify(view, null, 2)}\n` : `${describe(view)}\n`,
      );
      return 0;
    }
    case "approve":
    case "deny": {
      const id = positionals[0];
      if (!id) throw new CliError(`name the request: airlock requests ${sub} ID`, 2);
      const hash = values.hash?.trim().toLowerCase();
      if (hash !== undefined && !/^[0-9a-f]{64}$/.test(hash))
        throw new CliError(
          "--hash must be the request's hash as `airlock requests show ID` prints it: 64 hex characters",
          2,
        );
      const view = await call<ReviewerView>(
        base,
        "POST",
        `/v1/requests/${encodeURIComponent(id)}/reviews`,
        isView,
        {
          decision: sub,
          ...(values.comment ? { comment: values.comment } : {}),
          ...(hash === undefined ? {} : { requestHash: hash }),
        },
      );
      const votes = view.review
        ? ` (${view.review.approvals} of ${view.review.quorum} approvals)`
        : "";
      const next =
        view.status === "pending"
          ? "still waiting for more approvals"
          : view.status === "approved" || view.status === "executing"
            ? "approved; Airlock is running it now"
            : view.status;
      process.stdout.write(
        `${sub === "approve" ? "Approved" : "Denied"} ${view.id}${votes}: ${next}\n`,
      );
      return 0;
    }
  }
}
