/**
 * The Bot Framework, through its official SDK (botframework-connector): what Teams sends is
 * verified against the Bot Framework's signing keys, and what Airlock sends goes through the
 * Bot Connector with a token for the bot's own app registration. Every endpoint comes from
 * the config (a test server's in tests). The Bot Framework's issuer and scope are the public
 * cloud's: a government cloud's would need them configurable too.
 */
import { ConfidentialClientApplication } from "@azure/msal-node";
import {
  AuthenticationConfiguration,
  AuthenticationConstants,
  type BotFrameworkAuthentication,
  BotFrameworkAuthenticationFactory,
  ClaimsIdentity,
  type ConnectorClient,
  MsalServiceClientCredentialsFactory,
} from "botframework-connector";
import type { Activity } from "botframework-schema";
import { AirlockError, errorMessage } from "../../errors.js";
import type { TeamsConfig } from "./teams-config.js";
import { tokenNetwork } from "./token-network.js";

/** The Bot Framework's own issuer and token audience (the same in tests). */
const BOT_FRAMEWORK = "https://api.botframework.com";

export interface TeamsBot {
  /**
   * Whether the activity came from the Bot Framework for this bot: a token signed by its keys,
   * issued by it, for this app, endorsed for Teams, naming the activity's own serviceUrl.
   * Returns why not, or undefined when it did; throws `identity_provider_unavailable` when
   * the Bot Framework's keys could not be had in time.
   */
  verify(activity: Partial<Activity>, authorization: string): Promise<string | undefined>;
  /** A client for the configured Bot Connector, authenticated as the bot. */
  connector(): Promise<ConnectorClient>;
}

/**
 * How long a request to Entra ID for the bot's token may take: less than the look-up of who
 * clicked may (4 s), so that a slow Entra ID is what that look-up reports.
 */
const TOKEN_DEADLINE_MS = 3_000;

/**
 * How long checking a click's token may take. The SDK fetches the Bot Framework's keys
 * without a deadline (on first use, and for a key it has not seen); Teams stops waiting for
 * an invoke's answer after about five seconds, and the member look-up after this needs time.
 */
const VERIFY_DEADLINE_MS = 3_000;

/**
 * Checks of a token still waiting on the SDK, given up on or not. Each that finds the keys
 * cold starts a fetch of its own, with no deadline: past this many, a click is answered 503 at
 * once rather than leave one more connection hanging on a silent key endpoint.
 */
const MAX_PENDING_VERIFICATIONS = 8;

/** The SDK accepts a token until this long after its `exp`. */
const CLOCK_TOLERANCE_MS = 5 * 60_000;

/**
 * Until when the SDK would accept this (verified) token again: its `exp`, plus the SDK's
 * tolerance. `verify` refuses a token without one; an hour and that tolerance from now is
 * only a guard.
 */
export function acceptedUntil(authorization: string, now: number): number {
  try {
    const payload = authorization.split(".")[1] ?? "";
    const exp = (
      JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { exp?: unknown }
    ).exp;
    if (typeof exp === "number" && Number.isFinite(exp)) return exp * 1000 + CLOCK_TOLERANCE_MS;
  } catch {
    // A token `verify` accepted always parses; the fallback is only a guard.
  }
  return now + 3_600_000 + CLOCK_TOLERANCE_MS;
}

/**
 * The client without the SDK's own retries (408, 429 and 5xx, three times, waiting out any
 * Retry-After), which its options cannot turn off: they would hold a delivery past its
 * deadline and lose Teams' Retry-After. The outbox retries instead, told when to come back.
 * The pipeline is the SDK's internal (a core-client ServiceClient's); where it is not
 * there, the SDK's retries stay, and deliveries only take longer.
 */
function withoutRetries(client: ConnectorClient): ConnectorClient {
  const pipeline = (
    client as unknown as {
      client?: { pipeline?: { removePolicy?: (options: { phase: "Retry" }) => unknown } };
    }
  ).client?.pipeline;
  pipeline?.removePolicy?.({ phase: "Retry" });
  return client;
}

