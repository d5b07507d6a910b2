/**
 * What a failed post of a card says about the card, against the real Bot Connector client:
 * the operator is told it may be there twice only when the post could have reached Teams.
 */

import type { AddressInfo } from "node:net";
import { createServer, type Server, type Socket } from "node:net";
import { ConfidentialClientApplication, type INetworkModule } from "@azure/msal-node";
import { ConnectorClient, MsalServiceClientCredentialsFactory } from "botframework-connector";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { pendingView } from "../../../test/support/channel-views.js";
import { startTeamsServer, type TeamsServer } from "../../../test/support/teams-server.js";
import { createLogger } from "../../observability/logger.js";
import { ChannelUnavailable, type ChatChannelDeps } from "../channel.js";
import { createTeamsBot, type TeamsBot } from "./teams-bot.js";
import { createTeamsChannel } from "./teams-channel.js";
import { teamsSchema } from "./teams-config.js";

/** How long a Bot Connector call may take (teams-channel.ts). */
const CALL_DEADLINE_MS = 10_000;

const deps: ChatChannelDeps = {
  logger: createLogger({ level: "silent" }),
  claimOnce: async () => true,
  reviewer: () => undefined,
  postedRef: async () => undefined,
};

const notice = { event: "requested" as const, request: pendingView(), version: 1 };

describe("Teams post", () => {
  let teams: TeamsServer;
  let untrust: () => void;
  // A Bot Connector that takes connections and what is sent on them, and never answers.
  let silent: Server;
  const sockets = new Set<Socket>();
  let received = 0;
  let silentUrl: string;

  beforeAll(async () => {
    teams = await startTeamsServer();
    untrust = teams.trust();
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on("data", (chunk) => {
        received += chunk.length;
      });
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/teams/`;
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
    untrust();
    await teams.close();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Posts the card and lets the call's deadline pass once `ready` holds; returns the failure. */
  async function postPastDeadline(bot: TeamsBot, ready: () => boolean): Promise<Error> {
    const config = teamsSchema.parse({ ...teams.config(), serviceUrl: silentUrl });
    const channel = createTeamsChannel(config, { ...deps, bot });
    const failed = channel.post(notice).then(
      () => new Error("the post went through"),
      (error: Error) => error,
    );
    while (!ready()) await new Promise((resolve) => setImmediate(resolve));
    await vi.advanceTimersByTimeAsync(CALL_DEADLINE_MS);
    return failed;
  }

  it("does not say the card may be there twice when the deadline came before the bot had a token", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    // Entra ID takes every request for the bot's token and never answers: nothing can have
    // been sent to Teams.
    let asked = 0;
    const never: INetworkModule = {
      sendGetRequestAsync: () => {
        asked++;
        return new Promise(() => {});
      },
      sendPostRequestAsync: () => {
        asked++;
        return new Promise(() => {});
      },
    };
    const { appId, appPassword, tenantId, loginUrl } = teams.config();
    const msal = new ConfidentialClientApplication({
      auth: {
        clientId: appId,
        clientSecret: appPassword,
        authority: `${loginUrl}/${tenantId}`,
        knownAuthorities: [new URL(loginUrl).host],
      },
      system: { networkClient: never },
    });
    // As the bot makes its credentials (teams-bot.ts), with that MSAL.
    const credentials = await new MsalServiceClientCredentialsFactory(
      appId,
      msal as unknown as ConstructorParameters<typeof MsalServiceClientCredentialsFactory>[1],
    ).createCredentials(appId, "https://api.botframework.com", `${loginUrl}/${tenantId}`, true);
    const client = new ConnectorClient(credentials, { baseUri: silentUrl });
    const before = received;
    const failure = await postPastDeadline(
      { verify: async () => undefined, connector: async () => client },
      () => asked > 0,
    );
    expect(failure).toBeInstanceOf(ChannelUnavailable);
    expect(failure.message).toMatch(/did not answer within 10 s/);
    expect(failure.message).not.toMatch(/twice/);
    expect(received).toBe(before);
  });

  it("says the card may be there twice when the deadline came after the card was sent", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const config = teamsSchema.parse({ ...teams.config(), serviceUrl: silentUrl });
    const before = received;
    const failure = await postPastDeadline(createTeamsBot(config), () => received > before);
    expect(failure).toBeInstanceOf(ChannelUnavailable);
    expect(failure.message).toMatch(/did not answer within 10 s/);
    expect(failure.message).toMatch(/Teams may have posted the card all the same/);
  });
});
