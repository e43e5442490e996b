/**
 * The audit log in D1: one row for every decision, granted or refused. Append-only: the broker inserts
 * and never updates or deletes. Migrations are generated from this file by drizzle-kit (`npm run db:generate`);
 * read every generated migration, and never let one rebuild this table.
 */
import { index, integer, primaryKey, sqliteTable, text } from 'drizzle-orm/sqlite-core';

export const auditEvents = sqliteTable(
  'audit_events',
  {
    /** Insertion order: the cursor for newest-first pagination. */
    seq: integer('seq').primaryKey({ autoIncrement: true }),
    id: text('id').notNull().unique(),
    /** Epoch milliseconds of the decision. */
    at: integer('at').notNull(),
    /** What was decided: `token.exchange`, `token.revoke`, `task.complete`, `admin.kill_switch`, ... */
    event: text('event').notNull(),
    decision: text('decision', { enum: ['granted', 'refused'] }).notNull(),
    /** Public OAuth error code of a refusal. */
    errorCode: text('error_code'),
    /** Internal, tagged reason of a refusal (never returned to the caller). */
    reason: text('reason'),
    /** JSON: the reason's detail, the permit policies that granted, a capped TTL. */
    detail: text('detail'),
    agent: text('agent'),
    owner: text('owner'),
    /** `self` or the trusted issuer that vouched for the agent. */
    attestationVia: text('attestation_via'),
    attestationJti: text('attestation_jti'),
    audience: text('audience'),
    requestedActions: text('requested_actions'),
    grantedActions: text('granted_actions'),
    taskId: text('task_id'),
    taskDescription: text('task_description'),
    taskHash: text('task_hash'),
    justification: text('justification'),
    requestedTtl: integer('requested_ttl'),
    policyVersion: text('policy_version').notNull(),
    tokenJti: text('token_jti'),
    /** Epoch seconds. */
    tokenExp: integer('token_exp'),
    ip: text('ip'),
    colo: text('colo'),
    userAgent: text('user_agent'),
    /** Admin calls: who (credential id or Access email), with which role, on what, and why. */
    actor: text('actor'),
    actorRole: text('actor_role'),
    target: text('target'),
    adminReason: text('admin_reason'),
    /**
     * The chain the record was committed to at decision time, in the Durable Object that decided it:
     * `agent:<id>`, `kill-switch`, or `intake:<n>` (records about no agent). `chain_seq` counts from 1 in
     * each chain; `chain_hash` is the SHA-256 of the record's canonical form, `chain_prev` included.
     */
    chain: text('chain'),
    chainSeq: integer('chain_seq'),
    chainPrev: text('chain_prev'),
    chainHash: text('chain_hash'),
    /** Epoch milliseconds at which the audit writer sent the record to D1 (its batch's time, on the Workers clock). */
    storedAt: integer('stored_at'),
  },
  (table) => [
    index('audit_events_agent_seq').on(table.agent, table.seq),
    index('audit_events_task').on(table.taskId),
    index('audit_events_token_jti').on(table.tokenJti),
    index('audit_events_at').on(table.at),
    // Not unique: a record forged into D1 at a chain's next position must not block the real one's arrival.
    index('audit_events_chain_seq').on(table.chain, table.chainSeq),
  ],
);

export type AuditEvent = typeof auditEvents.$inferSelect;
export type NewAuditEvent = typeof auditEvents.$inferInsert;

/**
 * The hash chain over `audit_events`, one seal per record in `seq` order, written by the `AuditSealer`
 * object off the request path: `hash` = SHA-256 of `prev_hash` and the record's canonical JSON.
 * Append-only like the records it seals.
 */
export const auditSeals = sqliteTable('audit_seals', {
  /** The sealed record's `seq`. */
  seq: integer('seq').primaryKey(),
  prevHash: text('prev_hash').notNull(),
  hash: text('hash').notNull(),
});

/**
 * What the audit queue's consumer has written to D1, one row (`id` = 1), counted in the same transaction as
 * each write: write queries, records they added (a redelivered record adds none), deliveries that had failed
 * before, and when the last write was. `GET /admin/audit/backlog` shows it.
 */
