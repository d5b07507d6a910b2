/**
 * How MSAL reaches Entra ID for the bot's tokens. MSAL's own client sets no deadline on a
 * token request (one that hangs stays open for good, and every retry opens another) and
 * lets concurrent deliveries each ask for a token when none is cached (fifty cards after a
 * restart, fifty requests to Entra, which throttles). Here every request has a deadline,
 * and identical requests under way share one answer. Plain https.request with the default
 * agent, as MSAL's own client uses.
 */
import { request as httpsRequest } from "node:https";
import {
  AuthError,
  type INetworkModule,
  type NetworkRequestOptions,
  type NetworkResponse,
} from "@azure/msal-node";

/** Form fields that differ between two asks for the same token: an id per request, telemetry. */
const perRequest = ["client-request-id", "x-client-current-telemetry", "x-client-last-telemetry"];

/** What a request asks for, without what MSAL makes different each time (in its query and form). */
function askOf(method: string, url: string, body: string): string {
  const target = new URL(url);
  const fields = new URLSearchParams(body);
  for (const name of perRequest) {
    target.searchParams.delete(name);
    fields.delete(name);
  }
  target.searchParams.sort();
  fields.sort();
  return `${method} ${target}\n${fields}`;
}

export function tokenNetwork(deadlineMs: number): INetworkModule {
  const underWay = new Map<string, Promise<NetworkResponse<unknown>>>();

  const send = (
    method: "GET" | "POST",
    url: string,
    options: NetworkRequestOptions | undefined,
    ms: number,
  ): Promise<NetworkResponse<unknown>> =>
    new Promise((resolve, reject) => {
      const body = options?.body ?? "";
      const request = httpsRequest(url, {
        method,
        headers: {
          ...options?.headers,
          ...(method === "POST" ? { "content-length": String(Buffer.byteLength(body)) } : {}),
        },
      });
      // The whole exchange, not only idle time: a body that drips in must not outlast it.
      const timer = setTimeout(
        () =>
          request.destroy(
            // MSAL passes an AuthError on as it is; any other error becomes "network_error".
            new AuthError(
              "token_timeout",
              `${new URL(url).host} did not answer within ${ms / 1000} s`,
            ),
          ),
        ms,
      );
      request.once("close", () => clearTimeout(timer));
      request.once("error", reject);
      request.once("response", (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.once("error", reject);
        response.once("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
            // As MSAL's own client: an error it can report, not an empty answer.
            parsed = {
              error: (response.statusCode ?? 0) >= 500 ? "server_error" : "client_error",
              error_description: `HTTP ${response.statusCode} ${response.statusMessage ?? ""}, not a JSON object`,
            };
          }
          const headers: Record<string, string> = {};
          for (const [name, value] of Object.entries(response.headers)) {
            if (value !== undefined)
              headers[name] = Array.isArray(value) ? value.join(", ") : value;
          }
          resolve({ headers, body: parsed, status: response.statusCode ?? 0 });
        });
      });
      request.end(method === "POST" ? body : undefined);
    });

  const shared = (
    method: "GET" | "POST",
    url: string,
    options: NetworkRequestOptions | undefined,
    ms: number,
  ): Promise<NetworkResponse<unknown>> => {
    const key = askOf(method, url, options?.body ?? "");
    let answer = underWay.get(key);
    if (!answer) {
      answer = send(method, url, options, ms).finally(() => underWay.delete(key));
      underWay.set(key, answer);
    }
    return answer;
  };

  return {
    sendGetRequestAsync: <T>(url: string, options?: NetworkRequestOptions, timeout?: number) =>
      shared("GET", url, options, Math.min(timeout ?? deadlineMs, deadlineMs)) as Promise<
        NetworkResponse<T>
      >,
    sendPostRequestAsync: <T>(url: string, options?: NetworkRequestOptions) =>
      shared("POST", url, options, deadlineMs) as Promise<NetworkResponse<T>>,
  };
}