export function createTeamsBot(config: TeamsConfig): TeamsBot {
  const authority = `${config.loginUrl}/${config.tenantId}`;
  const msal = new ConfidentialClientApplication({
    auth: {
      clientId: config.appId,
      clientSecret: config.appPassword,
      authority,
      // The authority is the configured one: no asking Microsoft which clouds exist.
      knownAuthorities: [new URL(config.loginUrl).host],
    },
    system: { networkClient: tokenNetwork(TOKEN_DEADLINE_MS) },
  });
  const auth: BotFrameworkAuthentication = BotFrameworkAuthenticationFactory.create(
    "",
    true,
    authority,
    BOT_FRAMEWORK,
    BOT_FRAMEWORK,
    BOT_FRAMEWORK,
    config.openIdMetadataUrl,
    // Emulator tokens are checked against the channel's keys too, then refused below.
    config.openIdMetadataUrl,
    "",
    // The same MSAL package, typed once through its ESM and once through its CJS entry.
    new MsalServiceClientCredentialsFactory(
      config.appId,
      msal as unknown as ConstructorParameters<typeof MsalServiceClientCredentialsFactory>[1],
    ),
    new AuthenticationConfiguration(),
  );
  const bot = new ClaimsIdentity(
    [
      { type: AuthenticationConstants.AudienceClaim, value: config.appId },
      { type: AuthenticationConstants.AppIdClaim, value: config.appId },
    ],
    true,
  );
  let client: Promise<ConnectorClient> | undefined;
  let pending = 0;

  return {
    async verify(activity, authorization) {
      if (!authorization.startsWith("Bearer "))
        return "no Bot Framework token (Authorization: Bearer)";
      // Before the SDK, which reads channelId as a string and would quote its own TypeError.
      if (activity.channelId !== "msteams") return "the activity did not come through Teams";
      // The SDK compares the token's serviceurl claim only with a serviceUrl that is there.
      if (typeof activity.serviceUrl !== "string" || activity.serviceUrl === "") {
        return "the activity names no serviceUrl";
      }
      if (pending >= MAX_PENDING_VERIFICATIONS) {
        throw new AirlockError(
          "identity_provider_unavailable",
          `${MAX_PENDING_VERIFICATIONS} clicks are already waiting for the Bot Framework's signing keys (channels.teams.openIdMetadataUrl); this one can be tried again`,
        );
      }
      let identity: ClaimsIdentity;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new AirlockError(
                "identity_provider_unavailable",
                `the Bot Framework's signing keys (channels.teams.openIdMetadataUrl) did not arrive within ${VERIFY_DEADLINE_MS / 1000} s, so the click could not be checked; it can be tried again`,
              ),
            ),
          VERIFY_DEADLINE_MS,
        );
      });
      try {
        const checking = auth.authenticateRequest(activity as Activity, authorization);
        pending++;
        // Counted until the SDK is done, however long after the click was answered.
        checking.then(
          () => pending--,
          () => pending--,
        );
        ({ claimsIdentity: identity } = await Promise.race([checking, late]));
      } catch (error) {
        if (error instanceof AirlockError) throw error;
        return `the Bot Framework token was refused: ${errorMessage(error)}`;
      } finally {
        clearTimeout(timer);
      }
      // The SDK also takes emulator and skill (bot-to-bot) tokens: only the channel decides here.
      if (identity.getClaimValue(AuthenticationConstants.IssuerClaim) !== BOT_FRAMEWORK) {
        return "the token was not issued by the Bot Framework for a channel";
      }
      // The SDK checks an expiry only where there is one: a token without would be taken for
      // good, and its activity remembered (to refuse a replay) for no set time.
      const exp = identity.getClaimValue("exp") as unknown;
      if (typeof exp !== "number" || !Number.isFinite(exp)) {
        return "the Bot Framework token has no expiry (exp), so a replay of it could not be refused";
      }
      return undefined;
    },
    connector() {
      if (!client) {
        client = auth
          .createConnectorFactory(bot)
          .create(config.serviceUrl, BOT_FRAMEWORK)
          .then(withoutRetries);
        client.catch(() => {
          client = undefined;
        });
      }
      return client;
    },
  };
}
