/**
 * Audit records, the pure part: a draft filled in from the request, the decision that completes it, and the
 * per-chain hash that makes it tamper-evident from the moment a Durable Object commits it. The same
 * functions give the D1 row, so a chain can be checked from D1 alone.
 */
import { hash } from 'node:crypto';
import { getTableColumns } from 'drizzle-orm';
import { type Reason, reasonCode } from '../core/errors';
import { type AuditEvent, auditEvents, type NewAuditEvent } from './schema';

/** What a request knows about its record before the decision: origin, agent, task, target. */
export type AuditDraft = Omit<
  NewAuditEvent,
  | 'seq'
  | 'id'
  | 'decision'
  | 'errorCode'
  | 'reason'
  | 'detail'
  | 'policyVersion'
  | 'chain'
  | 'chainSeq'
  | 'chainPrev'
  | 'chainHash'
  | 'storedAt'
> & { details: Record<string, unknown> };

/** How the decision ended: granted, or refused for a tagged reason (its public code follows from it). */
export type AuditOutcome =
  | { decision: 'granted'; details?: Record<string, unknown> }
  | { decision: 'refused'; reason: Reason | AuditOnlyReason; details?: Record<string, unknown> };

/** Reasons that are recorded but never answered to a caller (notifications the broker sends, say). */
export type AuditOnlyReason = 'invalid_token' | 'webhook_not_configured' | 'webhook_failed' | 'webhook_gave_up';

/** A decided record, not yet in a chain. */
export type DecidedRecord = Omit<AuditEvent, 'seq' | 'storedAt' | 'chain' | 'chainSeq' | 'chainPrev' | 'chainHash'>;

/** A record as its chain holds it, and as D1 stores it but for `seq` and `stored_at`, which D1 assigns. */
export type ChainedRecord = DecidedRecord & { chain: string; chainSeq: number; chainPrev: string; chainHash: string };

/** The last record of a chain: its number and hash. */
export interface ChainHead {
  seq: number;
  hash: string;
}

/** The `chain_prev` of a chain's first record. */
export const GENESIS = '0'.repeat(64);
export const EMPTY_CHAIN: ChainHead = { seq: 0, hash: GENESIS };

/** A chain's name: `agent:<id>`, `kill-switch`, `intake:<n>`. */
export const agentChain = (agentId: string) => `agent:${agentId}`;

/** Completes a draft with its decision: one record, built once, whatever path the request took. */
export function decideRecord(draft: AuditDraft, outcome: AuditOutcome, policyVersion: string): DecidedRecord {
  const { details: drafted, ...fields } = draft;
  const details = { ...drafted, ...outcome.details };
  const refused = outcome.decision === 'refused';
  return {
    ...UNSET,
    ...fields,
    id: crypto.randomUUID(),
    decision: outcome.decision,
    errorCode: refused ? reasonCode(outcome.reason) : null,
    reason: refused ? outcome.reason : null,
    detail: Object.keys(details).length === 0 ? null : JSON.stringify(details),
    policyVersion,
  } as DecidedRecord;
}

type Field = keyof ChainedRecord;

/** Field name to D1 column name, for every column a chain's record carries. */
const COLUMN_NAMES: Readonly<Record<Field, string>> = Object.fromEntries(
  Object.entries(getTableColumns(auditEvents))
    .filter(([field]) => field !== 'seq' && field !== 'storedAt')
    .map(([field, column]) => [field, column.name]),
) as Record<Field, string>;

const CHAIN_FIELDS = new Set<Field>(['chain', 'chainSeq', 'chainPrev', 'chainHash']);

/** Every field of a decided record, null: what a draft does not say stays null, not absent. */
const UNSET = Object.fromEntries(
  Object.keys(COLUMN_NAMES)
    .filter((field) => !CHAIN_FIELDS.has(field as Field))
    .map((field) => [field, null]),
) as Record<keyof DecidedRecord, null>;

/** Every field of a chained record with its D1 column, in a fixed order: how the writer maps a record's JSON to a row. */
export const RECORD_FIELDS: readonly (readonly [field: string, column: string])[] = Object.entries(COLUMN_NAMES);

/** The record with D1 column names, as `audit_events` stores it. */
export function recordColumns(record: ChainedRecord): Record<string, string | number | null> {
  const columns: Record<string, string | number | null> = {};
  for (const [field, column] of Object.entries(COLUMN_NAMES)) {
    columns[column] = (record[field as Field] as string | number | null | undefined) ?? null;
  }
  return columns;
}

/**
 * A record's canonical form: its non-null columns sorted by name. Leaving nulls out keeps old records'
 * hashes stable when a migration adds a nullable column.
 */
export function canonicalRecord(row: Readonly<Record<string, unknown>>): string {
  const entries = Object.entries(row)
    .filter(([, value]) => value !== null && value !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify(entries);
}

/** Columns a chain's hash does not cover: the hash itself, and what D1 assigns on arrival. */
const UNHASHED = new Set(['chain_hash', 'seq', 'stored_at']);

/**
 * Hex SHA-256 of a record's canonical form, `chain`, `chain_seq` and `chain_prev` included; from a chained
 * record or from its D1 row alike. Synchronous, so a Durable Object links and commits in one step.
 */
export function chainHash(columns: Readonly<Record<string, unknown>>): string {
  const hashed = Object.fromEntries(Object.entries(columns).filter(([column]) => !UNHASHED.has(column)));
  // The one-shot hash: a `createHash` object is a stream, about twice the cost for one short input.
  return hash('sha256', canonicalRecord(hashed), 'hex');
}

/** Links a decided record after `head` in `chain`. */
export function linkRecord(record: DecidedRecord, chain: string, head: ChainHead): ChainedRecord {
  const linked = { ...record, chain, chainSeq: head.seq + 1, chainPrev: head.hash, chainHash: '' };
  return { ...linked, chainHash: chainHash(recordColumns(linked)) };
}

/**
 * Joins JSON values (each as its text) into JSON arrays of at most `maxBytes` characters, in order, at least
 * one value each however long: how records travel in one queue message or one D1 query.
 */
export function jsonArrays(values: readonly string[], maxBytes: number): string[] {
  const out: string[] = [];
  let batch: string[] = [];
  let bytes = 2;
  for (const value of values) {
    if (batch.length > 0 && bytes + value.length + 1 > maxBytes) {
      out.push(`[${batch.join(',')}]`);
      batch = [];
      bytes = 2;
    }
    batch.push(value);
    bytes += value.length + 1;
  }
  if (batch.length > 0) out.push(`[${batch.join(',')}]`);
  return out;
}
