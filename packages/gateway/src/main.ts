/** The composition root: config -> store -> services -> server. Everything is wired here, once. */
import { createPublicKey } from "node:crypto";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DestinationStream } from "pino";
import { createCheckpointer, readKey } from "./audit/audit-checkpoints.js";
import { type Channel, type ChannelView, isApprovalChannel } from "./channels/channel.js";
import {
  approvalChannelNames,
  channelSecrets,
  configuredChannels,
} from "./channels/channel-registry.js";
import { createDispatcher } from "./channels/notification-dispatcher.js";
import type { Json } from "./common/canonical-json.js";
import { ConfigError } from "./config/config-errors.js";
import { type LoadedConfig, reviewChannelIssues } from "./config/config-load.js";
import {
  createLiveConfig,
  type LiveChanges,
  liveChanges,
  restartOnlyChanges,
} from "./config/live-config.js";
import type { Connector } from "./connectors/connector.js";
import { connectorType } from "./connectors/connector-registry.js";
import { AirlockError } from "./errors.js";
import { buildServer } from "./http/server.js";
import { createIdentityService } from "./identity/identity-service.js";
import { createOidcService } from "./identity/oidc-service.js";
import { createRedactor } from "./masking/secret-redactor.js";
import { createLogger, type Logger } from "./observability/logger.js";
import { createMetrics } from "./observability/metrics.js";
import { createApprovers } from "./requests/request-approvers.js";
import { createExecutor } from "./requests/request-executor.js";
import { pruneFinished } from "./requests/request-retention.js";
import { createRequestService } from "./requests/request-service.js";
import type { ActionRequest } from "./requests/request-types.js";
import { reviewerView } from "./requests/request-views.js";
import { createWaiters } from "./requests/request-waiters.js";
import { openStore } from "./store/open-store.js";
import type { Store } from "./store/store.js";

export const version: string = (
  createRequire(import.meta.url)("../package.json") as { version: string }
).version;

export interface GatewayOptions {
  logger?: Logger;
  /** Where log lines go when no logger is given (tests capture them). */
  logDestination?: DestinationStream;
  logLevel?: string;
  /**
   * This process's clock (default Date.now). Where it owns the store (SQLite), it is also the
   * store's time; where replicas share one (PostgreSQL), they judge by the database's.
   */
  clock?: () => number;
  channels?: Channel[];
  /** Where the console's built files are (false: none); by default packages/console/dist when built. */
  consoleDir?: string | false;
  /** How channel deliveries are retried (defaults: 1 s doubling to 5 min, 12 attempts). */
  delivery?: { pollInterval?: number; maxAttempts?: number; backoff?: (attempt: number) => number };
  /** Overrides server.port / server.host (0 picks a free port). */
  port?: number;
  host?: string;
}

export type Gateway = Awaited<ReturnType<typeof createGateway>>;

