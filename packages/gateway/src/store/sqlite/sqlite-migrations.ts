/** SQLite schema, one entry per version. Never edit a released migration; add one. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const sqliteMigrations: Migration[] = [
  {
    version: 1,
    name: "requests, reviews, audit chain, tokens, outbox",
    sql: `
      CREATE TABLE requests (
        id              TEXT PRIMARY KEY,
        agent           TEXT NOT NULL,
        agent_snapshot  TEXT NOT NULL,
        connection      TEXT NOT NULL,
        connection_type TEXT NOT NULL,
        operation       TEXT NOT NULL,
        input           TEXT NOT NULL,
        justification   TEXT NOT NULL,
        context         TEXT NOT NULL,
        idempotency_key TEXT,
        hash            TEXT NOT NULL,
        nonce           TEXT NOT NULL,
        status          TEXT NOT NULL,
        decision        TEXT NOT NULL,
        description     TEXT NOT NULL,
        outcome         TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        expires_at      INTEGER,
        finished_at     INTEGER,
        version         INTEGER NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX requests_idempotency ON requests (agent, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
      CREATE INDEX requests_status ON requests (status, expires_at);
      CREATE INDEX requests_agent ON requests (agent, id);

      CREATE TABLE reviews (
        id           TEXT PRIMARY KEY,
        request_id   TEXT NOT NULL REFERENCES requests (id),
        reviewer     TEXT NOT NULL,
        decision     TEXT NOT NULL,
        comment      TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        evidence     TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        UNIQUE (request_id, reviewer)
      ) STRICT;

      CREATE TABLE audit_events (
        seq        INTEGER PRIMARY KEY,
        ts         TEXT NOT NULL,
        type       TEXT NOT NULL,
        request_id TEXT,
        actor_type TEXT NOT NULL,
        actor_id   TEXT NOT NULL,
        data       TEXT NOT NULL,
        prev_hash  TEXT NOT NULL,
        hash       TEXT NOT NULL
      ) STRICT;
      CREATE INDEX audit_events_request ON audit_events (request_id, seq);
      CREATE INDEX audit_events_ts ON audit_events (ts);

      CREATE TABLE tokens (
        id         TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,
        subject    TEXT NOT NULL,
        hash       TEXT NOT NULL UNIQUE,
        hint       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
      ) STRICT;

      CREATE TABLE outbox (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        topic        TEXT NOT NULL,
        request_id   TEXT,
        payload      TEXT NOT NULL,
        state        TEXT NOT NULL DEFAULT 'pending',
        attempts     INTEGER NOT NULL DEFAULT 0,
        available_at INTEGER NOT NULL,
        lease_until  INTEGER,
        last_error   TEXT,
        created_at   INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX outbox_due ON outbox (state, available_at);

      CREATE TABLE channel_refs (
        request_id TEXT NOT NULL,
        channel    TEXT NOT NULL,
        ref        TEXT NOT NULL,
        PRIMARY KEY (request_id, channel)
      ) STRICT;
    `,
  },
  {
    version: 2,
    name: "reviewer sessions and sign-ins in progress",
    sql: `
      CREATE TABLE sessions (
        id_hash    TEXT PRIMARY KEY,
        email      TEXT NOT NULL,
        issuer     TEXT NOT NULL,
        subject    TEXT NOT NULL,
        groups     TEXT NOT NULL,
        auth_time  INTEGER NOT NULL,
        acr        TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX sessions_expiry ON sessions (expires_at);

      CREATE TABLE sign_ins (
        state_hash TEXT PRIMARY KEY,
        verifier   TEXT NOT NULL,
        nonce      TEXT NOT NULL,
        return_to  TEXT NOT NULL,
        step_up    INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 3,
    name: "inbound messages already accepted (replay guard)",
    sql: `
      CREATE TABLE replay_guard (
        key        TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX replay_guard_expiry ON replay_guard (expires_at);
    `,
  },
  {
    version: 4,
    name: "delivered outbox entries are deleted, not kept",
    sql: "DELETE FROM outbox WHERE state = 'done';",
  },
  {
    version: 5,
    name: "outbox entries of one request and channel are delivered in order",
    sql: "CREATE INDEX outbox_request_order ON outbox (request_id, topic, id);",
  },
  {
    version: 6,
    name: "outbox entries are claimed by topic (each gateway claims its channels' only)",
    sql: "CREATE INDEX outbox_pending_topic ON outbox (topic, available_at) WHERE state = 'pending';",
  },
  {
    version: 7,
    name: "an agent's pending requests are counted (agents[].maxPending)",
    sql: "CREATE INDEX requests_pending_agent ON requests (agent) WHERE status = 'pending';",
  },
  {
    version: 8,
    name: "sessions are checked again with the identity provider (oidc.recheckEvery)",
    sql: `
      ALTER TABLE sessions ADD COLUMN refresh_token TEXT;
      ALTER TABLE sessions ADD COLUMN checked_at INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE sessions ADD COLUMN checking_until INTEGER;
      UPDATE sessions SET checked_at = created_at;
    `,
  },
  {
    version: 9,
    name: "finished requests are found by age (retention.requests)",
    sql: "CREATE INDEX requests_finished ON requests (finished_at) WHERE finished_at IS NOT NULL;",
  },
  {
    version: 10,
    name: "reviews record the reviewer's groups at the vote (review.require)",
    sql: "ALTER TABLE reviews ADD COLUMN reviewer_groups TEXT NOT NULL DEFAULT '[]';",
  },
  {
    version: 11,
    name: "MCP tool calls held for review, so a cancel finds the request",
    sql: `
      CREATE TABLE mcp_calls (
        call_key   TEXT PRIMARY KEY,
        request_id TEXT,
        cancelled  INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX mcp_calls_expiry ON mcp_calls (expires_at);
    `,
  },
];
