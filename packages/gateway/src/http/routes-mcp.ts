/**
 * `/mcp`: the agent API for agents that speak the Model Context Protocol (Streamable HTTP,
 * stateless, JSON answers). The connections' operations are its tools; a tool call is a
 * submission as `POST /v1/actions` makes it, with the same token, policy, review and audit,
 * and it answers with the result, the refusal, or the request that waits for a person;
 * Airlock's own tools read, list and cancel the agent's requests. A
 * client's `notifications/cancelled` reaches a call held here, or through the store one held
 * by another replica, and withdraws its request.
 */
import { randomUUID } from "node:crypto";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { MAX_BATCH_SIZE } from "@modelcontextprotocol/sdk/server/requestBody.js";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import {
  CallToolRequestSchema,
  CancelledNotificationSchema,
  ErrorCode,
  isInitializeRequest,
  ListToolsRequestSchema,
  McpError,
} from "@modelcontextprotocol/sdk/types.js";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { AgentConfig } from "../config/config-schema.js";
import type { Connector } from "../connectors/connector.js";
import { type AirlockError, callerMessage, isAirlockError } from "../errors.js";
import type { IdentityService } from "../identity/identity-service.js";
import type { Redactor } from "../masking/secret-redactor.js";
import { cutText } from "../masking/text-cut.js";
import type { Logger } from "../observability/logger.js";
import type { RequestService } from "../requests/request-service.js";
import { type ActionRequest, isTerminal } from "../requests/request-types.js";
import { agentView } from "../requests/request-views.js";
import { agentActionPage } from "./agent-action-pages.js";
import { actionBodySchema, actionListArgumentsSchema } from "./api-schemas.js";
import { toAirlockError } from "./fastify-errors.js";
import { mcpError } from "./mcp-errors.js";
import { createHeldCalls } from "./mcp-held-calls.js";
import { idempotencyKeyIn, keyRefused } from "./mcp-idempotency.js";
import { batchAnswer, isRequestId, isRequestMessage, screenMessages } from "./mcp-messages.js";
import { refuseMalformedParams, setAsideMalformedParams } from "./mcp-params.js";
import { createRecordedCalls, type RecordedCallStore } from "./mcp-recorded-calls.js";
import {
  type ActionTool,
  actionAnswer,
  actionTools,
  airlockTools,
  CANCEL_TOOL,
  LIST_TOOL,
  STATUS_TOOL,
  type ToolAnswer,
  textAnswer,
} from "./mcp-tools.js";
import { parseInput, principalFor, type RouteSpec } from "./route.js";

export interface McpDeps {
  requests: RequestService;
  identity: IdentityService;
  connectors: ReadonlyMap<string, Connector>;
  publicUrl: string;
  logger: Logger;
  redactor: Redactor;
  version: string;
  /** Where calls held for review are recorded, for a cancel on any replica to find. */
  store: RecordedCallStore;
  clock: () => number;
  /** How long a tool call waits for a person's decision before it says the action waits. */
  toolWaitMs: number;
  maxBodyBytes: number;
}

const INSTRUCTIONS = `Airlock runs these tools for you with credentials you never see. A policy decides each call: it runs at once, is refused (do not retry it as it is), or waits for a person's approval. A call that waits answers with the request's id when its wait ends: call ${STATUS_TOOL} with that id to wait for the outcome, or ${CANCEL_TOOL} to withdraw it; ${LIST_TOOL} lists your requests, newest first. Give a justification: the people deciding read it.`;

