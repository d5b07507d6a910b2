/** The gateway's public surface, for embedding and for tests. */
export {
  type AuditEvent,
  createChainVerifier,
  GENESIS_HASH,
  hashEvent,
} from "./audit/audit-chain.js";
export { exportAudit, verifyAudit } from "./audit/audit-service.js";
export type { Channel, ChannelNotice, ChannelView, DecisionSink } from "./channels/channel.js";
export { type DemoUpstream, startDemoUpstream } from "./cli/demo-upstream.js";
export { canonicalJson, digest } from "./common/canonical-json.js";
export { ConfigError, type ConfigIssue, formatIssue } from "./config/config-errors.js";
export {
  type AirlockConfig,
  type LoadedConfig,
  loadConfigFile,
  loadConfigText,
} from "./config/config-load.js";
export type {
  Connector,
  ConnectorType,
  Description,
  ExecutionOutcome,
  RiskLevel,
} from "./connectors/connector.js";
export {
  analyzeSql,
  loadSqlParser,
  type SqlAnalysis,
  type SqlKind,
} from "./connectors/postgres/sql-analysis.js";
export { AirlockError, type ErrorCode } from "./errors.js";
export { generateToken, hashToken } from "./identity/tokens.js";
export { createGateway, type Gateway, type GatewayOptions, version } from "./main.js";
export { requestHash } from "./requests/request-hash.js";
export type { ActionRequest, RequestStatus } from "./requests/request-types.js";
export { openStore } from "./store/open-store.js";
export type { Store } from "./store/store.js";
