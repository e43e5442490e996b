/**
 * The schema steps of an agent's object (`durable/sql-schema.ts` applies them): append-only, so that the
 * storage of an object created by an older version keeps working. The tables' owners are the parts in this
 * folder; `audit_outbox`, `audit_chain` and `audit_samples` are the audit chain's (`audit/audited-object.ts`).
 */
import { NOTIFICATIONS_TABLE } from './notifications';

/** The steps, in order; never edit or reorder one, only append. */
export const AGENT_SCHEMA: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS seen_attestations (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
   CREATE INDEX IF NOT EXISTS seen_attestations_expiry ON seen_attestations (expires_at);
   CREATE TABLE IF NOT EXISTS revoked_tokens (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
   CREATE INDEX IF NOT EXISTS revoked_tokens_expiry ON revoked_tokens (expires_at);
   CREATE TABLE IF NOT EXISTS finished_tasks (task_id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
   CREATE INDEX IF NOT EXISTS finished_tasks_expiry ON finished_tasks (expires_at);
   CREATE TABLE IF NOT EXISTS approvals (id TEXT PRIMARY KEY, record TEXT NOT NULL, expires_at INTEGER NOT NULL);
   ${NOTIFICATIONS_TABLE};`,
  // The token an admitted attestation was exchanged for, and when: what a revocation of every token needs.
  `ALTER TABLE seen_attestations ADD COLUMN token_jti TEXT;
   ALTER TABLE seen_attestations ADD COLUMN token_exp INTEGER;
   ALTER TABLE seen_attestations ADD COLUMN admitted_ms INTEGER;
   CREATE INDEX seen_attestations_admitted ON seen_attestations (admitted_ms) WHERE token_jti IS NOT NULL;
   CREATE TABLE agent_status (id INTEGER PRIMARY KEY CHECK (id = 1), status TEXT NOT NULL);`,
  // A used attestation costs one row written, not four: its key is the table's only b-tree (no rowid, no
  // index on expiry or admission time). Every row is written again to be deleted, so each index cost twice
  // per token; what the indexes served is rare (the cleanup, once a minute at most; an agent's revocation)
  // and reads a table that holds only a few minutes of attestations.
  `CREATE TABLE seen_attestations_keyed (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, token_jti TEXT,
     token_exp INTEGER, admitted_ms INTEGER) WITHOUT ROWID;
   INSERT INTO seen_attestations_keyed SELECT key, expires_at, token_jti, token_exp, admitted_ms FROM seen_attestations;
   DROP TABLE seen_attestations;
   ALTER TABLE seen_attestations_keyed RENAME TO seen_attestations;`,
  // A token's entry in its status list, and its task, on the row its attestation already writes (no row
  // more per token): what a change that kills the token flips. Flips on their way to the lists wait in
  // `status_flips` (`./status-flips.ts`) until their list has them.
  `ALTER TABLE seen_attestations ADD COLUMN status_list TEXT;
   ALTER TABLE seen_attestations ADD COLUMN status_idx INTEGER;
   ALTER TABLE seen_attestations ADD COLUMN task_id TEXT;
   CREATE TABLE status_flips (list TEXT NOT NULL, idx INTEGER NOT NULL, status INTEGER NOT NULL,
     PRIMARY KEY (list, idx)) WITHOUT ROWID;`,
];
