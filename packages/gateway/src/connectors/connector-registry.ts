/** Every connector type Airlock knows, by the `type` a connection names in config. */
import type { ConnectorType } from "./connector.js";
import { execConnectorType } from "./exec/exec-connector.js";
import { httpConnectorType } from "./http/http-connector.js";
import { mcpConnectorType } from "./mcp/mcp-connector.js";
import { postgresConnectorType } from "./postgres/postgres-connector.js";

// biome-ignore lint/suspicious/noExplicitAny: each entry carries its own config type
export const connectorTypes: readonly ConnectorType<any>[] = [
  httpConnectorType,
  postgresConnectorType,
  execConnectorType,
  mcpConnectorType,
];

// biome-ignore lint/suspicious/noExplicitAny: see above
export function connectorType(type: string): ConnectorType<any> | undefined {
  return connectorTypes.find((c) => c.type === type);
}
