import { digest } from "../common/canonical-json.js";
import { randomHex } from "../common/ids.js";
import type { Proposal } from "./request-types.js";

/**
 * The request hash: SHA-256 over the canonical JSON of the proposal and a random nonce.
 * Reviews bind to it. The nonce stays in the store: without it, reviewers (who see the hash)
 * could guess a masked field of few possible values by hashing candidates.
 */
export function requestHash(proposal: Proposal, nonce: string): string {
  return digest({
    nonce,
    agent: proposal.agent,
    connection: proposal.connection,
    operation: proposal.operation,
    input: proposal.input,
    justification: proposal.justification,
    context: proposal.context,
  });
}

export function newNonce(): string {
  return randomHex(16);
}
