/**
 * The status lists' objects (draft-ietf-oauth-status-list): {@link STATUS_LIST_SHARDS} shards, each a
 * `StatusList` object holding the lists of its generations. A list is `sl-<shard>-<generation>` and holds at
 * most {@link LIST_CAPACITY} entries; isolates reserve blocks of indexes from a shard they pick at random
 * (`stores/status-lists.ts`), so no object sees every token and a token costs the shard nothing. A block is
 * handed out once: an index is never reused within a list, and a block an isolate never used is simply left
 * VALID and unused. When a generation cannot take a whole block, the next starts (a new list, a new URI).
 *
 * Only entries that are not VALID are stored, one row each: a list of 300,000 tokens with 1 % revoked is
 * 3,000 rows, and its bits are built on a read. INVALID is final: no flip turns it back.
 */
import { LIST_CAPACITY } from '../core/status-list';
import { MeteredObject } from '../durable/meter';
import { migrate } from '../durable/sql-schema';

/** Shards: each takes the reserves of a sixteenth of the isolates, and the flips of their tokens. */
export const STATUS_LIST_SHARDS = 16;

/** VALID, INVALID, SUSPENDED: the draft's 0x00, 0x01, 0x02 (§7.1), the only statuses Tessera writes. */
export type EntryStatus = 0 | 1 | 2;

/** One entry to change: `idx` of the list `list`. */
export type StatusFlip = {
  list: string;
  idx: number;
  status: EntryStatus;
};

/** A block of indexes reserved for one isolate: `start` … `start + count - 1` of `list`. */
export interface IndexBlock {
  list: string;
  start: number;
  count: number;
}

/** What a list holds: how many entries were handed out, and those that are not VALID. */
export interface ListEntries {
  /** Entries in the list as served: every index its generation can ever hand out. */
  size: number;
  /** Every entry that is not VALID. */
  changed: { idx: number; status: EntryStatus }[];
}

const SCHEMA: readonly string[] = [
  `CREATE TABLE lists (generation INTEGER PRIMARY KEY, allocated INTEGER NOT NULL);
   CREATE TABLE entries (generation INTEGER NOT NULL, idx INTEGER NOT NULL, status INTEGER NOT NULL,
     PRIMARY KEY (generation, idx)) WITHOUT ROWID;`,
];

/** `sl-<shard>-<generation>`, or undefined when `list` is not one of Tessera's list ids. */
export function parseListId(list: string): { shard: number; generation: number } | undefined {
  const match = /^sl-(\d{1,2})-(\d{1,6})$/.exec(list);
  if (match === null) return undefined;
  const shard = Number(match[1]);
  const generation = Number(match[2]);
  if (shard >= STATUS_LIST_SHARDS) return undefined;
  return { shard, generation };
}

export function listId(shard: number, generation: number): string {
  return `sl-${shard}-${generation}`;
}

/** The stub of shard `shard`: what isolates reserve from, agents' objects flip in, the route reads. */
export function statusShardStub(env: Env, shard: number): DurableObjectStub<StatusList> {
  return env.STATUS_LISTS.get(env.STATUS_LISTS.idFromName(`status-shard-${shard}`));
}

/** One shard's lists. Every change is written before it is acknowledged; reads are one query. */
export class StatusList extends MeteredObject {
  readonly #sql: SqlStorage;
  readonly #shard: number;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const name = ctx.id.name;
    const shard = name === undefined ? Number.NaN : Number(/^status-shard-(\d+)$/.exec(name)?.[1]);
    if (!Number.isInteger(shard)) throw new Error('StatusList objects are addressed as status-shard-<n>');
    this.#shard = shard;
    this.#sql = this.ctx.storage.sql;
    migrate(this.#sql, SCHEMA);
  }

  /**
   * Reserves `count` indexes never handed out before, from the newest generation, or from a new one when it
   * cannot take them all.
   */
  async reserve(count: number): Promise<IndexBlock> {
    if (!Number.isInteger(count) || count < 1 || count > LIST_CAPACITY) throw new TypeError('a block is 1 … 2^20');
    const newest = this.#sql
      .exec<{ generation: number; allocated: number }>(
        'SELECT generation, allocated FROM lists ORDER BY generation DESC LIMIT 1',
      )
      .toArray()[0];
    const fits = newest !== undefined && newest.allocated + count <= LIST_CAPACITY;
    const generation = newest === undefined ? 0 : fits ? newest.generation : newest.generation + 1;
    const start = fits ? newest.allocated : 0;
    this.#sql.exec('INSERT OR REPLACE INTO lists (generation, allocated) VALUES (?, ?)', generation, start + count);
    return { list: listId(this.#shard, generation), start, count };
  }

  /**
   * Sets entries of this shard's lists. INVALID is final; VALID clears only a SUSPENDED entry; an index
   * never handed out is ignored (no list grows from a flip).
   */
  async flip(flips: StatusFlip[]): Promise<number> {
    let changed = 0;
    for (const { list, idx, status } of flips) {
      const parsed = parseListId(list);
      if (parsed === undefined || parsed.shard !== this.#shard) continue;
      const { generation } = parsed;
      const size = this.#size(generation);
      if (size === undefined || !Number.isInteger(idx) || idx < 0 || idx >= size) continue;
      const cursor =
        status === 0
          ? this.#sql.exec('DELETE FROM entries WHERE generation = ? AND idx = ? AND status = 2', generation, idx)
          : this.#sql.exec(
              `INSERT INTO entries (generation, idx, status) VALUES (?1, ?2, ?3)
               ON CONFLICT (generation, idx) DO UPDATE SET status = ?3 WHERE entries.status != 1 AND entries.status != ?3`,
              generation,
              idx,
              status,
            );
      changed += cursor.rowsWritten > 0 ? 1 : 0;
    }
    return changed;
  }

  /** The ids of the lists this shard has started, oldest first. */
  async lists(): Promise<string[]> {
    return this.#sql
      .exec<{ generation: number }>('SELECT generation FROM lists ORDER BY generation')
      .toArray()
      .map((row) => listId(this.#shard, row.generation));
  }

  /** The entries of list `list`, or undefined when this shard never started it. */
  async entries(list: string): Promise<ListEntries | undefined> {
    const parsed = parseListId(list);
    if (parsed === undefined || parsed.shard !== this.#shard) return undefined;
    if (this.#size(parsed.generation) === undefined) return undefined;
    const changed = this.#sql
      .exec<{ idx: number; status: EntryStatus }>(
        'SELECT idx, status FROM entries WHERE generation = ? ORDER BY idx',
        parsed.generation,
      )
      .toArray();
    // The whole generation, not what is handed out so far: a verifier (or the colo's cache) keeps a list for
    // its ttl while isolates go on taking blocks from it, and a token minted meanwhile must find its entry
    // there (VALID) rather than an index past the list's end. Entries never handed out are VALID and
    // compress to almost nothing.
    return { size: LIST_CAPACITY, changed };
  }

  #size(generation: number): number | undefined {
    return this.#sql
      .exec<{ allocated: number }>('SELECT allocated FROM lists WHERE generation = ?', generation)
      .toArray()[0]?.allocated;
  }
}
