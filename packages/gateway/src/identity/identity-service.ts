/**
 * Who is calling: an agent (agent token) or a reviewer (personal token). Tokens are looked
 * up by hash, and the principal must still be in the config, so removing an agent or a
 * reviewer from airlock.yaml revokes them at the next reload or restart.
 */

import { newId } from "../common/ids.js";
import type { AgentConfig } from "../config/config-schema.js";
import type { LiveConfig } from "../config/live-config.js";
import { AirlockError } from "../errors.js";
import type { Reviewer } from "../requests/request-transitions.js";
import type { PrincipalKind, Store, TokenRecord } from "../store/store.js";
import { generateToken, hashToken, looksLikeToken, tokenHint } from "./tokens.js";

export type Principal =
  | { kind: "agent"; agent: AgentConfig; tokenId: string }
  | { kind: "reviewer"; reviewer: Reviewer; tokenId: string };

export interface IdentityService {
  authenticate(authorization: string | undefined): Promise<Principal>;
  createToken(
    kind: PrincipalKind,
    subject: string,
    actor: string,
  ): Promise<{ token: string; record: TokenRecord }>;
  revokeToken(id: string, actor: string): Promise<boolean>;
  reviewer(email: string): { email: string; groups: string[] } | undefined;
  agent(name: string): AgentConfig | undefined;
}

export function createIdentityService(deps: {
  store: Store;
  live: LiveConfig;
  /** The store's time (Store.now): what tokens and their events are stamped with. */
  clock: () => number;
}): IdentityService {
  const { store, live, clock } = deps;

  const authenticate = async (authorization: string | undefined): Promise<Principal> => {
    if (!authorization) {
      throw new AirlockError("unauthenticated", "send your token as Authorization: Bearer <token>");
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match || !looksLikeToken(match[1]!)) {
      throw new AirlockError(
        "unauthenticated",
        "the Authorization header must be Bearer followed by an Airlock token (alk_…)",
      );
    }
    const record = await store.findTokenByHash(hashToken(match[1]!));
    if (!record || record.revokedAt !== null) {
      throw new AirlockError(
        "unauthenticated",
        "this token is unknown or revoked; create one with `airlock token create`",
      );
    }
    if (record.kind === "agent") {
      const agent = live.agent(record.subject);
      if (!agent) {
        throw new AirlockError(
          "unauthenticated",
          `agent ${record.subject} is no longer configured`,
        );
      }
      return { kind: "agent", agent, tokenId: record.id };
    }
    const reviewer = live.reviewer(record.subject);
    if (!reviewer) {
      throw new AirlockError(
        "unauthenticated",
        `reviewer ${record.subject} is no longer configured`,
      );
    }
    return {
      kind: "reviewer",
      tokenId: record.id,
      reviewer: {
        email: reviewer.email,
        groups: reviewer.groups,
        evidence: { method: "personal_token", tokenId: record.id },
      },
    };
  };

  const createToken = async (kind: PrincipalKind, rawSubject: string, actor: string) => {
    const subject = kind === "reviewer" ? rawSubject.toLowerCase() : rawSubject;
    if (kind === "agent" && !live.agent(subject)) {
      throw new AirlockError(
        "invalid_request",
        `agent: no agent named ${subject} in the config (known: ${live.agentNames().join(", ") || "none"})`,
        { field: "agent" },
      );
    }
    if (kind === "reviewer" && !live.reviewer(subject)) {
      throw new AirlockError(
        "invalid_request",
        `reviewer: ${subject} is not a configured reviewer; add it under reviewers: first`,
        { field: "reviewer" },
      );
    }
    const token = generateToken();
    const now = clock();
    const record: TokenRecord = {
      id: newId("tok", now),
      kind,
      subject,
      hash: hashToken(token),
      hint: tokenHint(token),
      createdAt: now,
      revokedAt: null,
    };
    await store.insertToken(record, {
      type: "token.created",
      requestId: null,
      actor: { type: "operator", id: actor },
      at: now,
      data: { tokenId: record.id, kind, subject, hint: record.hint },
    });
    return { token, record };
  };

  const revokeToken = (id: string, actor: string) =>
    store.revokeToken(id, {
      type: "token.revoked",
      requestId: null,
      actor: { type: "operator", id: actor },
      at: clock(),
      data: { tokenId: id },
    });

  return {
    authenticate,
    createToken,
    revokeToken,
    reviewer: (email) => live.reviewer(email),
    agent: (name) => live.agent(name),
  };
}
