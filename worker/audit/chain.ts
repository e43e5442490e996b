/**
 * The audit hash chain: each record's seal is SHA-256 over the previous seal and the record's canonical
 * form, so a changed, inserted or deleted record breaks every seal after it; the chain's head is kept in the
 * `AuditSealer` object too, so rewriting records and seals together in D1 is caught as well.
 */
import { drizzle } from 'drizzle-orm/d1';
import { auditSeals } from './schema';

/** The `prev_hash` of the first record. */
export const GENESIS = '0'.repeat(64);
const BATCH = 200;

export interface ChainHead {
  seq: number;
  hash: string;
}

type Row = Record<string, unknown> & { seq: number };

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

/** Hex SHA-256 of the previous seal and the record's canonical form. */
export async function sealHash(prevHash: string, row: Readonly<Record<string, unknown>>): Promise<string> {
  const bytes = new TextEncoder().encode(`${prevHash}\n${canonicalRecord(row)}`);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

async function recordsAfter(db: D1Database, seq: number, upTo = Number.MAX_SAFE_INTEGER): Promise<Row[]> {
  const { results } = await db
    .prepare('SELECT * FROM audit_events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?')
    .bind(seq, upTo, BATCH)
    .all<Row>();
  return results;
}

async function sealsBetween(db: D1Database, after: number, upTo: number) {
  const { results } = await db
    .prepare('SELECT seq, prev_hash, hash FROM audit_seals WHERE seq > ? AND seq <= ? ORDER BY seq')
    .bind(after, upTo)
    .all<{ seq: number; prev_hash: string; hash: string }>();
  return new Map(results.map((seal) => [seal.seq, seal]));
}

export class ChainBroken extends Error {
  override readonly name = 'ChainBroken';
}

/**
 * Seals every record after `head`, in order, and returns the new head. A seal D1 already holds (written
 * before a crash, say) must match what the records give, or the chain is broken.
 */
export async function sealAfter(
  db: D1Database,
  head: ChainHead,
  save: (head: ChainHead) => Promise<void>,
): Promise<ChainHead> {
  let current = head;
  for (;;) {
    const rows = await recordsAfter(db, current.seq);
    const last = rows.at(-1);
    if (last === undefined) return current;
    const existing = await sealsBetween(db, current.seq, last.seq);
    const fresh: (typeof auditSeals.$inferInsert)[] = [];
    for (const row of rows) {
      const hash = await sealHash(current.hash, row);
      const held = existing.get(row.seq);
      if (held !== undefined && (held.hash !== hash || held.prev_hash !== current.hash)) {
        throw new ChainBroken(`seal ${row.seq} does not match its record`);
      }
      if (held === undefined) fresh.push({ seq: row.seq, prevHash: current.hash, hash });
      current = { seq: row.seq, hash };
    }
    if (fresh.length > 0) {
      const insert = drizzle(db);
      const [first, ...rest] = fresh.map((seal) => insert.insert(auditSeals).values(seal));
      if (first !== undefined) await insert.batch([first, ...rest]);
    }
    await save(current);
  }
}

export interface ChainProblem {
  seq: number;
  /**
   * `record_changed`: the record no longer gives its seal. `record_missing`: a sealed record is gone.
   * `seal_missing`: a record has no seal. `chain_rewritten`: the record matches its seal, but the seals
   * before it were rewritten. `head_mismatch`: the chain does not end at the head the sealer anchored.
   */
  problem: 'record_changed' | 'record_missing' | 'seal_missing' | 'chain_rewritten' | 'head_mismatch';
}

export interface ChainReport {
  valid: boolean;
  /** Records checked against their seals. */
  records: number;
  head: ChainHead;
  problems: ChainProblem[];
}

/** Recomputes the whole chain up to `head` from the records and compares it with the seals and the head. */
export async function verifyChain(db: D1Database, head: ChainHead, maxProblems = 20): Promise<ChainReport> {
  const problems: ChainProblem[] = [];
  let prev = GENESIS;
  let seq = 0;
  let records = 0;
  while (seq < head.seq && problems.length < maxProblems) {
    const rows = await recordsAfter(db, seq, head.seq);
    const upTo = rows.at(-1)?.seq ?? head.seq;
    const seals = await sealsBetween(db, seq, upTo);
    for (const [sealed] of seals) {
      if (!rows.some((row) => row.seq === sealed)) problems.push({ seq: sealed, problem: 'record_missing' });
    }
    for (const row of rows) {
      records += 1;
      const seal = seals.get(row.seq);
      const hash = await sealHash(prev, row);
      if (seal === undefined) problems.push({ seq: row.seq, problem: 'seal_missing' });
      else if (seal.hash !== hash || seal.prev_hash !== prev) {
        const intact = seal.prev_hash !== prev && seal.hash === (await sealHash(seal.prev_hash, row));
        problems.push({ seq: row.seq, problem: intact ? 'chain_rewritten' : 'record_changed' });
      }
      // Continue from the stored seal where there is one, so one change is reported once, not for every later record.
      prev = seal?.hash ?? hash;
    }
    seq = upTo;
    if (rows.length === 0) break;
  }
  if (problems.length === 0 && prev !== head.hash) problems.push({ seq: head.seq, problem: 'head_mismatch' });
  return { valid: problems.length === 0, records, head, problems: problems.slice(0, maxProblems) };
}
