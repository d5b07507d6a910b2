import { z } from "zod";
import { duration } from "../../config/config-types.js";

export const slackSchema = z.strictObject({
  /** The bot's token (xoxb-…), with chat:write, users:read, users:read.email, im:write. */
  botToken: z.string().min(10).max(512),
  /** Verifies that interaction payloads come from Slack. */
  signingSecret: z.string().min(16).max(512),
  /** Where approval messages go unless a rule names its own (`review.slackChannel`). */
  channel: z.string().min(1).max(80),
  /** Slack's Web API base: GovSlack's, or a test server's. */
  apiUrl: z
    .url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })
    .transform((url) => (url.endsWith("/") ? url : `${url}/`))
    .default("https://slack.com/api/"),
  /** Tell the agent's owner the outcome by direct message. */
  notifyOwner: z.boolean().default(false),
  /** A reminder in the thread this long before a request expires. */
  remindBefore: duration({ min: 100, max: 7 * 86_400_000 }).optional(),
  /** Who is mentioned when nobody has answered after `after`: a user group id (S…), here or channel. */
  escalation: z
    .strictObject({
      after: duration({ min: 100, max: 30 * 86_400_000 }),
      mention: z.string().min(1).max(80),
    })
    .optional(),
  /**
   * The workspaces (T…) or Enterprise Grid organisations (E…) whose members may review. By
   * default, the bot's own workspace: a member of another one (a Slack Connect channel)
   * never maps to a reviewer, whatever e-mail their workspace gave them.
   */
  teams: z
    .array(z.string().regex(/^[TE][A-Z0-9]{2,30}$/, "must be a Slack team id (T…) or org id (E…)"))
    .min(1)
    .optional(),
  /**
   * The workspace signs its members in through SSO, and the identity provider sets their
   * e-mails: Slack then does not mark them confirmed (`is_email_confirmed` false or left out),
   * as the provider vouches for them instead. Set it only where members cannot change their
   * own e-mail in Slack; guests, bots and other workspaces still map to nobody.
   */
  ssoEmails: z.boolean().default(false),
  /**
   * How long what Slack said of a user (their verified e-mail) serves clicks that cast no vote
   * (opening the comment modal, the words of a refusal). Every vote asks Slack again. At most
   * 10,000 users are kept, those who clicked longest ago forgotten first.
   */
  userCacheTtl: duration({ min: 0, max: 86_400_000 }).default(60_000),
});

export type SlackConfig = z.output<typeof slackSchema>;
