/** PostgreSQL schema, the same tables and versions as SQLite's. Never edit a released one. */

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/*
 * JSON is kept as TEXT, exactly as the SQLite store keeps it: audit data must stay the very
 * canonical text its hash covers (JSONB would reorder keys and normalise numbers), and one
 * encoding for every column keeps the two stores' row mapping the same. Times are BIGINT
 * milliseconds. Columns that are sorted or compared by range use the "C" collation so they
 * order byte by byte, as in SQLite, whatever the database's locale.
 */
export const postgresMigrations: Migration[] = [
  {
    version: 1,
    name: "requests, reviews, audit chain, tokens, outbox",
    sql: `
      CREATE TABLE requests (
        id              TEXT COLLATE "C" PRIMARY KEY,
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
        created_at      BIGINT NOT NULL,
        updated_at      BIGINT NOT NULL,
        expires_at      BIGINT,
        finished_at     BIGINT,
        version         INTEGER NOT NULL
      );
      CREATE UNIQUE INDEX requests_idempotency ON requests (agent, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
      CREATE INDEX requests_status ON requests (status, expires_at);
      CREATE INDEX requests_agent ON requests (agent, id);

      CREATE TABLE reviews (
        id           TEXT COLLATE "C" PRIMARY KEY,
        request_id   TEXT COLLATE "C" NOT NULL REFERENCES requests (id),
        reviewer     TEXT NOT NULL,
        decision     TEXT NOT NULL,
        comment      TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        evidence     TEXT NOT NULL,
        created_at   BIGINT NOT NULL,
        UNIQUE (request_id, reviewer)
      );

      CREATE TABLE audit_events (
        seq        BIGINT PRIMARY KEY,
        ts         TEXT COLLATE "C" NOT NULL,
        type       TEXT NOT NULL,
        request_id TEXT COLLATE "C",
        actor_type TEXT NOT NULL,
        actor_id   TEXT NOT NULL,
        data       TEXT NOT NULL,
        prev_hash  TEXT NOT NULL,
        hash       TEXT NOT NULL
      );
      CREATE INDEX audit_events_request ON audit_events (request_id, seq);
      CREATE INDEX audit_events_ts ON audit_events (ts);

      CREATE TABLE tokens (
        id         TEXT COLLATE "C" PRIMARY KEY,
        kind       TEXT NOT NULL,
        subject    TEXT NOT NULL,
        hash       TEXT NOT NULL UNIQUE,
        hint       TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
      );

      CREATE TABLE outbox (
        id           BIGSERIAL PRIMARY KEY,
        topic        TEXT NOT NULL,
        request_id   TEXT COLLATE "C",
        payload      TEXT NOT NULL,
        state        TEXT NOT NULL DEFAULT 'pending',
        attempts     INTEGER NOT NULL DEFAULT 0,
        available_at BIGINT NOT NULL,
        lease_until  BIGINT,
        last_error   TEXT,
        created_at   BIGINT NOT NULL
      );
      CREATE INDEX outbox_due ON outbox (state, available_at);

      CREATE TABLE channel_refs (
        request_id TEXT COLLATE "C" NOT NULL,
        channel    TEXT NOT NULL,
        ref        TEXT NOT NULL,
        PRIMARY KEY (request_id, channel)
      );
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
        auth_time  BIGINT NOT NULL,
        acr        TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
      );
      CREATE INDEX sessions_expiry ON sessions (expires_at);

      CREATE TABLE sign_ins (
        state_hash TEXT PRIMARY KEY,
        verifier   TEXT NOT NULL,
        nonce      TEXT NOT NULL,
        return_to  TEXT NOT NULL,
        step_up    BOOLEAN NOT NULL,
        expires_at BIGINT NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: "inbound messages already accepted (replay guard); audit appends chained in the database",
    // The chain is extended inside the database so that its lock is held for no round trip:
    // the append and COMMIT travel in one message (postgres-sql.ts, withAuditedTransaction).
    // The function hashes the parts the gateway encoded (audit-chain.ts's hashParts),
    // assembled around the data it stores, exactly as the gateway would. Each statement of a
    // volatile function takes a fresh snapshot, so the head read after the lock is granted
    // includes the previous holder's commit.
    sql: `
      CREATE TABLE replay_guard (
        key        TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL
      );
      CREATE INDEX replay_guard_expiry ON replay_guard (expires_at);

      CREATE FUNCTION airlock_append_audit(lock_key BIGINT, ts TEXT[], types TEXT[],
        request_ids TEXT[], actor_types TEXT[], actor_ids TEXT[], datas TEXT[], actors TEXT[],
        afters TEXT[], rests TEXT[]) RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
      DECLARE
        head_seq  BIGINT;
        head_hash TEXT;
        seqs      BIGINT[];
        prevs     TEXT[];
        hashes    TEXT[];
      BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        SELECT seq, hash INTO head_seq, head_hash FROM audit_events ORDER BY seq DESC LIMIT 1;
        head_seq := coalesce(head_seq, 0);
        head_hash := coalesce(head_hash, repeat('0', 64));
        FOR i IN 1 .. coalesce(array_length(ts, 1), 0) LOOP
          seqs[i] := head_seq + i;
          prevs[i] := head_hash;
          head_hash := encode(sha256(convert_to('{"actor":' || actors[i] || ',"data":' || datas[i]
            || ',"prevHash":"' || head_hash || afters[i] || seqs[i]::text || rests[i], 'UTF8')), 'hex');
          hashes[i] := head_hash;
        END LOOP;
        INSERT INTO audit_events (seq, ts, type, request_id, actor_type, actor_id, data,
          prev_hash, hash)
        SELECT * FROM unnest(seqs, ts, types, request_ids, actor_types, actor_ids, datas, prevs,
          hashes);
        RETURN coalesce(seqs[array_upper(seqs, 1)], head_seq);
      END
      $$;
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
      ALTER TABLE sessions ADD COLUMN checked_at BIGINT NOT NULL DEFAULT 0;
      ALTER TABLE sessions ADD COLUMN checking_until BIGINT;
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
    name: "agents' submission rate limits, shared by replicas (agents[].rateLimit)",
    sql: `
      CREATE TABLE rate_buckets (
        key    TEXT COLLATE "C" PRIMARY KEY,
        tokens DOUBLE PRECISION NOT NULL,
        at_ms  BIGINT NOT NULL
      );
    `,
  },
  {
    version: 11,
    name: "reviews record the reviewer's groups at the vote (review.require)",
    sql: "ALTER TABLE reviews ADD COLUMN reviewer_groups TEXT NOT NULL DEFAULT '[]';",
  },
  {
    version: 12,
    name: "MCP tool calls held for review, so a cancel reaching any replica finds the request",
    sql: `
      CREATE TABLE mcp_calls (
        call_key   TEXT COLLATE "C" PRIMARY KEY,
        request_id TEXT,
        cancelled  BOOLEAN NOT NULL,
        expires_at BIGINT NOT NULL
      );
      CREATE INDEX mcp_calls_expiry ON mcp_calls (expires_at);
    `,
  },
];
