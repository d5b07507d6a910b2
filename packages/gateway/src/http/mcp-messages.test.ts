import { describe, expect, it } from "vitest";
import { batchAnswer, screenMessages } from "./mcp-messages.js";

const ping = (id: unknown) => ({ jsonrpc: "2.0", id, method: "ping" });
const result = (id: unknown) => ({ jsonrpc: "2.0", id, result: {} });

describe("the messages of a POST to /mcp", () => {
  it("keeps well-formed messages, and refuses the others by their place", () => {
    const cancel = { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 1 } };
    const { kept, refused } = screenMessages([
      ping(1),
      cancel,
      ping(1.5),
      { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: true } },
      result(9),
    ]);
    expect(kept).toEqual([ping(1), cancel, result(9)]);
    expect(
      refused.map(({ index, answered, error }) => [index, answered, error.error.code]),
    ).toEqual([
      [2, true, -32600],
      [3, false, -32602],
    ]);
  });

  it("answers a batch in its order, with the refusals it answers in their places", () => {
    const messages = [ping("a"), 7, ping("b"), { jsonrpc: "2.0", method: "x", params: 1 }];
    const { refused } = screenMessages(messages);
    // The transport's answers, in whatever order they came.
    const answers = batchAnswer(messages, refused, [result("b"), result("a")]);
    expect(answers).toEqual([result("a"), refused[0]!.error, result("b")]);
    // An answer no request of the batch asked for is kept, not lost.
    expect(batchAnswer([ping(1)], [], [result(1), result(2)])).toEqual([result(1), result(2)]);
  });
});