export async function createGateway(loaded: LoadedConfig, options: GatewayOptions = {}) {
  const { config } = loaded;
  const clock = options.clock ?? Date.now;
  const approvalChannels = [
    ...approvalChannelNames(config),
    ...(options.channels ?? []).filter(isApprovalChannel).map((c) => c.name),
  ];
  const channelIssues = reviewChannelIssues(loaded, approvalChannels);
  if (channelIssues.length > 0) throw new ConfigError(loaded.source, channelIssues);
  const live = createLiveConfig(loaded);
  let running = loaded;

  const connectors = new Map<string, Connector>();
  const configSecrets = [
    ...loaded.secrets,
    ...channelSecrets(config),
    ...(config.identity.oidc ? [config.identity.oidc.clientSecret] : []),
  ];
  let redactor = createRedactor(configSecrets);
  // Connectors log as they run (an MCP server that cannot list its tools), so they get the
  // gateway's logger; its lines are scrubbed by the redactor in force, which takes in the
  // connectors' own secrets once they are made (they log nothing before).
  const logger =
    options.logger ??
    createLogger({
      redactor: { redactText: (text) => redactor.redactText(text) },
      ...(options.logLevel ? { level: options.logLevel } : {}),
      ...(options.logDestination ? { destination: options.logDestination } : {}),
    });
  for (const [name, connection] of Object.entries(config.connections)) {
    const type = connectorType(connection.type);
    if (!type) throw new Error(`connection ${name}: unknown type ${connection.type}`);
    connectors.set(name, type.create(name, connection, { logger, secrets: loaded.secrets }));
  }
  redactor = createRedactor([
    ...configSecrets,
    ...[...connectors.values()].flatMap((c) => c.secrets),
  ]);
  const metrics = createMetrics();

  let store: Store;
  try {
    store = await openStore(config.storage, loaded.baseDir, {
      serving: true,
      clock,
      onError: (err) =>
        logger.warn(
          { err },
          "the store lost a connection no call was using; it reconnects on its own",
        ),
    });
  } catch (error) {
    await Promise.all([...connectors.values()].map((c) => c.close()));
    throw error;
  }
  const publicUrl = config.server.publicUrl;
  // What replicas must agree on is judged and stamped by the store's time: where they share
  // a database, its clock, whatever this process's says (Store.now). This process's clock is
  // left to what is between it and others (a chat message's signed time, caches it keeps).
  const storeTime = () => store.now();
  const identity = createIdentityService({ store, live, clock: storeTime });
  const oidc =
    config.identity.oidc &&
    createOidcService({
      config: config.identity.oidc,
      publicUrl,
      store,
      clock: storeTime,
      logger,
      configured: (email) => identity.reviewer(email),
      approverGroups: live.approverGroups,
    });
  const waiters = createWaiters(store);
  const channels = [
    ...configuredChannels(config, {
      logger,
      redactor,
      clock,
      storeTime,
      claimOnce: (key, expiresAt, now) => store.claimOnce(key, expiresAt, now),
      reviewer: live.reviewer,
      postedRef: async (requestId, channel) => {
        const ref = await store.getChannelRef(requestId, channel);
        if (ref !== undefined) return ref;
        // A click can come between the chat's answer to the post and the recording of where
        // it went (milliseconds, or as long as the store takes): when this process is making
        // that post, the click waits for it (at most as long as the post may take) and reads
        // again. One another replica is making is not known here, and a click on it in that
        // moment is still refused (clicking again works).
        const posting = dispatcher.posting(requestId, channel);
        if (!posting) return undefined;
        await posting;
        return store.getChannelRef(requestId, channel);
      },
    }),
    ...(options.channels ?? []),
  ];
  const approvers = createApprovers(live);
  const channelView = (request: ActionRequest): ChannelView => {
    const { you: _you, ...view } = reviewerView(
      request,
      { email: "", groups: [] },
      approvers.ownersOf(request),
      publicUrl,
      approvers.countedGroups(request),
    );
    return view;
  };
  // Every channel gets the view redacted, whatever it does with it (Slack has no redactor of
  // its own): a secret that reached a request by any path stops here. A channel checking a
  // click against what its message showed reads the same view the message was built from.
  const shownView = (request: ActionRequest): ChannelView => redactor.redact(channelView(request));
  const readView = async (id: string): Promise<ChannelView | undefined> => {
    const request = await store.getRequest(id);
    return request ? shownView(request) : undefined;
  };
  const dispatcher = createDispatcher({
    ...options.delivery,
    store,
    channels,
    logger,
    metrics,
    clock,
    view: readView,
    snapshot: shownView,
  });
  const executor = createExecutor({
    store,
    connectors,
    approvers,
    redactor,
    plan: dispatcher.plan,
    logger,
    metrics,
    clock: storeTime,
    afterCommit: dispatcher.kick,
    leaseMs: config.server.executionLease,
  });
  const requests = createRequestService({
    store,
    live,
    connectors,
    resultMasks: new Map(
      Object.entries(config.connections).map(([name, c]) => [name, c.mask?.result ?? []]),
    ),
    approvers,
    executor,
    waiters,
    plan: dispatcher.plan,
    logger,
    metrics,
    clock: storeTime,
    afterCommit: dispatcher.kick,
    redactor,
  });
  const { signingKey, publicKeys, checkpointEvery } = config.audit;
  const privateKey = signingKey ? readKey(signingKey, "sign") : undefined;
  const otherKeys = publicKeys?.map((pem) => readKey(pem, "check")) ?? [];
  const app = buildServer({
    auditKeys: privateKey ? { own: createPublicKey(privateKey), others: otherKeys } : undefined,
    store,
    requests,
    identity,
    oidc,
    live,
    consoleDir: options.consoleDir === false ? undefined : (options.consoleDir ?? builtConsole()),
    logger,
    metrics,
    publicUrl,
    maxBodyBytes: config.server.maxBodyBytes,
    trustProxy: config.server.trustProxy,
    maxWaitSeconds: config.server.maxWaitSeconds,
    mcpToolWaitMs: config.server.mcpToolWait,
    connectors,
    requestTimeoutMs: config.server.requestTimeout,
    version,
    redactor,
    clock: storeTime,
    extend: (instance) => {
      for (const channel of channels) {
        channel.routes?.(
          instance,
          ({ requestId, reviewer, decision, comment }) =>
            requests.review(reviewer, requestId, { decision, comment, via: channel.name }),
          readView,
        );
      }
    },
  });

  const checkpointer = privateKey
    ? createCheckpointer({
        store,
        privateKey,
        publicKeys: publicKeys ? otherKeys : undefined,
        everyMs: checkpointEvery,
        clock: storeTime,
        logger,
      })
    : undefined;

  let sweeper: NodeJS.Timeout | undefined;
  let url: string | undefined;
  let closing: Promise<void> | undefined;

  let sweeping: Promise<void> | undefined;
  // SQLite is one process's alone; PostgreSQL may be shared by replicas.
  const shared = store.dialect === "postgres";
  // Timed on the monotonic clock: a wall clock stepped back an hour would hold lease checks
  // off for that hour.
  let lastLeaseCheck = performance.now();
  const sweep = (): Promise<void> => {
    // One sweep at a time, and none once closing: it could claim work after the drain.
    if (closing || sweeping) return sweeping ?? Promise.resolve();
    sweeping = (async () => {
      try {
        await requests.sweepExpired();
        // On a shared database, a replica that died leaves executions whose leases run out.
        if (shared && performance.now() - lastLeaseCheck >= config.server.executionLease / 4) {
          lastLeaseCheck = performance.now();
          const ended = await executor.recover();
          if (ended.interrupted) logger.warn(ended, "ended executions a stopped replica left");
        }
        await executor.resumeApproved();
      } catch (error) {
        logger.warn({ err: error }, "sweep failed; will retry");
      } finally {
        sweeping = undefined;
      }
    })();
    return sweeping;
  };

  // Finished requests past retention.requests, deleted on their own timer: a long prune
  // never holds up the sweeps that end expired requests.
  let pruner: NodeJS.Timeout | undefined;
  let pruning: Promise<unknown> | undefined;
  const keepMs = config.retention.requests;
  const prune = () => {
    if (closing || pruning || keepMs === undefined) return;
    pruning = pruneFinished({
      store,
      keepMs,
      clock: storeTime,
      logger,
      metrics,
      stopped: () => closing !== undefined,
    })
      .catch((error: unknown) =>
        logger.warn(
          { err: error },
          "could not delete finished requests past retention; will retry",
        ),
      )
      .finally(() => {
        pruning = undefined;
      });
  };

  /**
   * Takes up `next`'s rules, agents and reviewers, or refuses it whole (a ConfigError naming
   * each part that needs a restart). The change is recorded in the audit trail before it
   * takes effect: a policy change that could not be recorded does not happen.
   */
  let reloading = Promise.resolve();
  const reload = (next: LoadedConfig, actor: string): Promise<LiveChanges | undefined> => {
    const run = reloading.then(async () => {
      if (closing) throw new AirlockError("store_unavailable", "the gateway is stopping");
      const issues = [
        ...restartOnlyChanges(running, next),
        ...reviewChannelIssues(next, approvalChannels),
      ];
      if (issues.length > 0) {
        metrics.configReloads.inc({ result: "refused" });
        throw new ConfigError(next.source, issues);
      }
      const changes = liveChanges(running, next);
      if (!changes) {
        metrics.configReloads.inc({ result: "unchanged" });
        return undefined;
      }
      try {
        await store.appendAudit([
          {
            type: "config.reloaded",
            requestId: null,
            actor: { type: "operator", id: actor },
            at: storeTime(),
            data: redactor.redact(changes) as unknown as Json,
          },
        ]);
      } catch (error) {
        metrics.configReloads.inc({ result: "refused" });
        throw error;
      }
      live.replace(next);
      running = next;
      metrics.configReloads.inc({ result: "applied" });
      logger.info(changes, "reloaded the config's rules, agents and reviewers");
      return changes;
    });
    reloading = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  };

  return {
    app,
    store,
    /** The config the gateway started with; `live` holds the reloadable part as it is now. */
    config,
    live,
    reload,
    logger,
    metrics,
    requests,
    identity,
    executor,
    dispatcher,
    checkpointer,
    connectors,
    get url(): string {
      if (!url) throw new Error("the gateway is not listening yet");
      return url;
    },
    /** Recovers what a stop left behind, then serves. Returns the address it listens on. */
    async start(): Promise<string> {
      const recovered = await executor.recover({ all: !shared });
      if (recovered.interrupted || recovered.resumed)
        logger.warn(recovered, "recovered requests left by a stop");
      // Deliveries a killed process had begun, on a store that was its alone: made again now.
      const released = (await store.releaseOutboxClaims?.()) ?? 0;
      if (released > 0)
        logger.warn(
          { deliveries: released },
          "deliveries a stopped process had begun are made again",
        );
      await sweep();
      sweeper = setInterval(sweep, config.server.sweepInterval);
      sweeper.unref();
      if (keepMs !== undefined) {
        prune();
        pruner = setInterval(prune, config.retention.every);
        pruner.unref();
      }
      dispatcher.start();
      await checkpointer?.start();
      url = await app.listen({
        port: options.port ?? config.server.port,
        host: options.host ?? config.server.host,
      });
      logger.info(
        { url, storage: store.dialect, connections: [...connectors.keys()] },
        "airlock is serving",
      );
      return url;
    },
    /** Stops taking work, lets executions under way finish, and closes the store. */
    close(): Promise<void> {
      closing ??= (async () => {
        if (sweeper) clearInterval(sweeper);
        if (pruner) clearInterval(pruner);
        await sweeping;
        await pruning;
        waiters.close();
        await app.close();
        // Decisions a channel acknowledged are recorded before executions are drained.
        await Promise.all(channels.map((channel) => channel.settle?.()));
        await executor.drain();
        await dispatcher.stop();
        await Promise.all([...connectors.values()].map((c) => c.close()));
        for (const channel of channels) await channel.close?.();
        // What the chain holds now, signed before the store closes.
        await checkpointer?.stop();
        await store.close();
        logger.flush?.();
      })();
      return closing;
    },
  };
}

/** The console as `npm run build` leaves it next to this package, if it was built. */
function builtConsole(): string | undefined {
  const dir = fileURLToPath(new URL("../../console/dist/", import.meta.url));
  return existsSync(join(dir, "index.html")) ? dir : undefined;
}