export const auditWriterStats = sqliteTable('audit_writer_stats', {
  id: integer('id').primaryKey(),
  writeQueries: integer('write_queries').notNull(),
  recordsWritten: integer('records_written').notNull(),
  retriedDeliveries: integer('retried_deliveries').notNull(),
  /** Epoch milliseconds. */
  lastWriteAt: integer('last_write_at'),
});

/**
 * The archive's segments, one row each, in order (`worker/audit/archive.ts`): which records moved from D1 to
 * which R2 object, and the hashes that chain the segments. Append-only. A record leaves `audit_events` (and
 * its seal `audit_seals`) only once a segment here holds its `seq`: the delete triggers allow nothing else.
 */
export const auditArchive = sqliteTable('audit_archive', {
  segment: integer('segment').primaryKey(),
  /** The R2 key of the gzipped NDJSON object. */
  key: text('key').notNull(),
  firstSeq: integer('first_seq').notNull(),
  lastSeq: integer('last_seq').notNull(),
  records: integer('records').notNull(),
  /** The object's size, gzipped, and the hex SHA-256 of those bytes. */
  bytes: integer('bytes').notNull(),
  sha256: text('sha256').notNull(),
  /** Epoch ms of the segment's first and last decision. */
  firstAt: integer('first_at').notNull(),
  lastAt: integer('last_at').notNull(),
  /** The seal of the segment's last record: D1's seal chain goes on from it. */
  sealHash: text('seal_hash').notNull(),
  /** The R2 key of every decision-time chain's head after this segment (JSON), and its hex SHA-256. */
  headsKey: text('heads_key').notNull(),
  headsSha256: text('heads_sha256').notNull(),
  /** The segment chain: `hash` = SHA-256 of `prev_hash`, `sha256`, `seal_hash` and `heads_sha256`. */
  prevHash: text('prev_hash').notNull(),
  hash: text('hash').notNull(),
  archivedAt: integer('archived_at').notNull(),
});

/**
 * Each decision-time chain's last record in the archive (`worker/audit/archive.ts`), moved on in the same
 * transaction as each segment's move. A record at or before its chain's archived head is in the archive: the
 * queue's consumer never writes it to D1 again (a delivery after the move adds nothing), and the deciding
 * object counts it as held and forgets it.
 */
export const auditArchiveHeads = sqliteTable('audit_archive_heads', {
  chain: text('chain').primaryKey(),
  seq: integer('seq').notNull(),
  hash: text('hash').notNull(),
});

/**
 * Decisions counted per UTC day, agent, API, set of actions and outcome: what the access review
 * (`GET /admin/review`) and the console's Overview (`GET /admin/usage`) read, kept long after the records
 * themselves moved to the archive. The broker never writes it: the `usage_daily_count` trigger of migration
 * 0009 counts each record as it is inserted into `audit_events` (a record the writer skips, already held,
 * counts nothing), and nothing deletes a count when the archive deletes the records it came from. One row
 * per record's key, not per action: a token's count is one row written, its count is the number of tokens,
 * and an action's count is the sum over the sets that hold it. `WITHOUT ROWID` in SQL: no index but its key.
 */
export const usageDaily = sqliteTable(
  'usage_daily',
  {
    /** `YYYY-MM-DD`, UTC, of the decision's `at`. */
    day: text('day').notNull(),
    /** The agent, `''` for a caller not known. */
    agent: text('agent').notNull(),
    /** The API asked for, `''` when the request was not read that far. */
    audience: text('audience').notNull(),
    /** The record's actions, space-separated as it holds them: granted ones for a grant, else those asked for. */
    actions: text('actions').notNull(),
    outcome: text('outcome', {
      enum: ['granted', 'refused', 'approval_asked', 'approval_waiting', 'approved', 'denied'],
    }).notNull(),
    /** A refusal's tagged reason, `''` for any other outcome. */
    reason: text('reason').notNull(),
    count: integer('count').notNull(),
  },
  (table) => [
    primaryKey({
      columns: [table.day, table.agent, table.audience, table.actions, table.outcome, table.reason],
    }),
  ],
);

export type UsageDaily = typeof usageDaily.$inferSelect;
