/**
 * The connections' operations as MCP tools, for agents that speak the Model Context Protocol:
 * one tool per connection and operation, named `<connection>__<operation>`, plus Airlock's own
 * (`airlock__status`, `airlock__cancel`) for actions that wait for a person, and
 * `airlock__list` for the agent's own. What a tool call becomes is the same submission
 * `POST /v1/actions` makes.
 */
import type { Connector, OperationSpec } from "../connectors/connector.js";
import {
  CANCEL_TOOL,
  LIST_TOOL,
  STATUS_TOOL,
  TOOL_NAME,
  toolName,
} from "../connectors/tool-names.js";
import type { Logger } from "../observability/logger.js";
import { requestStatuses } from "../requests/request-types.js";
import type { AgentView } from "../requests/request-views.js";
import { neededText } from "../requests/review-quorum.js";

export interface Tool {
  name: string;
  description: string;
  inputSchema: OperationSpec["inputSchema"];
}

/** A tool that stands for a connection's operation. */
export interface ActionTool extends Tool {
  connection: string;
  operation: string;
  /** Whether `justification` is Airlock's (taken out of the arguments) or the operation's own. */
  ownsJustification: boolean;
}

export { CANCEL_TOOL, LIST_TOOL, STATUS_TOOL };

const idSchema = {
  type: "string",
  description: "The request's id, as the call that submitted it said",
  maxLength: 64,
} as const;

export const airlockTools: readonly Tool[] = [
  {
    name: STATUS_TOOL,
    description:
      "Waits for an action that is waiting for a person's approval, and returns how it ended (its result once it ran), or that it still waits.",
    inputSchema: {
      type: "object",
      properties: { id: idSchema },
      required: ["id"],
      additionalProperties: false,
    },
  },
  {
    name: CANCEL_TOOL,
    description: "Cancels an action of yours that still waits for approval.",
    inputSchema: {
      type: "object",
      properties: { id: idSchema },
      required: ["id"],
      additionalProperties: false,
    },
  },
  {
    name: LIST_TOOL,
    description: `Lists your own actions, newest first, as JSON {actions, next?}: what each asked, where it stands, and its result once it ran. While more may follow, next is there: call again with {"before": next} for the next page.`,
    inputSchema: {
      type: "object",
      properties: {
        status: {
          type: "string",
          maxLength: 200,
          description: `"all" (the default), or the statuses to list, separated by commas: ${requestStatuses.join(", ")}`,
        },
        connection: {
          type: "string",
          maxLength: 128,
          description: "Only actions on this connection",
        },
        limit: {
          type: "integer",
          minimum: 1,
          maximum: 200,
          description: "How many at most (50 unless given)",
        },
        before: {
          type: "string",
          maxLength: 64,
          description: "Only actions older than this id: the next of the page before",
        },
      },
      additionalProperties: false,
    },
  },
];

const justification = {
  type: "string",
  maxLength: 4000,
  description: "Why you want this: people deciding whether it runs read it",
} as const;

/**
 * The tools the connections offer, in config order; built afresh for each listing. With
 * `named` (a call's tool), only the connections whose tools can bear that name are asked, so
 * a call does not wait for another connection's MCP server to list its tools.
 */
export async function actionTools(
  connectors: ReadonlyMap<string, Connector>,
  logger: Logger,
  named?: string,
): Promise<ActionTool[]> {
  const taken = new Set(airlockTools.map((tool) => tool.name));
  const tools: ActionTool[] = [];
  // Names are made character by character, so a tool's name starts with its connection's.
  const asked = [...connectors].filter(
    ([connection]) => named === undefined || named.startsWith(toolName(connection, "")),
  );
  const listed = await Promise.all(
    asked.map(async ([connection, connector]) => ({
      connection,
      operations: await connector.operations(),
    })),
  );
  for (const { connection, operations } of listed) {
    for (const spec of operations) {
      const name = toolName(connection, spec.name);
      if (!TOOL_NAME.test(name) || taken.has(name)) {
        logger.warn(
          { connection, operation: spec.name, tool: name },
          "an operation has no tool name of its own for MCP clients (too long, or taken); agents reach it through POST /v1/actions",
        );
        continue;
      }
      taken.add(name);
      const properties = (spec.inputSchema.properties ?? {}) as Record<string, unknown>;
      const ownsJustification = !Object.hasOwn(properties, "justification");
      tools.push({
        name,
        description: spec.description,
        inputSchema: ownsJustification
          ? { ...spec.inputSchema, properties: { ...properties, justification } }
          : spec.inputSchema,
        connection,
        operation: spec.name,
        ownsJustification,
      });
    }
  }
  return tools;
}

/** What a tool call answers: MCP's tool result, an error the model can act on included. */
export interface ToolAnswer {
  [key: string]: unknown;
  content: { type: "text"; text: string }[];
  isError?: boolean;
}

export const textAnswer = (text: string, isError = false): ToolAnswer => ({
  content: [{ type: "text", text }],
  ...(isError ? { isError: true } : {}),
});

/** An action as a tool result: its result once it ran, or where it stands and what to do. */
export function actionAnswer(view: AgentView): ToolAnswer {
  switch (view.status) {
    case "succeeded":
      return textAnswer(JSON.stringify(view.result ?? null));
    case "failed":
      return textAnswer(
        `The action failed: ${view.outcome?.reason ?? view.outcome?.summary ?? "no reason given"}.${view.result === null || view.result === undefined ? "" : ` What it returned: ${JSON.stringify(view.result)}`}`,
        true,
      );
    case "denied": {
      const deny = view.reviews.find((review) => review.decision === "deny");
      return textAnswer(
        deny
          ? `Denied by ${deny.reviewer}${deny.comment ? `: ${deny.comment}` : ""}. Do not try it again as it is.`
          : `Denied by the policy (rule "${view.decision.rule ?? "none"}"): ${view.decision.reason}. Do not try it again as it is.`,
        true,
      );
    }
    case "expired":
      return textAnswer(
        `Nobody approved request ${view.id} before it expired; it did not run.`,
        true,
      );
    case "cancelled":
      return textAnswer(`Request ${view.id} was cancelled; it did not run.`, true);
    default:
      // pending, approved or executing: the caller waited as long as it may.
      return textAnswer(
        view.status === "pending"
          ? `Request ${view.id} waits for a person's approval (${view.approvals ?? 0} of ${view.quorum ?? 1}${view.needed && Object.keys(view.needed).length > 0 ? `; still needed: ${neededText(view.needed)}` : ""}) at ${view.approvalUrl}${view.expiresAt ? `, until ${view.expiresAt}` : ""}. It has not run. Call ${STATUS_TOOL} with {"id": "${view.id}"} to wait for the outcome.`
          : `Request ${view.id} is approved and running. Call ${STATUS_TOOL} with {"id": "${view.id}"} for its result.`,
      );
  }
}
