/** Prometheus metrics, in a registry per gateway so several can live in one process (tests). */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics() {
  const registry = new Registry();
  // Under their standard names (process_cpu_seconds_total, nodejs_eventloop_lag_seconds…),
  // which ready-made Node.js dashboards and alerts read; a prefix doubled them
  // (airlock_process_process_cpu_…).
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    decisions: new Counter({
      name: "airlock_decisions_total",
      help: "Policy decisions on submitted actions, by decision and the rule that made it ((no rule) when none matched).",
      labelNames: ["decision", "rule"] as const,
      registers: [registry],
    }),
    reviews: new Counter({
      name: "airlock_reviews_total",
      help: "Reviews recorded, by vote.",
      labelNames: ["decision"] as const,
      registers: [registry],
    }),
    reviewWait: new Histogram({
      name: "airlock_review_wait_seconds",
      help: "How long requests held for review waited, from submission to their end: approved or denied by a vote, expired, or cancelled by the agent.",
      labelNames: ["outcome"] as const,
      buckets: [1, 10, 30, 60, 300, 900, 1800, 3600, 14_400, 86_400],
      registers: [registry],
    }),
    executions: new Counter({
      name: "airlock_executions_total",
      help: "Executions finished, by outcome.",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    executionSeconds: new Histogram({
      name: "airlock_execution_duration_seconds",
      help: "Time a connector took to run an action.",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [registry],
    }),
    httpSeconds: new Histogram({
      name: "airlock_http_request_duration_seconds",
      help: "HTTP API latency by route and status.",
      labelNames: ["method", "route", "status"] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [registry],
    }),
    requests: new Gauge({
      name: "airlock_requests",
      help: "Requests by status, read from the store at scrape time.",
      labelNames: ["status"] as const,
      registers: [registry],
    }),
    outbox: new Gauge({
      name: "airlock_outbox_entries",
      help: "Channel deliveries still to make (pending) and given up (dead letters: see airlock outbox), read from the store at scrape time.",
      labelNames: ["state"] as const,
      registers: [registry],
    }),
    configReloads: new Counter({
      name: "airlock_config_reloads_total",
      help: "Config reloads (SIGHUP), by result: applied, unchanged or refused (the running config stays).",
      labelNames: ["result"] as const,
      registers: [registry],
    }),
    prunedRequests: new Counter({
      name: "airlock_requests_pruned_total",
      help: "Finished requests deleted past retention.requests (their audit events are kept).",
      registers: [registry],
    }),
    outboxFailures: new Counter({
      name: "airlock_outbox_failures_total",
      help: "Failed deliveries to channels, by topic.",
      labelNames: ["topic"] as const,
      registers: [registry],
    }),
  };
}
