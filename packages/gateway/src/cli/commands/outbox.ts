/**
 * The outbox for an operator: what waits to be delivered, the dead letters (deliveries given
 * up after their retries, or refused for good), and sending dead letters again once the
 * receiver is fixed: a webhook's endpoint is back, the bot was invited to its channel.
 */
import { approvalChannelNames, webhookNames } from "../../channels/channel-registry.js";
import { channelTopic, topicChannel } from "../../channels/notification-dispatcher.js";
import { BIDI_CONTROLS, truncateText } from "../../common/storable-text.js";
import { openStore } from "../../store/open-store.js";
import type { OutboxRecord } from "../../store/store.js";
import { CliError, configOption, loadConfigOrExit, parse, subcommand } from "../cli-support.js";

const usage = `Usage:
  airlock outbox list [--dead] [--after ID] [--limit N] [--json]
                                 deliveries still to make, or with --dead the dead letters
  airlock outbox redeliver ID...            send these dead letters again
  airlock outbox redeliver --all [--channel NAME]
                                 send every dead letter again (of one channel)

Options: --config FILE. A running gateway delivers what is made pending again within a second.`;

const PAGE = 100;

export async function outbox(args: string[]): Promise<number> {
  const [sub, rest] = subcommand(args, usage, "outbox", ["list", "redeliver"]);
  const { values, positionals } = parse(
    rest,
    {
      ...configOption,
      dead: { type: "boolean" },
      after: { type: "string" },
      limit: { type: "string" },
      json: { type: "boolean" },
      all: { type: "boolean" },
      channel: { type: "string" },
    },
    usage,
    sub === "redeliver" ? Number.POSITIVE_INFINITY : 0,
  );
  const count = (
    flag: string,
    value: string | undefined,
    fallback: number,
    [min, max]: [number, number],
  ) => {
    if (value === undefined) return fallback;
    if (!/^\d{1,15}$/.test(value) || Number(value) < min || Number(value) > max)
      throw new CliError(`--${flag} takes a whole number from ${min} to ${max}, not ${value}`, 2);
    return Number(value);
  };
  // An id named twice is one dead letter: the count of those not found must not take it twice.
  const ids = [
    ...new Set(
      positionals.map((id) => {
        if (!/^[1-9]\d{0,15}$/.test(id))
          throw new CliError(`${id} is no outbox id; see them with: airlock outbox list --dead`, 2);
        return Number(id);
      }),
    ),
  ];
  if (sub === "redeliver" && ids.length > 0 === Boolean(values.all)) {
    throw new CliError("name the dead letters to send again (their ids), or --all", 2);
  }
  if (values.channel !== undefined && !values.all) {
    throw new CliError(
      "--channel goes with --all: airlock outbox redeliver --all --channel NAME",
      2,
    );
  }
  const after = count("after", values.after, 0, [0, Number.MAX_SAFE_INTEGER]);
  // A page of none would be reported as an empty outbox.
  const limit = count("limit", values.limit, PAGE, [1, 10_000]);

  const loaded = loadConfigOrExit(values.config);
  // Redelivering too: a mistyped database has no dead letters, only tables made on the spot.
  const store = await openStore(loaded.config.storage, loaded.baseDir, { migrate: false });
  try {
    if (sub === "list") {
      const state = values.dead ? "dead" : "pending";
      const entries = await store.listOutbox({ state, after, limit });
      if (values.json) {
        process.stdout.write(`${JSON.stringify(entries.map(shown))}\n`);
      } else if (entries.length === 0) {
        process.stderr.write(
          values.dead ? "No dead letters.\n" : "Nothing waits to be delivered.\n",
        );
      } else {
        for (const entry of entries) process.stdout.write(`${line(entry)}\n`);
        if (entries.length === limit) {
          process.stderr.write(
            `(the first ${limit}; the next with --after ${entries.at(-1)!.id})\n`,
          );
        }
      }
      return 0;
    }
    const sent = await store.redeliverOutbox(
      values.all
        ? values.channel === undefined
          ? {}
          : { topic: channelTopic(values.channel) }
        : { ids },
    );
    process.stdout.write(`${sent} dead ${sent === 1 ? "letter" : "letters"} to deliver again\n`);
    if (!values.all && sent < ids.length) {
      process.stderr.write(
        `${ids.length - sent} of the ids named ${ids.length - sent === 1 ? "is" : "are"} no dead letter (see: airlock outbox list --dead)\n`,
      );
      return 1;
    }
    // A channel since removed may still have dead letters; a name that is neither is a typo.
    const channels = [
      ...approvalChannelNames(loaded.config),
      ...webhookNames(loaded.config.channels.webhooks),
    ];
    if (sent === 0 && values.channel !== undefined && !channels.includes(values.channel)) {
      process.stderr.write(
        `no channel ${values.channel} in the config, and no dead letters of one by that name; its channels are: ${channels.join(", ") || "none"}\n`,
      );
      return 1;
    }
    return 0;
  } finally {
    await store.close();
  }
}

function shown(entry: OutboxRecord) {
  return {
    id: entry.id,
    channel: topicChannel(entry.topic),
    requestId: entry.requestId,
    event: entry.payload.event ?? null,
    state: entry.state,
    attempts: entry.attempts,
    due: new Date(entry.availableAt).toISOString(),
    createdAt: new Date(entry.createdAt).toISOString(),
    lastError: entry.lastError,
  };
}

function line(entry: OutboxRecord): string {
  const s = shown(entry);
  const when = entry.state === "dead" ? `created ${s.createdAt}` : `due ${s.due}`;
  const error = s.lastError === null ? "" : `  last error: ${oneLine(s.lastError)}`;
  return `${s.id}  ${s.channel.padEnd(12)}  ${String(s.requestId ?? "-").padEnd(30)}  ${String(s.event ?? "-").padEnd(18)}  ${s.attempts} ${s.attempts === 1 ? "try " : "tries"}  ${when}${error}`;
}

const CONTROLS = new RegExp(`[\\u0000-\\u001f\\u007f-\\u009f${BIDI_CONTROLS}]+`, "g");

/** An error as one short line: a receiver's answer can hold anything. */
function oneLine(text: string): string {
  const flat = text.replace(CONTROLS, " ");
  return truncateText(flat, 200);
}
