import { z } from "zod";
import { duration } from "../../config/config-types.js";

const guid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** https, or http on loopback only (a test server): tokens and cards travel over it. */
const endpoint = z
  .url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })
  .refine(
    (url) =>
      url.startsWith("https://") || /^http:\/\/(127\.0\.0\.1|\[::1\]|localhost)(:|\/|$)/.test(url),
    "must be https:// (http:// only on loopback, for a test server)",
  );

const slash = (url: string) => (url.endsWith("/") ? url : `${url}/`);

export const teamsSchema = z.strictObject({
  /** The bot's Microsoft App ID (its Entra ID app registration). */
  appId: z.string().regex(guid, "must be the bot's Microsoft App ID (a GUID)"),
  /** The app registration's client secret. */
  appPassword: z.string().min(8).max(512),
  /**
   * The organisation's Entra ID tenant: the bot's own, and the only one whose members may
   * review. A guest, or anyone from another tenant (a shared channel), maps to nobody.
   */
  tenantId: z.string().regex(guid, "must be an Entra ID tenant id (a GUID)"),
  /**
   * Where approval cards go unless a rule names its own (`review.teamsConversation`): the
   * conversation id of a Teams channel (19:…@thread.tacv2) or chat, as the bot saw it when
   * it was added there.
   */
  conversation: z.string().min(3).max(512),
  /** The Bot Connector endpoint for that conversation (its activities' serviceUrl). */
  serviceUrl: endpoint.transform(slash).default("https://smba.trafficmanager.net/teams/"),
  /** Where the bot gets its tokens: the Entra ID authority's base (a test server's in tests). */
  loginUrl: endpoint
    .transform((url) => url.replace(/\/+$/, ""))
    .default("https://login.microsoftonline.com"),
  /** The Bot Framework's signing keys for what Teams sends, as OpenID metadata. */
  openIdMetadataUrl: endpoint.default(
    "https://login.botframework.com/v1/.well-known/openidconfiguration",
  ),
  /** Tell the agent's owner the outcome in a one-to-one chat with the bot. */
  notifyOwner: z.boolean().default(false),
  /** A reminder in the card's thread this long before a request expires. */
  remindBefore: duration({ min: 100, max: 7 * 86_400_000 }).optional(),
  /**
   * How long what Teams said of a user (their verified e-mail) serves clicks that cast no vote
   * (the words of a refusal). Every vote asks Teams again. At most 10,000 users are kept,
   * those who clicked longest ago forgotten first.
   */
  userCacheTtl: duration({ min: 0, max: 86_400_000 }).default(60_000),
});

export type TeamsConfig = z.output<typeof teamsSchema>;
