/**
 * The status lists' objects (draft-ietf-oauth-status-list): {@link STATUS_LIST_SHARDS} shards, each a
 * `StatusList` object holding the lists of its generations. A list is `sl-<shard>-<generation>` and holds at
 * most {@link LIST_CAPACITY} entries; isolates reserve blocks of indexes from a shard they pick at random
 * (`stores/status-lists.ts`), so no object sees every token and a token costs the shard nothing. A block is
 * handed out once: an index is never reused within a list, and a block an isolate never used is simply left
 * VALID and unused. When a generation cannot take a whole block, the next starts (a new list, a new URI).
 *
 * Only entries that are not VALID are stored, one row each: a list of 300,000 tokens with 1 % revoked is
 * 3,000 rows, and its bits are built on a read. INVALID is final: no flip turns it back. An isolate mints
 * from a block for {@link BLOCK_LIFETIME_MS} at most, so a generation closed long enough ago names only
 * expired tokens: the shard forgets it as it hands out the next block.
 */
import { LIST_CAPACITY } from '../core/status-list';
import { MeteredObject } from '../durable/meter';
import { migrate } from '../durable/sql-schema';
import { TTL_CEILING_SECONDS } from '../policy/bundle';

/** Shards: each takes the reserves of a sixteenth of the isolates, and the flips of their tokens. */
export const STATUS_LIST_SHARDS = 16;

/**
 * How long an isolate may mint from a block, from just before it asked for it (`stores/status-lists.ts`):
 * the bound that lets a shard know when no token can name a closed generation any more.
 */
export const BLOCK_LIFETIME_MS = 60 * 60_000;

/**
 * How long a generation is kept after the next one started: its last block may be used for
 * {@link BLOCK_LIFETIME_MS}, a token minted then lives at most the TTL ceiling, and 10 minutes cover the
 * clocks of isolates and shards. After that every token it names has expired, and it is forgotten.
 */
export const CLOSED_RETENTION_MS = BLOCK_LIFETIME_MS + TTL_CEILING_SECONDS * 1000 + 10 * 60_000;

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

/**
 * Schema steps. The second adds when each generation closed (the next one started): a generation closed
 * before it has none and is kept for good, since the isolates of then bounded no block's use.
 */
const SCHEMA: readonly string[] = [
  `CREATE TABLE lists (generation INTEGER PRIMARY KEY, allocated INTEGER NOT NULL);
   CREATE TABLE entries (generation INTEGER NOT NULL, idx INTEGER NOT NULL, status INTEGER NOT NULL,
     PRIMARY KEY (generation, idx)) WITHOUT ROWID;`,
  'ALTER TABLE lists ADD COLUMN closed_at INTEGER',
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
   * cannot take them all (closing the newest); forgets the generations closed longer ago than
   * {@link CLOSED_RETENTION_MS}, whose tokens have all expired.
   */
  async reserve(count: number): Promise<IndexBlock> {
    if (!Number.isInteger(count) || count < 1 || count > LIST_CAPACITY) throw new TypeError('a block is 1 … 2^20');
    const now = Date.now();
    const newest = this.#sql
      .exec<{ generation: number; allocated: number }>(
        'SELECT generation, allocated FROM lists ORDER BY generation DESC LIMIT 1',
      )
      .toArray()[0];
    const fits = newest !== undefined && newest.allocated + count <= LIST_CAPACITY;
    if (newest !== undefined && !fits) {
      this.#sql.exec('UPDATE lists SET closed_at = ? WHERE generation = ?', now, newest.generation);
    }
    const generation = newest === undefined ? 0 : fits ? newest.generation : newest.generation + 1;
    const start = fits ? newest.allocated : 0;
    this.#sql.exec(
      `INSERT INTO lists (generation, allocated) VALUES (?1, ?2)
       ON CONFLICT (generation) DO UPDATE SET allocated = ?2`,
      generation,
      start + count,
    );
    this.#forgetExpired(now);
    return { list: listId(this.#shard, generation), start, count };
  }

  /** Forgets every generation closed before `now` - {@link CLOSED_RETENTION_MS}: its entries, then its row. */
  #forgetExpired(now: number): void {
    const before = now - CLOSED_RETENTION_MS;
    this.#sql.exec(
      'DELETE FROM entries WHERE generation IN (SELECT generation FROM lists WHERE closed_at < ?)',
      before,
    );
    this.#sql.exec('DELETE FROM lists WHERE closed_at < ?', before);
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