export const mcpRouteSpec: RouteSpec = {
  method: "POST",
  url: "/mcp",
  summary:
    "The agent API over the Model Context Protocol (Streamable HTTP, stateless, JSON): tools/list lists the connections' operations as tools; tools/call submits one as POST /v1/actions does.",
  tag: "agents",
  auth: "agent",
  responses: {
    200: "A JSON-RPC answer (a tool refused or failed answers isError: true; a malformed request with an id, its error)",
    202: "A notification, taken (no body)",
    400: "Not JSON (-32700); no request in it (nor a malformed one with an id to answer with) and a message that is no JSON-RPC message MCP takes (-32600), or a notification whose params cannot be read (-32602); an unsupported protocol version, an empty batch, one of more than 100 messages, or one whose requests share an id (a JSON-RPC error)",
    401: "No valid agent token",
    403: "Not an agent token",
    405: "GET or DELETE: the server is stateless and answers POST only",
    406: "The Accept header lacks application/json or text/event-stream (a JSON-RPC error)",
    413: "The body is larger than server.maxBodyBytes (a JSON-RPC error)",
    415: "The body is not application/json (a JSON-RPC error)",
  },
};

export function mcpRoutes(app: FastifyInstance, deps: McpDeps): void {
  const { requests, logger } = deps;
  const held = createHeldCalls();
  const recorded = createRecordedCalls(deps.store, deps.toolWaitMs, deps.clock);

  // The token only: a console session's cookie never stands for an agent.
  const agentOf = async (request: FastifyRequest): Promise<AgentConfig> =>
    principalFor(await deps.identity.authenticate(request.headers.authorization), "agent").agent;

  const viewOf = (request: ActionRequest) =>
    agentView(request, deps.publicUrl, requests.countedGroups(request));
  const answer = (request: ActionRequest): ToolAnswer => actionAnswer(viewOf(request));

  /**
   * A refusal the model can act on (a field to fix, a time to wait) is a tool result. A field
   * of the input is named as the tool's argument it is: `path`, not `input.path`.
   */
  const refused = (error: AirlockError, ownArguments: boolean): ToolAnswer => {
    const retryAfter = error.details?.retryAfter;
    const field = error.field;
    const said = callerMessage(error);
    const message =
      ownArguments && field?.startsWith("input.") && said.startsWith(`${field}:`)
        ? said.slice("input.".length)
        : said;
    // The rate limit's own message says the wait already.
    const wait =
      typeof retryAfter === "number" && !message.includes(`try again in ${retryAfter} s`)
        ? ` (try again in ${retryAfter} s)`
        : "";
    return textAnswer(`${error.code}: ${deps.redactor.redactText(message)}${wait}`, true);
  };

  /**
   * Cancels the agent's request; one that had already ended (`not_pending`, `expired`) is
   * read as it ended, with the refusal beside it.
   */
  const cancelOrRead = async (
    agent: AgentConfig,
    id: string,
  ): Promise<{ request: ActionRequest; refusal?: AirlockError }> => {
    try {
      return { request: await requests.cancel(agent, id) };
    } catch (error) {
      if (isAirlockError(error) && (error.code === "not_pending" || error.code === "expired")) {
        return { request: await requests.getForAgent(agent, id), refusal: error };
      }
      throw error;
    }
  };

  /** Withdraws the request of a call its client cancelled, unless a decision came first. */
  const withdraw = async (agent: AgentConfig, id: string): Promise<ActionRequest> =>
    (await cancelOrRead(agent, id)).request;

  /**
   * A cancel sent again after its answer was lost finds the request cancelled by the first,
   * which only this agent can have done: done, as the agent SDK's `cancel` takes it. Any
   * other end (run, denied, expired) is still refused.
   */
  const cancelOwn = async (agent: AgentConfig, id: string): Promise<void> => {
    const { request, refusal } = await cancelOrRead(agent, id);
    if (refusal && request.status !== "cancelled") throw refusal;
  };

  /**
   * Waits for a decision on the request of a call held for review. A call that has a key (its
   * client has a session id) is recorded meanwhile, so that its cancel withdraws the request
   * on whichever replica it lands, which ends this wait as any change would; a cancel that
   * came first is found as the call is recorded.
   */
  const waitHeld = async (
    agent: AgentConfig,
    request: ActionRequest,
    key: string | undefined,
    signal: AbortSignal,
  ): Promise<ActionRequest> => {
    const { id } = request;
    let cancelledFirst: boolean | undefined;
    if (key !== undefined && request.status === "pending" && !signal.aborted) {
      try {
        cancelledFirst = await recorded.hold(key, id);
      } catch (err) {
        // The wait goes on: only a cancel landing on another replica is lost.
        logger.warn({ err, agent: agent.name, requestId: id }, "an MCP call could not be recorded");
      }
    }
    if (cancelledFirst) {
      logger.info({ agent: agent.name, requestId: id }, "an MCP client cancelled a tool call");
      await forget(key, id);
      return withdraw(agent, id);
    }
    try {
      return await requests.waitForTerminal(id, deps.toolWaitMs, signal);
    } finally {
      if (cancelledFirst === false) await forget(key, id);
    }
  };

  /**
   * Whether the call's cancel overtook it, landing on this replica or another before the call
   * was held: it then makes no request, which would only be withdrawn (a cancel landing while
   * the call submits is still found as the call is recorded, in waitHeld).
   */
  const cancelledFirst = async (agent: AgentConfig, key: string | undefined): Promise<boolean> => {
    // Without a wait, no call is recorded, and no cancel leaves a mark.
    if (key === undefined || deps.toolWaitMs <= 0) return false;
    try {
      if (!(await recorded.cancelledFirst(key))) return false;
    } catch (err) {
      // The call goes on: only a cancel that overtook it is missed.
      logger.warn({ err, agent: agent.name }, "an MCP call's cancel could not be looked up");
      return false;
    }
    logger.info(
      { agent: agent.name },
      "an MCP client cancelled a tool call before it was submitted",
    );
    return true;
  };

  /** A call left recorded is swept once its time is up. */
  const forget = async (key: string | undefined, id: string): Promise<void> => {
    if (key === undefined) return;
    await recorded.release(key, id).catch((err: unknown) => {
      logger.warn({ err, requestId: id }, "an answered MCP call could not be forgotten");
    });
  };

  /**
   * `cancelled` aborts when the client cancels the call; `signal` also when it hangs up, which
   * ends a wait but withdraws nothing (a connection lost is not a change of mind, and a retry
   * with the call's idempotency key must find its request waiting). `key` records the call
   * for a cancel landing on another replica.
   */
  const call = async (
    agent: AgentConfig,
    name: string,
    args: Record<string, unknown>,
    meta: Record<string, unknown> | undefined,
    key: string | undefined,
    cancelled: AbortSignal,
    signal: AbortSignal,
  ): Promise<ToolAnswer> => {
    if (name === LIST_TOOL) {
      const query = parseInput(actionListArgumentsSchema, args, "arguments");
      const page = await agentActionPage(requests, agent, query, viewOf);
      return textAnswer(JSON.stringify(page));
    }
    if (name === STATUS_TOOL || name === CANCEL_TOOL) {
      const id = args.id;
      if (typeof id !== "string" || id.length === 0 || id.length > 64) {
        return textAnswer(
          'invalid_request: id: give the request\'s id, like {"id": "req_…"}',
          true,
        );
      }
      if (name === STATUS_TOOL) {
        return answer(await requests.getForAgent(agent, id, deps.toolWaitMs, signal));
      }
      await cancelOwn(agent, id);
      return textAnswer(`Request ${id} is cancelled; it did not run, and it will not.`);
    }
    const tool: ActionTool | undefined = (await actionTools(deps.connectors, logger, name)).find(
      (candidate) => candidate.name === name,
    );
    if (!tool) {
      throw mcpError(ErrorCode.InvalidParams, `no tool ${name}; tools/list lists them`);
    }
    const idempotencyKey = idempotencyKeyIn(meta);
    // Airlock's justification is taken out of the arguments; an operation's own stays in.
    const { justification, ...rest } = args;
    const ours = tool.ownsJustification && justification !== undefined;
    const body = parseInput(
      actionBodySchema,
      {
        connection: tool.connection,
        operation: tool.operation,
        input: tool.ownsJustification ? rest : args,
        ...(ours ? { justification } : {}),
        ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
      },
      "arguments",
    );
    if (cancelled.aborted || (await cancelledFirst(agent, key))) {
      return textAnswer("The call was cancelled before it was submitted; nothing ran.", true);
    }
    let request: ActionRequest;
    try {
      request = await requests.submit(agent, body);
    } catch (error) {
      // The key used before for another action.
      if (isAirlockError(error) && error.field === "idempotencyKey") throw keyRefused(error);
      throw error;
    }
    if (!isTerminal(request.status) && deps.toolWaitMs > 0) {
      request = await waitHeld(agent, request, key, signal);
      // Said, for whoever wonders later why an action ran that nobody waited for.
      if (signal.aborted && !cancelled.aborted && request.status === "pending") {
        logger.info(
          { agent: agent.name, requestId: request.id },
          "an MCP client hung up on a tool call waiting for review; its request keeps waiting",
        );
      }
    }
    // Nobody will read what it would return: it must not run after its client gave it up.
    if (cancelled.aborted && request.status === "pending") {
      request = await withdraw(agent, request.id);
    }
    return answer(request);
  };

  /** One MCP server per HTTP request: the transport is stateless, and so is each exchange. */
  const serve = async (request: FastifyRequest, reply: FastifyReply, agent: AgentConfig) => {
    const body: unknown = request.body;
    const batch = Array.isArray(body);
    const messages: unknown[] = Array.isArray(body) ? body : [body];
    const invalid = invalidBatch(messages);
    if (invalid !== undefined) {
      return reply.code(400).send({
        jsonrpc: "2.0",
        error: { code: ErrorCode.InvalidRequest, message: `Invalid Request: ${invalid}` },
        id: null,
      });
    }
    const { kept, refused: malformed } = screenMessages(messages);
    // A malformed request with an id to answer with is a request all the same: Streamable HTTP
    // answers a request with its JSON-RPC answer (200), here its error, and keeps HTTP errors
    // for input that gets no answer by id.
    const answered = malformed.some((refusal) => refusal.error.id !== null);
    // A POST with no request in it is taken whole (202) or refused whole: a 400 then says that
    // nothing in it was taken.
    if (malformed.length > 0 && !kept.some(isRequestMessage) && !answered) {
      const errors = malformed.map((refusal) => refusal.error);
      return reply.code(400).send(batch ? errors : errors[0]);
    }
    if (kept.length === 0) {
      return reply.send(batch ? batchAnswer(messages, malformed, []) : malformed[0]?.error);
    }
    for (const { error } of malformed.filter((refusal) => !refusal.answered)) {
      logger.info(
        { agent: agent.name, field: error.error.data.field },
        "a malformed notification in an MCP client's batch was not taken",
      );
    }
    // Clients that share a token number their calls alike (the SDK's from 0): the session id
    // a client was given tells whose call a cancel names.
    const header = request.headers["mcp-session-id"];
    const session = typeof header === "string" ? header : undefined;
    const caller = JSON.stringify([agent.name, session ?? null]);
    const server = new Server(
      { name: "airlock", version: deps.version },
      { capabilities: { tools: { listChanged: false } }, instructions: INSTRUCTIONS },
    );
    server.setRequestHandler(ListToolsRequestSchema, async () => {
      const tools = [...airlockTools, ...(await actionTools(deps.connectors, logger))].map(
        ({ name, description, inputSchema }) => ({ name, description, inputSchema }),
      );
      return deps.redactor.redact({ tools });
    });
    server.setRequestHandler(CallToolRequestSchema, async (message, extra) => {
      const { name, arguments: args = {}, _meta: meta } = message.params;
      const hold = held.hold(caller, extra.requestId);
      try {
        return await call(
          agent,
          name,
          args,
          meta,
          recorded.key(agent.name, session, extra.requestId),
          hold.signal,
          AbortSignal.any([extra.signal, gone.signal, hold.signal]),
        );
      } catch (error) {
        if (error instanceof McpError) throw error;
        // An action that ran, whose outcome the store refused (`internal`, `executed`), is told
        // as over HTTP: a model told only that something went wrong would call it again.
        const ran = isAirlockError(error) && error.details?.executed === true;
        if (isAirlockError(error) && (error.code !== "internal" || ran)) {
          // What the store said is for the log: the model is told to try again.
          if (error.code === "internal" || error.code === "store_unavailable") {
            logger.error({ err: error, agent: agent.name, tool: name }, error.message);
          }
          return refused(error, !AIRLOCK_TOOLS.has(name));
        }
        logger.error({ err: error, agent: agent.name, tool: name }, "an MCP tool call failed");
        throw mcpError(
          ErrorCode.InternalError,
          `something went wrong on Airlock's side; the log has the details under request id ${request.id}`,
        );
      } finally {
        hold.release();
      }
    });
    // In place of the SDK's own, which knows only this POST's calls and, cancelling one, leaves
    // its POST without an answer for good.
    server.setNotificationHandler(CancelledNotificationSchema, async ({ params }) => {
      // Once the calls of the same POST (a batch) have started and can be found.
      await new Promise((resolve) => setImmediate(resolve));
      // Redacted, then cut: cut first, a credential across the cut would be left in part.
      const reason = cutText(deps.redactor.redactText(params.reason ?? ""), 200, []);
      if (params.requestId === undefined) return;
      const said = { agent: agent.name, mcpRequestId: String(params.requestId).slice(0, 100) };
      const reach = held.cancel(caller, params.requestId, reason);
      if (reach === "held") {
        logger.info({ ...said, reason }, "an MCP client cancelled a tool call");
        return;
      }
      if (reach === "two") {
        logger.info(
          said,
          "an MCP client's cancel was ignored: two calls held here have its number, from clients that share a token and send no session id, and which one it meant cannot be told",
        );
        return;
      }
      // Not held here: perhaps by another replica, or not yet by any.
      const key = recorded.key(agent.name, session, params.requestId);
      if (key === undefined) {
        // Said, as the client cannot tell that its cancel did nothing.
        logger.info(
          said,
          "an MCP client's cancel was ignored: this replica holds no call of that number from a client without a session id, and only a client with one is reached on every replica",
        );
        return;
      }
      if (deps.toolWaitMs <= 0) return;
      try {
        const id = await recorded.cancel(key);
        if (id === undefined) return;
        await withdraw(agent, id);
        logger.info({ ...said, requestId: id, reason }, "an MCP client cancelled a tool call");
      } catch (err) {
        logger.warn({ ...said, err }, "an MCP client's cancel could not be carried out");
      }
    });
    // A caller that hangs up ends the tool call's wait.
    const gone = new AbortController();
    const hangUp = () => {
      if (!reply.sent) gone.abort();
    };
    request.raw.socket?.once("close", hangUp);
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    await server.connect(transport);
    const { messages: delivered, setAside } = setAsideMalformedParams(kept);
    refuseMalformedParams(transport, logger, setAside);
    try {
      const headers = new Headers();
      for (const [key, value] of Object.entries(request.headers)) {
        if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(", ") : value);
      }
      const response = await transport.handleRequest(
        new Request(new URL(request.url, deps.publicUrl), { method: request.method, headers }),
        { parsedBody: batch ? delivered : delivered[0] },
      );
      reply.code(response.status);
      response.headers.forEach((value, key) => {
        reply.header(key, value);
      });
      // A label for the client's calls, kept nowhere: any replica takes any session id, and a
      // request without one is served as well.
      if (response.status === 200 && delivered.some(isInitializeRequest)) {
        reply.header("mcp-session-id", randomUUID());
      }
      const text = await response.text();
      // The batch's notifications were taken (202); its malformed requests are still answered.
      if (batch && response.status === 202 && answered) {
        return reply.code(200).send(batchAnswer(messages, malformed, []));
      }
      if (!batch || response.status !== 200) return reply.send(text);
      // JSON-RPC answers a batch with an array, even of one answer (the transport sends a lone
      // answer bare, which a client that sent a batch may not match to its request), with the
      // refusals of its malformed messages in their places.
      const answers: unknown = JSON.parse(text);
      return reply.send(
        batchAnswer(messages, malformed, Array.isArray(answers) ? answers : [answers]),
      );
    } finally {
      request.raw.socket?.off("close", hangUp);
      await server.close();
    }
  };

  /**
   * A body that cannot be read as JSON-RPC is answered as the MCP spec asks: an HTTP error
   * status and a JSON-RPC error without an id (the statuses and codes the SDK's transport
   * gives), not the REST API's error, which an MCP client cannot read. Other errors (a token
   * refused) go on to the server's handler.
   */
  const unreadable = (error: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
    const known = toAirlockError(error, deps.maxBodyBytes);
    if (!known || !BODY_FIELDS.has(known.field ?? "")) throw error;
    const parse = known.status === 400;
    return reply.code(known.status).send({
      jsonrpc: "2.0",
      error: {
        code: parse ? ErrorCode.ParseError : SERVER_ERROR,
        message: `${parse ? "Parse error: " : ""}${deps.redactor.redactText(known.message)}`,
        data: { code: known.code, field: known.field },
      },
      id: null,
    });
  };
  app.post("/mcp", { errorHandler: unreadable }, async (request, reply) =>
    serve(request, reply, await agentOf(request)),
  );
  // Stateless: no stream the server opens, and no session to end.
  for (const method of ["GET", "DELETE"] as const) {
    app.route({
      method,
      url: "/mcp",
      handler: async (request, reply) => {
        await agentOf(request);
        return reply
          .code(405)
          .header("allow", "POST")
          .send({
            error: {
              code: "invalid_request",
              message: `${method} /mcp: this server is stateless and answers POST only (no session to end, no stream it starts)`,
            },
          });
      },
    });
  }
}

