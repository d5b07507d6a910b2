/**
 * The part of the config a running gateway takes up again on reload (SIGHUP): the rules, the
 * agents and the reviewers, that is who may do what. Everything else (storage, server,
 * connections, channels, identity, audit, retention) holds live resources made at start, and
 * a change there takes a restart; a reload that finds one is refused whole, so a gateway
 * always runs exactly one version of its file.
 */
import { isDeepStrictEqual } from "node:util";
import type { Policy } from "../policy/policy-compile.js";
import type { ConfigIssue } from "./config-errors.js";
import type { LoadedConfig } from "./config-load.js";
import type { AgentConfig, ReviewerConfig } from "./config-schema.js";

export interface LiveConfig {
  readonly policy: Policy;
  agent(name: string): AgentConfig | undefined;
  agentNames(): string[];
  reviewer(email: string): ReviewerConfig | undefined;
  /** Every group some rule names as approvers: its members may sign in to the console. */
  approverGroups(): ReadonlySet<string>;
}

export interface ReloadableConfig extends LiveConfig {
  /** Takes up `next`'s rules, agents and reviewers, all at once. */
  replace(next: LoadedConfig): void;
}

export function createLiveConfig(loaded: LoadedConfig): ReloadableConfig {
  let state = liveState(loaded);
  return {
    get policy() {
      return state.policy;
    },
    agent: (name) => state.agents.get(name),
    agentNames: () => [...state.agents.keys()],
    reviewer: (email) => state.reviewers.get(email.toLowerCase()),
    approverGroups: () => state.approverGroups,
    replace(next) {
      state = liveState(next);
    },
  };
}

function liveState({ config, policy }: LoadedConfig) {
  return {
    policy,
    agents: new Map(config.agents.map((a) => [a.name, a])),
    reviewers: new Map(config.reviewers.map((r) => [r.email, r])),
    approverGroups: new Set(policy.rules.flatMap((rule) => rule.review?.approvers ?? [])),
  };
}

/** Taken up by a reload; `$schema` only tells editors where the schema is, and does nothing. */
const LIVE_SECTIONS = new Set(["rules", "agents", "reviewers", "$schema"]);

/**
 * Why `next` cannot be taken up by a gateway running `running`: each part outside the rules,
 * agents and reviewers that differs, by path (`connections.billing-api`, `server.port`).
 */
export function restartOnlyChanges(running: LoadedConfig, next: LoadedConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const before = running.config as unknown as Record<string, unknown>;
  const after = next.config as unknown as Record<string, unknown>;
  for (const section of union(Object.keys(before), Object.keys(after))) {
    if (LIVE_SECTIONS.has(section) || isDeepStrictEqual(before[section], after[section])) continue;
    const inner = [before[section], after[section]];
    const keys = inner.every(isPlainObject)
      ? union(...inner.map((value) => Object.keys(value as object)))
      : [];
    const changed = keys.filter(
      (key) =>
        !isDeepStrictEqual(
          (before[section] as Record<string, unknown>)[key],
          (after[section] as Record<string, unknown>)[key],
        ),
    );
    const paths = changed.length > 0 ? changed.map((key) => [section, key]) : [[section]];
    for (const path of paths) {
      issues.push({ path, message: "changed; this takes effect only when the gateway restarts" });
    }
  }
  if (!isDeepStrictEqual([...running.secrets].sort(), [...next.secrets].sort())) {
    issues.push({
      path: [],
      message:
        "the values of its ${env:} and ${file:} references are not the ones read at start (a reference added or removed, or a value changed); secrets are taken up only when the gateway restarts",
    });
  }
  return issues;
}

export interface LiveChanges {
  policyDigest: { from: string; to: string };
  rules: NameChanges;
  agents: NameChanges;
  reviewers: NameChanges;
}

interface NameChanges {
  added: string[];
  removed: string[];
  changed: string[];
}

/** What a reload changes, by name; undefined when it changes nothing. */
export function liveChanges(running: LoadedConfig, next: LoadedConfig): LiveChanges | undefined {
  const changes: LiveChanges = {
    policyDigest: { from: running.policy.digest, to: next.policy.digest },
    rules: byName(running.config.rules, next.config.rules, (rule) => rule.name),
    agents: byName(running.config.agents, next.config.agents, (agent) => agent.name),
    reviewers: byName(running.config.reviewers, next.config.reviewers, (r) => r.email),
  };
  const none = (c: NameChanges) => c.added.length + c.removed.length + c.changed.length === 0;
  const same =
    running.policy.digest === next.policy.digest && none(changes.agents) && none(changes.reviewers);
  return same ? undefined : changes;
}

function byName<T>(before: readonly T[], after: readonly T[], name: (item: T) => string) {
  const old = new Map(before.map((item) => [name(item), item]));
  const now = new Map(after.map((item) => [name(item), item]));
  return {
    added: [...now.keys()].filter((key) => !old.has(key)),
    removed: [...old.keys()].filter((key) => !now.has(key)),
    changed: [...now.keys()].filter(
      (key) => old.has(key) && !isDeepStrictEqual(old.get(key), now.get(key)),
    ),
  };
}

function union(...lists: string[][]): string[] {
  return [...new Set(lists.flat())];
}

function isPlainObject(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
