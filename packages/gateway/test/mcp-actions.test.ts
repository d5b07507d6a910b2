/**
 * MCP tools end to end, against a real MCP server on loopback: rules on `mcp.tool`, a tool
 * the config does not list refused before anything is stored, a destructive tool run once
 * after approval, and the server's credential kept out of everything an agent, a reviewer,
 * the audit trail or the log sees.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Json } from "../src/common/canonical-json.js";
import { maskInput } from "../src/masking/input-mask.js";
import {
  type ApiResponse,
  api,
  removeDir,
  startGateway,
  type TestGateway,
  vote,
  withoutChanceDigits,
} from "./support/gateway.js";
import {
  type RawMcpServer,
  startMcpServer,
  startRawMcpServer,
  type TestMcpServer,
} from "./support/mcp-server.js";

const TOKEN = "docs-mcp-token-4b8e1d7a90";

describe("MCP tools through the gateway", () => {
  let gw: TestGateway;
  let mcp: TestMcpServer;
  let agent: string;
  let editor: string;
  // biome-ignore lint/suspicious/noExplicitAny: responses of every shape
  const seen: ApiResponse<any>[] = [];

  const ask = async (operation: string, input: unknown) => {
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { connection: "docs", operation, input, justification: "tidy the wiki" },
    });
    seen.push(res);
    return res;
  };

  beforeAll(async () => {
    mcp = await startMcpServer({ authorization: `Bearer ${TOKEN}` });
    gw = await startGateway(
      `
server: { port: 0, publicUrl: "http://airlock.test" }
storage: sqlite:./airlock.db
agents: [{ name: wiki-bot, owner: alice@example.com }]
reviewers: [{ email: bob@example.com, groups: [editors] }]
connections:
  docs:
    type: mcp
    url: ${mcp.url}
    headers: { authorization: "Bearer \${env:DOCS_MCP_TOKEN}" }
    timeout: 5s
    tools:
      search: { risk: low }
      whoami: { risk: low }
      delete_page: { risk: high, description: Deletes a wiki page for good }
rules:
  - name: searches pass
    when: action.connection == "docs" && mcp.tool in ["search", "whoami"]
    decision: allow
  - name: deletions need an editor
    when: action.connection == "docs" && mcp.tool == "delete_page"
    decision: review
    review: { approvers: [editors] }
  - name: nothing else
    decision: deny
`,
      { env: { DOCS_MCP_TOKEN: TOKEN } },
    );
    agent = await gw.token("agent", "wiki-bot");
    editor = await gw.token("reviewer", "bob@example.com");
  });
  afterAll(async () => {
    await gw?.close();
    await mcp?.close();
    if (gw) removeDir(gw.dir);
  });

  it("runs an allowed tool at once and returns its result", async () => {
    const res = await ask("search", { query: "onboarding" });
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("succeeded");
    expect(res.body.result.content).toEqual([{ type: "text", text: '3 pages match "onboarding"' }]);
    expect(res.body.decision.rule).toBe("searches pass");
    const call = mcp.calls.find((c) => c.tool === "search" && c.args.query === "onboarding");
    expect(call?.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it("refuses a tool the config does not list, and bad arguments, before anything is stored", async () => {
    const before = await api(gw.url, "GET", "/v1/audit?limit=1000", { token: editor });
    const calls = mcp.calls.length;
    // The server has this tool; the config does not let agents call it.
    const unlisted = await ask("broken", {});
    expect(unlisted.status).toBe(400);
    expect(unlisted.body.error).toMatchObject({ code: "unknown_operation", field: "operation" });
    const notAnObject = await ask("search", ["onboarding"]);
    expect(notAnObject.status).toBe(400);
    expect(notAnObject.body.error).toMatchObject({ code: "invalid_request", field: "input" });
    const after = await api(gw.url, "GET", "/v1/audit?limit=1000", { token: editor });
    expect(after.body.events.length).toBe(before.body.events.length);
    expect(mcp.calls.length).toBe(calls);
  });

  it("holds a destructive tool for review, shows the call, and runs it once approved", async () => {
    const res = await ask("delete_page", { page: "old-roadmap" });
    expect(res.status).toBe(202);
    const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: editor });
    expect(view.body.preview).toContain(
      'call tool delete_page on docs\n\n{\n  "page": "old-roadmap"\n}',
    );
    expect(view.body.facts).toEqual({ mcp: { tool: "delete_page" } });
    expect(view.body.risk).toMatchObject({ level: "high" });
    expect(mcp.calls.filter((c) => c.tool === "delete_page")).toHaveLength(0);
    const approved = await vote(gw.url, res.body.id, editor);
    expect(approved.status).toBe(200);
    const done = await api(gw.url, "GET", `/v1/actions/${res.body.id}?wait=5`, { token: agent });
    seen.push(done);
    expect(done.body.status).toBe("succeeded");
    expect(done.body.result.content).toEqual([{ type: "text", text: "deleted old-roadmap" }]);
    expect(mcp.calls.filter((c) => c.tool === "delete_page")).toEqual([
      expect.objectContaining({ args: { page: "old-roadmap" } }),
    ]);
  });

  it("keeps the server's credential out of results, views, the audit trail and the log", async () => {
    const res = await ask("whoami", {});
    expect(res.status).toBe(200);
    expect(res.body.result.content[0].text).toBe("called with [redacted]");
    const audit = await api(gw.url, "GET", "/v1/audit?limit=1000", { token: editor });
    const everything = [...seen.map((r) => r.text), audit.text, gw.logs.join("")].join("\n");
    expect(everything).not.toContain(TOKEN);
    expect(mcp.calls.some((c) => c.tool === "whoami")).toBe(true);
  });
});

describe("a masked argument that an MCP server echoes", () => {
  const CARD = "4929837150216347";
  let gw: TestGateway;
  let raw: RawMcpServer;
  let agent: string;
  const received: unknown[] = [];

  beforeAll(async () => {
    // It echoes the arguments it was called with: in a refusal, or in a long result.
    raw = await startRawMcpServer(
      (id, response, params) => {
        const args = params.arguments ?? {};
        if (params.name === "picture") {
          // The image it is given, and audio that says the CVV.
          const audio = Buffer.from(`cvv ${String(args.cvv)}`).toString("base64");
          const content = [
            { type: "image", mimeType: "image/jpeg", data: args.data },
            { type: "audio", mimeType: "audio/wav", data: audio },
          ];
          response
            .writeHead(200, { "content-type": "application/json" })
            .end(JSON.stringify({ jsonrpc: "2.0", id, result: { content } }));
          return;
        }
        received.push(args.card);
        // A card of the server's own (`other`), which only the result detectors know, before.
        const text = `no card ${String(args.pad)}${String(args.other ?? "")}${String(args.card)} on file${".".repeat(2000)}`;
        const message =
          params.name === "refuse"
            ? { jsonrpc: "2.0", id, error: { code: -32602, message: text } }
            : { jsonrpc: "2.0", id, result: { content: [{ type: "text", text }] } };
        response
          .writeHead(200, { "content-type": "application/json" })
          .end(JSON.stringify(message));
      },
      {
        tools: ["refuse", "echo", "picture"].map((name) => ({
          name,
          inputSchema: { type: "object" },
        })),
      },
    );
    gw = await startGateway(`
server: { port: 0, publicUrl: "http://airlock.test" }
storage: sqlite:./airlock.db
agents: [{ name: card-bot, owner: alice@example.com }]
reviewers: [{ email: bob@example.com, groups: [editors] }]
connections:
  cards:
    type: mcp
    url: ${raw.url}
    maxResultBytes: 1024
    tools: { refuse: { risk: low }, echo: { risk: low }, picture: { risk: low } }
rules:
  - name: card checks
    when: action.connection == "cards"
    decision: allow
    mask: { input: [card, cvv], result: [card] }
  - name: nothing else
    decision: deny
`);
    agent = await gw.token("agent", "card-bot");
  });
  afterAll(async () => {
    await gw?.close();
    await raw?.close();
    if (gw) removeDir(gw.dir);
  });

  /** Calls `tool` with the card after `pad` characters, for each of `pads`. */
  const sweep = async (tool: string, pads: number[]) => {
    // biome-ignore lint/suspicious/noExplicitAny: responses of every shape
    const answers: ApiResponse<any>[] = [];
    for (const pad of pads) {
      const res = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: { connection: "cards", operation: tool, input: { pad: "a".repeat(pad), card: CARD } },
      });
      expect(res.status).toBe(200);
      answers.push(res);
    }
    // The server got the card itself each time.
    expect(received.splice(0)).toEqual(pads.map(() => CARD));
    return answers;
  };
  const range = (from: number, to: number) =>
    Array.from({ length: to - from + 1 }, (_, i) => from + i);
  /** No six digits of the card anywhere in what anyone is shown or keeps, nor its first digit at a cut. */
  const expectNoPiece = async (texts: string[]) => {
    const audit = JSON.stringify(await gw.gateway.store.listAudit({ limit: 10_000 }));
    const all = withoutChanceDigits([...texts, audit, gw.logs.join("")].join("\n"));
    for (let size = 6; size <= CARD.length; size++) expect(all).not.toContain(CARD.slice(0, size));
    for (const text of texts) {
      for (let size = 1; size < CARD.length; size++) {
        expect(text.endsWith(`a${CARD.slice(0, size)}`)).toBe(false);
      }
    }
  };

  it("leaves no start of it where a refusal's reason is cut, in the answer or the audit trail", async () => {
    // The reason is cut at 600 characters: pads that put the card before, across and after that.
    const answers = await sweep("refuse", range(520, 580));
    const reasons = answers.map((res) => {
      expect(res.body.status).toBe("failed");
      return String(res.body.outcome.reason);
    });
    expect(reasons.every((reason) => reason.endsWith("…"))).toBe(true);
    expect(reasons.some((reason) => reason.includes("[masked]"))).toBe(true);
    await expectNoPiece(reasons.map((reason) => reason.replace(/…$/, "")));
    const failed = (await gw.gateway.store.listAudit({ limit: 10_000 })).filter(
      (event) => event.type === "execution.failed",
    );
    expect(failed.length).toBeGreaterThanOrEqual(answers.length);
  });

  it("returns an image intact when its base64 spells a masked argument by chance", async () => {
    // A JPEG's first bytes, then three whose base64 starts with the CVV: none of them is it.
    const image = Buffer.from("/9j/729AAAAAAAA", "base64");
    expect(image.includes("729")).toBe(false);
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: {
        connection: "cards",
        operation: "picture",
        input: { cvv: "729", data: image.toString("base64") },
      },
    });
    expect(res.body.status).toBe("succeeded");
    const [picture, audio] = res.body.result.content;
    expect(picture.data).toContain("729");
    expect(Buffer.from(picture.data, "base64").equals(image)).toBe(true);
    // Bytes that do hold it have it scrubbed.
    expect(Buffer.from(audio.data, "base64").toString()).toBe("cvv [masked]");
  });

  it("leaves no piece of what the result detectors find where a result or a reason is cut", async () => {
    const OTHER = " 4242 4242 4242 4242 ";
    const texts: string[] = [];
    for (const [tool, pads] of [
      ["echo", range(840, 920)],
      ["refuse", range(500, 580)],
    ] as const) {
      for (const pad of pads) {
        const res = await api(gw.url, "POST", "/v1/actions", {
          token: agent,
          body: {
            connection: "cards",
            operation: tool,
            input: { pad: "a".repeat(pad), other: OTHER, card: CARD },
          },
        });
        texts.push(
          tool === "echo"
            ? String(res.body.result.content[0]?.text ?? "")
            : String(res.body.outcome.reason).replace(/…$/, ""),
        );
      }
    }
    received.splice(0);
    const all = texts.join("\n");
    expect(all).toContain("**** 4242 [masked]");
    // Its hint or nothing, at every cut: not a digit of it, nor a piece of the hint or the marker.
    for (const text of texts) {
      const rest = text.replace(/^.*?no card a* ?/, "");
      expect(`**** 4242 [masked] on file${".".repeat(2000)}`.startsWith(rest), rest).toBe(true);
      expect(rest).not.toMatch(/^(?:\*{1,4}|\*{4} 4?2?4?|\*{4} 4242 \[[a-z]*)$/);
    }
  });

  it("records the input masked once, its own keys hidden too, and previews it with them as sent", async () => {
    // The card as an argument's name, beside a key that reads as it will once hidden.
    const input = { [CARD]: 1, "[masked]": 2, card: CARD, cvv: "729", note: `cvv 729, ${CARD}` };
    const res = await api(gw.url, "POST", "/v1/actions", {
      token: agent,
      body: { connection: "cards", operation: "echo", input },
    });
    expect(res.status).toBe(200);
    received.splice(0);
    const events = await gw.gateway.store.listAudit({ limit: 10_000 });
    const submitted = events.find(
      (event) => event.type === "request.submitted" && event.requestId === res.body.id,
    )?.data as { input: Json } | undefined;
    // As the masking module makes it from the input, which is what the audit trail always held.
    const masked = maskInput(input, ["card", "cvv"]).masked;
    expect(masked).toEqual({
      "[masked]": 1,
      "[masked] (2)": 2,
      card: "[masked]",
      cvv: "[masked]",
      note: "cvv [masked], [masked]",
    });
    expect(submitted?.input).toEqual(masked);
    expect(JSON.stringify(submitted?.input)).toBe(JSON.stringify(masked));
    // The preview is built with the input's own keys as sent, and scrubbed as text after.
    const reviewer = await gw.token("reviewer", "bob@example.com");
    const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: reviewer });
    expect(view.body.preview).toBe(
      [
        "call tool echo on cards",
        "",
        "{",
        '  "[masked]": 1,',
        '  "[masked]": 2,',
        '  "card": "[masked]",',
        '  "cvv": "[masked]",',
        '  "note": "cvv [masked], [masked]"',
        "}",
      ].join("\n"),
    );
  });

  it("leaves no piece of it where a long preview is cut, though an argument is named by it", async () => {
    // The preview shows 4,000 characters of the arguments, whose names stay as sent there (the
    // tool's arguments are the input's own fields): the card, as one's name, lands across that cut.
    const reviewer = await gw.token("reviewer", "bob@example.com");
    const previews: string[] = [];
    for (let pad = 3962; pad <= 3986; pad++) {
      const res = await api(gw.url, "POST", "/v1/actions", {
        token: agent,
        body: {
          connection: "cards",
          operation: "echo",
          input: { pad: "a".repeat(pad), [CARD]: 1, card: CARD },
        },
      });
      expect(res.status).toBe(200);
      const view = await api(gw.url, "GET", `/v1/requests/${res.body.id}`, { token: reviewer });
      expect(view.status).toBe(200);
      previews.push(String(view.body.preview));
    }
    received.splice(0);
    expect(previews.every((preview) => preview.includes("… ("))).toBe(true);
    await expectNoPiece(previews.map((preview) => preview.replace(/\n… \(\d+ characters\)$/, "")));
    for (const preview of previews) expect(preview).not.toMatch(/"4\d*\n…/);
  });

  it("leaves no start of it where a long result is cut", async () => {
    const answers = await sweep("echo", range(860, 940));
    const texts = answers.map((res) => {
      expect(res.body.status).toBe("succeeded");
      expect(res.body.result.truncated).toMatch(/^the result was cut at 1024 of \d+ bytes$/);
      return String(res.body.result.content[0]?.text ?? "");
    });
    expect(texts.some((text) => text.includes("[masked]"))).toBe(true);
    await expectNoPiece(texts);
  });
});
