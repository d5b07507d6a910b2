/**
 * The MCP tool names of the connections' operations (`<connection>__<operation>`), shared by
 * `/mcp`, which lists them, and `config check`, which warns about an operation left without
 * one. Clients accept names of at most 64 characters without dots (Anthropic's and OpenAI's
 * APIs): any other character becomes `_`, so two operations can come to the same name.
 */

export const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export const STATUS_TOOL = "airlock__status";
export const CANCEL_TOOL = "airlock__cancel";
export const LIST_TOOL = "airlock__list";

/** An operation's tool name: each character clients do not take becomes `_`. */
export const toolName = (connection: string, operation: string): string =>
  `${connection}__${operation}`.replace(/[^A-Za-z0-9_-]/g, "_");

export interface ToolNameClash {
  connection: string;
  operation: string;
  tool: string;
  /** Why it has no tool name of its own: too long, or whose it is. */
  problem: string;
}

/** The operations, in config order, that get no tool name of their own, and why. */
export function toolNameClashes(
  connections: readonly { connection: string; operations: readonly string[] }[],
): ToolNameClash[] {
  const taken = new Map<string, string>([
    [STATUS_TOOL, "Airlock's own tool"],
    [CANCEL_TOOL, "Airlock's own tool"],
    [LIST_TOOL, "Airlock's own tool"],
  ]);
  const clashes: ToolNameClash[] = [];
  for (const { connection, operations } of connections) {
    for (const operation of operations) {
      const tool = toolName(connection, operation);
      const owner = taken.get(tool);
      if (!TOOL_NAME.test(tool)) {
        clashes.push({ connection, operation, tool, problem: "longer than 64 characters" });
      } else if (owner !== undefined) {
        clashes.push({ connection, operation, tool, problem: `already the name of ${owner}` });
      } else {
        taken.set(tool, `operation ${operation} of connection ${connection}`);
      }
    }
  }
  return clashes;
}
