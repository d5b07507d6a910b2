/** A real upstream on loopback that records every byte it receives, for the connectors to call. */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";

export interface RecordedCall {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface Upstream {
  url: string;
  calls: RecordedCall[];
  /** Paths that hang until `release()`; resolves `arrived` when such a call comes in. */
  hold(path: string): { arrived: Promise<RecordedCall>; release: () => void };
  close(): Promise<void>;
}

export async function startUpstream(): Promise<Upstream> {
  const calls: RecordedCall[] = [];
  const holds = new Map<string, { arrive: (c: RecordedCall) => void; released: Promise<void> }>();
  const server: Server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const call: RecordedCall = {
      method: request.method ?? "",
      url: request.url ?? "",
      headers: request.headers,
      body: Buffer.concat(chunks),
    };
    calls.push(call);
    const path = call.url.split("?")[0] ?? "";
    const held = holds.get(path);
    if (held) {
      held.arrive(call);
      await held.released;
    }
    if (path.endsWith("/echo-gzip")) {
      // Compresses whatever the client asked for, as a careless upstream might.
      const text = JSON.stringify({ headers: call.headers });
      response.writeHead(200, { "content-type": "application/json", "content-encoding": "gzip" });
      response.end(gzipSync(text));
      return;
    }
    if (path.endsWith("/echo-text")) {
      // Multibyte text after the credential, so a cut can land inside a character.
      response.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
      response.end(`${String(call.headers.authorization)}${"é".repeat(600)}`);
      return;
    }
    if (path.endsWith("/echo")) {
      // Reflects everything it got, credentials included: Airlock must scrub them.
      const text = JSON.stringify({
        headers: call.headers,
        body: call.body.toString("utf8"),
        url: call.url,
      });
      response.writeHead(200, {
        "content-type": "application/json",
        "x-seen-auth": String(call.headers.authorization),
      });
      response.end(text);
      return;
    }
    if (path.endsWith("/bytes")) {
      // The bytes given as base64 in the query's `b`, as a body that is no text (or of the
      // content type in `t`).
      const query = new URL(call.url, "http://upstream").searchParams;
      response.writeHead(200, { "content-type": query.get("t") ?? "application/octet-stream" });
      response.end(Buffer.from(query.get("b") ?? "", "base64"));
      return;
    }
    if (path.endsWith("/fail")) {
      response.writeHead(500, { "content-type": "application/json" });
      response.end('{"error":"upstream broke"}');
      return;
    }
    if (path.endsWith("/beyond-double")) {
      // Valid JSON whose number no double holds: JSON.parse reads it as Infinity.
      response.writeHead(200, { "content-type": "application/json" });
      response.end('{"refunded":true,"amount":1e999}');
      return;
    }
    if (path.endsWith("/big")) {
      response.writeHead(200, { "content-type": "text/plain" });
      response.end("x".repeat(200_000));
      return;
    }
    response.writeHead(200, {
      "content-type": "application/json",
      "set-cookie": "session=upstream-session-cookie",
      connection: "keep-alive",
      "x-upstream": "yes",
    });
    response.end(JSON.stringify({ ok: true, method: call.method, url: call.url }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    hold(path) {
      let arrive!: (c: RecordedCall) => void;
      let release!: () => void;
      const arrived = new Promise<RecordedCall>((resolve) => {
        arrive = resolve;
      });
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      holds.set(path, { arrive, released });
      return { arrived, release };
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
