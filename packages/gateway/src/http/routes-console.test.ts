import type { IncomingMessage } from "node:http";
import { type AddressInfo, connect } from "node:net";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { afterEach, expect, it } from "vitest";
import { AirlockError } from "../errors.js";
import type { Principal } from "../identity/identity-service.js";
import { createRedactor } from "../masking/secret-redactor.js";
import { compilePolicy } from "../policy/policy-compile.js";
import { openSqliteStore } from "../store/sqlite/sqlite-store.js";
import type { Store } from "../store/store.js";
import { createRouter } from "./route.js";
import { consoleRoutes } from "./routes-console.js";

const reviewer: Principal = {
  kind: "reviewer",
  tokenId: "tok_test",
  reviewer: {
    email: "bob@example.com",
    groups: [],
    evidence: { method: "personal_token", tokenId: "tok_test" },
  },
};

let app: FastifyInstance | undefined;
let store: Store | undefined;
afterEach(async () => {
  await app?.close();
  await store?.close();
});

/**
 * The console's routes on loopback, whose callers stay in authentication until `admit` is
 * called: the look-up of a session or token is where a caller may leave unnoticed.
 */
async function consoleBehindSlowSignIn() {
  store = openSqliteStore(":memory:");
  const server = Fastify();
  app = server;
  server.setErrorHandler((error, _request, reply) =>
    error instanceof AirlockError
      ? reply.code(error.status).send({ error: error.toJSON() })
      : reply.code(500).send({ error: { code: "internal" } }),
  );
  const waiting: IncomingMessage[] = [];
  let admitted = false;
  let admit = () => {};
  const gate = new Promise<void>((resolve) => {
    admit = () => {
      admitted = true;
      resolve();
    };
  });
  const authenticate = async (request: FastifyRequest): Promise<Principal> => {
    if (!admitted) {
      waiting.push(request.raw);
      await gate;
    }
    return reviewer;
  };
  consoleRoutes(createRouter(server, authenticate), {
    store,
    live: { policy: compilePolicy([]).policy },
    reauthenticate: async () => reviewer,
    redactor: createRedactor([]),
  });
  await server.listen({ port: 0, host: "127.0.0.1" });
  const port = (server.server.address() as AddressInfo).port;
  return { port, waiting, admit: () => admit() };
}

it("frees the place of a stream whose caller left while it was being authenticated", async () => {
  const { port, waiting, admit } = await consoleBehindSlowSignIn();
  const sockets = Array.from({ length: 20 }, () => {
    const socket = connect(port, "127.0.0.1");
    socket.on("error", () => {});
    socket.write("GET /v1/events HTTP/1.1\r\nHost: airlock.test\r\n\r\n");
    return socket;
  });
  await expect.poll(() => waiting.length).toBe(20);
  // Each caller leaves, and the gateway hears it, before its authentication is done.
  const closed = waiting.map((raw) => new Promise((resolve) => raw.once("close", resolve)));
  for (const socket of sockets) socket.destroy();
  await Promise.all(closed);
  admit();

  const controller = new AbortController();
  const url = `http://127.0.0.1:${port}/v1/events`;
  try {
    const streams = [];
    for (let i = 0; i < 20; i++) streams.push(await fetch(url, { signal: controller.signal }));
    expect(streams.map((s) => s.status)).toEqual(Array(20).fill(200));
    const refused = await fetch(url, { signal: controller.signal });
    expect(refused.status).toBe(429);
  } finally {
    controller.abort();
  }
});
