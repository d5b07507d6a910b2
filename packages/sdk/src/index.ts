export type {
  Action,
  ActionInput,
  ActionStatus,
  FinalStatus,
  Review,
  RiskLevel,
} from "./action-types.js";
export { isFinal } from "./action-types.js";
export { AirlockClient, type AirlockClientOptions, type WaitOptions } from "./airlock-client.js";
export { AirlockError, type AirlockErrorCode } from "./airlock-error.js";
