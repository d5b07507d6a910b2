export type {
  Action,
  ActionInput,
  ActionStatus,
  FinalStatus,
  Review,
  RiskLevel,
} from "./action-types.js";
export { isFinal } from "./action-types.js";
export {
  type ActionPage,
  AirlockClient,
  type AirlockClientOptions,
  type ListOptions,
  type WaitOptions,
} from "./airlock-client.js";
export { AirlockError, type AirlockErrorCode } from "./airlock-error.js";
