import { digest } from "../common/canonical-json.js";
import type { Proposal } from "./request-types.js";

/** The request hash: SHA-256 over the canonical JSON of the proposal. Reviews bind to it. */
export function requestHash(proposal: Proposal): string {
  return digest({
    agent: proposal.agent,
    connection: proposal.connection,
    operation: proposal.operation,
    input: proposal.input,
    justification: proposal.justification,
    context: proposal.context,
  });
}