/** Airlock's own tools, whose arguments are theirs, not an action's input. */
const AIRLOCK_TOOLS = new Set([STATUS_TOOL, CANCEL_TOOL, LIST_TOOL]);

/** What names a failure to read the body, before any message in it is read. */
const BODY_FIELDS = new Set(["body", "content-type", "content-length"]);
/** JSON-RPC's code for a server's own errors, which the SDK's transport gives 413 and 415. */
const SERVER_ERROR = -32000;

/** Why a batch is refused before anything in it runs, if it is. */
function invalidBatch(messages: readonly unknown[]): string | undefined {
  // JSON-RPC's answer to an empty batch; the transport takes it for notifications (202).
  if (messages.length === 0) return "the batch is empty; send at least one message";
  // The transport's bound, before its malformed messages are taken out and answered.
  if (messages.length > MAX_BATCH_SIZE) {
    return `the batch holds ${messages.length} messages; send at most ${MAX_BATCH_SIZE}`;
  }
  // The transport answers one of two requests that share an id, after running both: an
  // action would run with its answer lost.
  const shared = sharedId(messages);
  return shared === undefined
    ? undefined
    : `two requests in the batch have the id ${shared.slice(0, 100)}; give each its own`;
}

/** The id (as JSON) that two requests of a batch share, if any. */
function sharedId(messages: readonly unknown[]): string | undefined {
  const seen = new Set<string>();
  for (const message of messages) {
    if (typeof message !== "object" || message === null) continue;
    if (!("method" in message) || !("id" in message) || !isRequestId(message.id)) continue;
    const id = JSON.stringify(message.id);
    if (seen.has(id)) return id;
    seen.add(id);
  }
  return undefined;
}
