/**
 * The audit hash chain: each record's seal is SHA-256 over the previous seal and the record's canonical
 * form, so a changed, inserted or deleted record breaks every seal after it; the chain's head is kept in the
 * `AuditSealer` object too, so rewriting records and seals together in D1 is caught as well.
 */
import { drizzle } from 'drizzle-orm/d1';
import { sha256Hex } from '../core/hex';
import { type ChainHead, canonicalRecord, chainHash, GENESIS } from './record';
import { auditSeals } from './schema';

export { type ChainHead, canonicalRecord, GENESIS };

const BATCH = 200;

export type Row = Record<string, unknown> & { seq: number };

/** Hex SHA-256 of the previous seal and the record's canonical form. */
export async function sealHash(prevHash: string, row: Readonly<Record<string, unknown>>): Promise<string> {
  return sha256Hex(`${prevHash}\n${canonicalRecord(row)}`);
}

async function recordsAfter(db: D1Database, seq: number, upTo = Number.MAX_SAFE_INTEGER): Promise<Row[]> {
  const { results } = await db
    .prepare('SELECT * FROM audit_events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?')
    .bind(seq, upTo, BATCH)
    .all<Row>();
  return results;
}

interface SealRow {
  seq: number;
  prev_hash: string;
  hash: string;
}

async function sealsBetween(db: D1Database, after: number, upTo: number): Promise<Map<number, SealRow>> {
  const { results } = await db
    .prepare('SELECT seq, prev_hash, hash FROM audit_seals WHERE seq > ? AND seq <= ? ORDER BY seq')
    .bind(after, upTo)
    .all<SealRow>();
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
  /** Set for a problem in a decision-time chain (`agent:<id>`, `kill-switch`, `intake:<n>`); `seq` is then its `chain_seq`. */
  chain?: string;
  /**
   * `record_changed`: the record no longer gives its seal (or its chain hash). `record_missing`: a sealed
   * record is gone, or a chain skips a number. `seal_missing`: a record has no seal. `chain_rewritten`: the
   * record matches its seal, but the seals before it were rewritten. `head_mismatch`: the chain does not end
   * at the head the sealer (or the chain's object) anchored. `unknown_record`: D1 holds a record the chain's
   * object never committed. `segment_changed`: an archive segment does not give the hash D1 lists for it, or
   * its link to the segment before; `segment_missing`: its object is gone from R2.
   */
  problem:
    | 'record_changed'
    | 'record_missing'
    | 'seal_missing'
    | 'chain_rewritten'
    | 'head_mismatch'
    | 'unknown_record'
    | 'segment_changed'
    | 'segment_missing';
  /** Set for a problem of an archive segment: its number (`seq` is then its first record's). */
  segment?: number;
}

export interface ChainReport {
  valid: boolean;
  /** Records checked against their seals. */
  records: number;
  head: ChainHead;
  /** Decision-time chains checked, and the records of theirs found in D1 (and the archive, when read). */
  chains: { checked: number; records: number };
  /** The archive: segments listed, and records read from them (0 unless the whole archive was read). */
  archive: { segments: number; records: number };
  problems: ChainProblem[];
}

/** What a chain's object says of it: the last record it committed, and the last it knows D1 holds. */
export interface ObjectHeads {
  head: ChainHead;
  acked: ChainHead;
}

/**
 * What the chains' objects say, for a check of D1: the last record each knew D1 to hold, read before D1 is
 * read (D1 holds at least that), and the last each committed, asked once D1 has been read (records are
 * committed and reach D1 while the check runs: one that arrived meanwhile is no stranger).
 */
export interface ChainObjects {
  acked: ReadonlyMap<string, ChainHead>;
  heads: () => Promise<ReadonlyMap<string, ChainHead>>;
}

const EMPTY_HEAD: ChainHead = { seq: 0, hash: GENESIS };

export interface ChainState {
  seq: number;
  hash: string;
  records: number;
}

