/**
 * A chat (Slack, Teams) takes a click on a request only from the place its message was posted
 * to: a copy of the message elsewhere, or a click whose data names the request from another
 * place the app is in (the chat signs them all alike, and a client can write a card's data),
 * is not a click on it. The place, not the message: a post whose answer was lost is made again,
 * and both messages are the request's.
 */
import type { Logger } from "../observability/logger.js";
import type { ChatChannelDeps } from "./channel.js";

export interface PostedPlaceCheck {
  /** The channel's name, under which its posts' refs are kept. */
  channel: string;
  postedRef: ChatChannelDeps["postedRef"];
  /** The place a message was posted to, from the ref its post returned. */
  placeOf: (ref: string) => string;
  logger: Logger;
  /** What the log says of a click refused. */
  refused: string;
}

/**
 * Whether a click on `requestId` came `from` the place the channel posted its message to (no
 * place is none); when not, says so in the log, with `who` clicked.
 */
export function postedPlaceCheck(
  check: PostedPlaceCheck,
): (requestId: string, from: string | undefined, who: Record<string, string>) => Promise<boolean> {
  return async (requestId, from, who) => {
    const posted = await check.postedRef(requestId, check.channel);
    const place = posted === undefined ? undefined : check.placeOf(posted);
    if (place && place === from) return true;
    check.logger.warn(
      { requestId, ...who, from: from ?? null, postedTo: place ?? null },
      check.refused,
    );
    return false;
  };
}
