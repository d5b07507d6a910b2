/**
 * One way to declare a route: its schemas, who may call it, and a handler that gets parsed,
 * typed input. The same declarations produce the OpenAPI document.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { z } from "zod";
import { invalidRequest } from "../common/zod-errors.js";
import { AirlockError } from "../errors.js";
import type { Principal } from "../identity/identity-service.js";

export type Auth = "agent" | "reviewer" | "none";

export interface RouteSpec<
  B extends z.ZodType = z.ZodType,
  Q extends z.ZodType = z.ZodType,
  P extends z.ZodType = z.ZodType,
> {
  method: "GET" | "POST";
  url: string;
  summary: string;
  tag: string;
  auth: Auth;
  body?: B;
  query?: Q;
  params?: P;
  responses: Record<number, string>;
}

type PrincipalFor<A extends Auth> = A extends "agent"
  ? Extract<Principal, { kind: "agent" }>
  : A extends "reviewer"
    ? Extract<Principal, { kind: "reviewer" }>
    : undefined;

export interface RouteContext<A extends Auth, B, Q, P> {
  principal: PrincipalFor<A>;
  body: B;
  query: Q;
  params: P;
  request: FastifyRequest;
  reply: FastifyReply;
  /** Aborts when the caller disconnects. */
  signal: AbortSignal;
}

export interface Reply {
  status?: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** Who sent the request: a bearer token, or a console session (with its CSRF token). */
export type Authenticate = (request: FastifyRequest) => Promise<Principal>;

export function parseInput<S extends z.ZodType>(
  schema: S | undefined,
  value: unknown,
  where: string,
): z.output<S> {
  if (!schema) return undefined as z.output<S>;
  const parsed = schema.safeParse(value ?? (where === "body" ? undefined : {}));
  if (parsed.success) return parsed.data;
  const root = parsed.error.issues[0];
  if (where === "body" && root?.code === "invalid_type" && root.path.length === 0) {
    throw new AirlockError("invalid_request", "body: must be a JSON object", { field: "body" });
  }
  throw invalidRequest(parsed.error, [], where);
}

/** The principal when it is of the kind a route is for; `forbidden` naming the right token if not. */
export function principalFor<A extends Exclude<Auth, "none">>(
  principal: Principal,
  auth: A,
): PrincipalFor<A> {
  if (principal.kind !== auth) {
    throw new AirlockError(
      "forbidden",
      auth === "reviewer"
        ? "this endpoint is for reviewers; use a personal token, not an agent token"
        : "this endpoint is for agents; use an agent token, not a personal token",
    );
  }
  return principal as PrincipalFor<A>;
}

export function createRouter(app: FastifyInstance, authenticate: Authenticate) {
  const specs: RouteSpec[] = [];

  function route<A extends Auth, B extends z.ZodType, Q extends z.ZodType, P extends z.ZodType>(
    spec: RouteSpec<B, Q, P> & { auth: A },
    handler: (ctx: RouteContext<A, z.output<B>, z.output<Q>, z.output<P>>) => Promise<Reply>,
  ): void {
    specs.push(spec as unknown as RouteSpec);
    app.route({
      method: spec.method,
      url: spec.url,
      handler: async (request, reply) => {
        const principal =
          spec.auth === "none" ? undefined : principalFor(await authenticate(request), spec.auth);
        const params = parseInput(spec.params, request.params, "params");
        const query = parseInput(spec.query, request.query, "query");
        const body = parseInput(spec.body, request.body, "body");
        // The disconnect signal is made only for handlers that ask (long-polls).
        let onClose: (() => void) | undefined;
        const context = {
          principal: principal as PrincipalFor<A>,
          body,
          query,
          params,
          request,
          reply,
          get signal(): AbortSignal {
            const controller = new AbortController();
            onClose = () => {
              if (!reply.sent) controller.abort();
            };
            request.raw.socket?.once("close", onClose);
            return controller.signal;
          },
        };
        try {
          const result = await handler(context);
          if (result.headers) reply.headers(result.headers);
          return reply.code(result.status ?? 200).send(result.body);
        } finally {
          if (onClose) request.raw.socket?.off("close", onClose);
        }
      },
    });
  }

  return { app, route, specs };
}