/** Checks one record of a decision-time chain against the record before it in that chain; updates the state. */
function checkLink(row: Row, state: ChainState | undefined, problems: ChainProblem[]): ChainState {
  const chain = row.chain as string;
  const seq = row.chain_seq as number;
  const prev = state ?? { seq: 0, hash: GENESIS, records: 0 };
  // A second record at a position the chain has passed: one of the two was never committed by the object.
  if (seq <= prev.seq) {
    problems.push({ chain, seq, problem: 'unknown_record' });
    return prev;
  }
  if (seq !== prev.seq + 1) problems.push({ chain, seq: prev.seq + 1, problem: 'record_missing' });
  else if (row.chain_prev !== prev.hash) problems.push({ chain, seq, problem: 'chain_rewritten' });
  // A record the archive holds and its check read already comes as its link alone.
  if (row.prechecked !== true && chainHash(row) !== row.chain_hash)
    problems.push({ chain, seq, problem: 'record_changed' });
  return { seq, hash: row.chain_hash as string, records: prev.records + 1 };
}

/**
 * Every decision-time chain's records, checked link by link in chain order, whatever order they are given
 * in: records reach D1 (and the archive) in the order of their arrival, and a queue delivers a message that
 * failed once after the ones behind it. A record that comes before the one it follows waits for it; whatever
 * still waits when the scan is over follows a record that never came (`record_missing`), and is then
 * checked in order.
 */
/** A record's place in its chain: its number, its hash, and the hash of the record before it. */
export interface ChainLink {
  seq: number;
  hash: string;
  prev: string;
}

export class ChainLinks {
  readonly #states = new Map<string, ChainState>();
  readonly #early = new Map<string, Map<number, Row>>();
  readonly #problems: ChainProblem[];
  readonly #watched: ReadonlyMap<string, ChainHead>;
  /** The hash each chain's record had at its watched position, once the scan passed it. */
  readonly seen = new Map<string, string>();

  /**
   * @param from where each chain starts (the archive's heads), none for a chain from its first record
   * @param watched a position per chain whose record's hash the caller wants ({@link seen})
   */
  constructor(
    problems: ChainProblem[],
    from: Record<string, ChainHead> = {},
    watched: ReadonlyMap<string, ChainHead> = new Map(),
    ahead: Record<string, ChainLink[]> = {},
  ) {
    this.#problems = problems;
    this.#watched = watched;
    for (const [chain, at] of Object.entries(from)) this.#set(chain, { ...at, records: 0 });
    for (const [chain, links] of Object.entries(ahead)) {
      for (const link of links) {
        this.add({
          seq: 0,
          chain,
          chain_seq: link.seq,
          chain_hash: link.hash,
          chain_prev: link.prev,
          prechecked: true,
        });
      }
    }
  }

  #set(chain: string, state: ChainState): void {
    this.#states.set(chain, state);
    if (this.#watched.get(chain)?.seq === state.seq) this.seen.set(chain, state.hash);
  }

  /** Checks `row` (and what waited for it), or keeps it until the record it follows comes. */
  add(row: Row): void {
    const chain = row.chain as string;
    const state = this.#states.get(chain) ?? { seq: 0, hash: GENESIS, records: 0 };
    const seq = row.chain_seq as number;
    if (seq > state.seq + 1) {
      const early = this.#early.get(chain) ?? new Map<number, Row>();
      if (early.has(seq)) this.#problems.push({ chain, seq, problem: 'unknown_record' });
      else early.set(seq, row);
      this.#early.set(chain, early);
      return;
    }
    this.#link(chain, row);
  }

