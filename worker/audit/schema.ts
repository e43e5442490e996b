/**
 * The audit log in D1: one row for every decision, granted or refused. Append-only: the broker inserts
 * and never updates or deletes. Migrations are generated from this file by drizzle-kit (`npm run db:generate`);
 * read every generated migration, and never let one rebuild this table.
 */
import { index, integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';

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
