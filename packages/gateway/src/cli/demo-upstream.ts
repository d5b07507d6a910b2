/**
 * The demo's upstream: a tiny billing API that only answers callers holding its credential,
 * which only Airlock has. The benchmark uses it too, as the baseline.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface DemoUpstream {
  url: string;
  /** Calls received, by "METHOD /path". */
  calls: Map<string, number>;
  onCall?: (method: string, path: string, authorized: boolean) => void;
  close(): Promise<void>;
}

const invoices = [
  { id: "inv_1001", customer: "Acme Corp", amount: 4200, currency: "EUR", status: "paid" },
  { id: "inv_1002", customer: "Globex", amount: 1250, currency: "EUR", status: "open" },
];

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

export async function startDemoUpstream(options: {
  port: number;
  host?: string;
  token: string;
}): Promise<DemoUpstream> {
  const calls = new Map<string, number>();
  let refunds = 0;
  const upstream: DemoUpstream = { url: "", calls, close: async () => {} };
  const server: Server = createServer(async (request, response) => {
    const url = new URL(request.url ?? "/", "http://upstream");
    const key = `${request.method} ${url.pathname}`;
    calls.set(key, (calls.get(key) ?? 0) + 1);
    const authorized = request.headers.authorization === `Bearer ${options.token}`;
    upstream.onCall?.(request.method ?? "GET", url.pathname, authorized);
    const body = await readBody(request);
    const send = (status: number, payload: unknown) => {
      const text = JSON.stringify(payload);
      response.writeHead(status, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(text),
      });
      response.end(text);
    };
    if (!authorized) return send(401, { error: "missing or wrong credentials" });
    if (request.method === "GET" && url.pathname === "/invoices") return send(200, { invoices });
    const invoice = /^\/invoices\/([\w-]+)$/.exec(url.pathname);
    if (request.method === "GET" && invoice) {
      const found = invoices.find((i) => i.id === invoice[1]);
      return found ? send(200, found) : send(404, { error: "no such invoice" });
    }
    if (request.method === "POST" && url.pathname === "/refunds") {
      let parsed: { invoice?: string; amount?: number } = {};
      try {
        parsed = JSON.parse(body || "{}");
      } catch {
        return send(400, { error: "the body must be JSON" });
      }
      refunds++;
      return send(201, {
        refund: `rf_${String(refunds).padStart(4, "0")}`,
        invoice: parsed.invoice,
        amount: parsed.amount,
        status: "issued",
      });
    }
    if (request.method === "DELETE" && invoice) return send(204, {});
    return send(404, { error: `no route ${request.method} ${url.pathname}` });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address() as AddressInfo;
  upstream.url = `http://${options.host ?? "127.0.0.1"}:${address.port}`;
  upstream.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return upstream;
}