  #link(chain: string, row: Row): void {
    let state = checkLink(row, this.#states.get(chain), this.#problems);
    this.#set(chain, state);
    const early = this.#early.get(chain);
    for (let next = early?.get(state.seq + 1); next !== undefined; next = early?.get(state.seq + 1)) {
      early?.delete(state.seq + 1);
      state = checkLink(next, state, this.#problems);
      this.#set(chain, state);
    }
  }

  /** The records that wait for one before them, by chain: their links, to carry on to a later scan. */
  pending(): Record<string, ChainLink[]> {
    const out: Record<string, ChainLink[]> = {};
    for (const [chain, early] of this.#early) {
      if (early.size === 0) continue;
      out[chain] = [...early.values()]
        .map((row) => ({
          seq: row.chain_seq as number,
          hash: row.chain_hash as string,
          prev: row.chain_prev as string,
        }))
        .sort((a, b) => a.seq - b.seq);
    }
    return out;
  }

  /** Every chain as far as it is linked without a gap so far (what waits for a missing record is not in it). */
  heads(): ReadonlyMap<string, ChainState> {
    return this.#states;
  }

  /** Ends the scan: what still waits follows a record that never came. Every chain's state. */
  finish(): ReadonlyMap<string, ChainState> {
    for (const [chain, early] of this.#early) {
      for (const seq of [...early.keys()].sort((a, b) => a - b)) {
        const row = early.get(seq);
        if (row === undefined) continue;
        early.delete(seq);
        this.#link(chain, row);
      }
    }
    this.#early.clear();
    return this.#states;
  }
}

/** Compares each chain as D1 holds it with what its object says: nothing lost at the end, nothing added. */
function checkHeads(
  found: ReadonlyMap<string, ChainState>,
  ackedHashes: ReadonlyMap<string, string>,
  objects: ReadonlyMap<string, ObjectHeads>,
  problems: ChainProblem[],
): void {
  for (const [chain, heads] of objects) {
    const state = found.get(chain);
    const last = state?.seq ?? 0;
    if (last > heads.head.seq) problems.push({ chain, seq: heads.head.seq + 1, problem: 'unknown_record' });
    if (heads.acked.seq === 0) continue;
    if (last < heads.acked.seq) problems.push({ chain, seq: last + 1, problem: 'record_missing' });
    else if (ackedHashes.get(chain) !== heads.acked.hash)
      problems.push({ chain, seq: heads.acked.seq, problem: 'head_mismatch' });
  }
}

/**
 * Recomputes the whole seal chain up to `head` from the records and compares it with the seals and the head;
 * in the same pass, checks every decision-time chain record by record, and against what its object anchored
 * (`objects`: the chains' heads, read before the check).
 */
export async function verifyChain(
  db: D1Database,
  head: ChainHead,
  objects: ChainObjects = { acked: new Map(), heads: async () => new Map() },
  from: VerifyStart = {},
  maxProblems = 20,
): Promise<ChainReport> {
  const problems: ChainProblem[] = [...(from.problems ?? [])];
  const links = new ChainLinks(problems, from.chains, objects.acked, from.ahead);
  let prev = from.seal?.hash ?? GENESIS;
  let seq = from.seal?.seq ?? 0;
  let records = from.records ?? 0;
  // Seals cover the records up to the sealed head; the decision-time chains cover every record in D1.
  while (problems.length < maxProblems) {
    const rows = await recordsAfter(db, seq);
    const last = rows.at(-1);
    if (last === undefined) break;
    const sealedUpTo = Math.min(last.seq, head.seq);
    const seals = seq < sealedUpTo ? await sealsBetween(db, seq, sealedUpTo) : new Map<number, SealRow>();
    for (const [sealed] of seals) {
      if (!rows.some((row) => row.seq === sealed)) problems.push({ seq: sealed, problem: 'record_missing' });
    }
    for (const row of rows) {
      if (row.seq <= head.seq) {
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
      if (typeof row.chain === 'string') links.add(row);
    }
    seq = last.seq;
  }
  if (problems.length === 0 && prev !== head.hash) problems.push({ seq: head.seq, problem: 'head_mismatch' });
  const chains = links.finish();
  if (problems.length < maxProblems) {
    const heads = await objects.heads();
    const both = new Map(
      [...new Set([...heads.keys(), ...objects.acked.keys()])].map((chain) => [
        chain,
        { head: heads.get(chain) ?? EMPTY_HEAD, acked: objects.acked.get(chain) ?? EMPTY_HEAD },
      ]),
    );
    checkHeads(chains, links.seen, both, problems);
  }
  const chained = [...chains.values()].reduce((sum, state) => sum + state.records, 0) + (from.chainRecords ?? 0);
  return {
    valid: problems.length === 0,
    records,
    head,
    chains: { checked: new Set([...chains.keys(), ...objects.acked.keys()]).size, records: chained },
    archive: { segments: from.segments ?? 0, records: from.archivedRecords ?? 0 },
    problems: problems.slice(0, maxProblems),
  };
}

/**
 * Where a check of D1 starts when older records are in the archive: the seal chain and every decision-time
 * chain as the archive leaves them, with what checking the archive found and counted.
 */
export interface VerifyStart {
  seal?: ChainHead;
  chains?: Record<string, ChainHead>;
  /** Records the archive holds past a gap in their chain (a record before them reached D1 after them). */
  ahead?: Record<string, ChainLink[]>;
  problems?: ChainProblem[];
  /** Records whose seals were checked in the archive, and their decision-time chains' records. */
  records?: number;
  chainRecords?: number;
  segments?: number;
  archivedRecords?: number;
}
