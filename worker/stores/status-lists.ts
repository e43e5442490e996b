/**
 * The status lists as the worker sees them: a block of indexes per isolate, reserved from one shard picked
 * at random (as the kill-switch lease reads one shard), renewed in the background before it runs out, so a
 * token takes its index from memory; the flips an agent's object sends; the entries the route serves. Names
 * the `STATUS_LISTS` binding through `status/status-list.ts`; every call is bounded and a call that fails or
 * does not answer is `store_unavailable` (503).
 */
import {
  BLOCK_LIFETIME_MS,
  type IndexBlock,
  type ListEntries,
  parseListId,
  STATUS_LIST_SHARDS,
  statusShardStub,
} from '../status/status-list';
import { callStore } from './call';
import type { InBackground } from './kill-switch';

/** Indexes an isolate reserves at once: one reserve per this many tokens. */
export const BLOCK_SIZE = 1024;
/** A new block is reserved in the background once fewer than this many are left. */
const RENEW_BELOW = 256;
/** … or once the block in use has less than this much of its lifetime left. */
const RENEW_BEFORE_MS = 5 * 60_000;

/** An index of a list: the token's `status.status_list` once the list's URI is known. */
export interface StatusEntry {
  list: string;
  idx: number;
}

export interface IndexBlockOptions {
  /** Reserves a block from the isolate's shard. */
  reserve(): Promise<IndexBlock>;
  /** How long a request waits for a reserve it needs before refusing. */
  deadlineMs: number;
  /** The time, in epoch ms (`Date.now` unless a test says otherwise). */
  now?: () => number;
}

/** A block in hand: used until `until` (epoch ms), {@link BLOCK_LIFETIME_MS} from just before it was asked for. */
interface HeldBlock {
  block: IndexBlock;
  until: number;
}

/**
 * An isolate's indexes: the block it takes from, and the next one, reserved in the background while a
 * quarter of the current is left or its lifetime nears its end. A request waits for a reserve only when the
 * isolate holds none it may still use (a cold isolate, an isolate idle past its block's lifetime, or a
 * background reserve that failed), and then in parallel with the kill-switch lease.
 */
export class IndexBlocks {
  readonly #options: IndexBlockOptions;
  readonly #now: () => number;
  #current: (HeldBlock & { next: number }) | undefined;
  #spare: HeldBlock | undefined;
  #reserving: Promise<void> | undefined;

  constructor(options: IndexBlockOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Lets go of the blocks past their lifetime: their unused indexes stay VALID, and no token names them. */
  #dropExpired(): void {
    const now = this.#now();
    if (this.#current !== undefined && this.#current.until <= now) this.#current = undefined;
    if (this.#spare !== undefined && this.#spare.until <= now) this.#spare = undefined;
  }

  /** Indexes left in hand that may still be used, the spare block's included. */
  get left(): number {
    this.#dropExpired();
    const current = this.#current === undefined ? 0 : this.#current.block.count - this.#current.next;
    return current + (this.#spare?.block.count ?? 0);
  }

  /**
   * Resolves once an index can be taken without waiting, with the round trip it took when the isolate held
   * none; starts a background reserve when few are left.
   *
   * @throws {BrokerError} `store_unavailable` when the isolate holds none and the shard does not answer.
   */
  async ready(background: InBackground): Promise<{ roundTripMs?: number }> {
    const left = this.left;
    if (left === 0) {
      const asked = performance.now();
      await this.#reserve();
      return { roundTripMs: performance.now() - asked };
    }
    const ending = this.#current !== undefined && this.#current.until - this.#now() < RENEW_BEFORE_MS;
    if ((left < RENEW_BELOW || ending) && this.#reserving === undefined && this.#spare === undefined) {
      background(
        this.#reserve().catch((error: unknown) => console.error('status lists: background reserve failed', error)),
      );
    }
    return {};
  }

  /**
   * The next index, never handed out before.
   *
   * @throws {BrokerError} `store_unavailable` when none is left and the shard does not answer.
   */
  async take(background: InBackground): Promise<StatusEntry> {
    await this.ready(background);
    for (;;) {
      this.#dropExpired();
      const current = this.#current;
      if (current !== undefined && current.next < current.block.count) {
        const idx = current.block.start + current.next;
        current.next += 1;
        return { list: current.block.list, idx };
      }
      if (this.#spare !== undefined) {
        this.#current = { ...this.#spare, next: 0 };
        this.#spare = undefined;
      } else {
        // Requests that came together used the block up: they wait for the one reserve in flight.
        await this.#reserve();
      }
    }
  }

  /** Takes a reserved block in: as the current one when that is used up or past its lifetime, else as the spare. */
  #install(held: HeldBlock): void {
    const current = this.#current;
    if (current === undefined || current.next >= current.block.count || current.until <= this.#now()) {
      this.#current = { ...held, next: 0 };
    } else if (this.#spare === undefined) this.#spare = held;
    // A third block cannot come: one reserve runs at a time, and none starts while a spare is held.
  }

  /** The one reserve in flight, shared by every request that waits for it; its block installed once. */
  #reserve(): Promise<void> {
    if (this.#reserving === undefined) {
      const until = this.#now() + BLOCK_LIFETIME_MS;
      this.#reserving = callStore('status_list', () => this.#options.reserve(), this.#options.deadlineMs)
        .then((block) => this.#install({ block, until }))
        .finally(() => {
          this.#reserving = undefined;
        });
    }
    return this.#reserving;
  }
}

/** The shard this isolate reserves from. */
const SHARD = Math.floor(Math.random() * STATUS_LIST_SHARDS);
let isolateBlocks: IndexBlocks | undefined;

/** The isolate's blocks of indexes (see {@link IndexBlocks}), reserved from its shard. */
export function statusIndexes(env: Env, deadlineMs: number): IndexBlocks {
  isolateBlocks ??= new IndexBlocks({
    reserve: () => statusShardStub(env, SHARD).reserve(BLOCK_SIZE),
    deadlineMs,
  });
  return isolateBlocks;
}

/**
 * Every list the shards have started (the Status List Aggregation, draft-ietf-oauth-status-list §9), one
 * call per shard, in parallel.
 *
 * @throws {BrokerError} `store_unavailable` when a shard fails or does not answer.
 */
export async function allStatusLists(env: Env): Promise<string[]> {
  const shards = Array.from({ length: STATUS_LIST_SHARDS }, (_, shard) =>
    callStore('status_list', () => statusShardStub(env, shard).lists()),
  );
  return (await Promise.all(shards)).flat();
}

/**
 * What list `list` holds, or undefined when it is not a list Tessera started.
 *
 * @throws {BrokerError} `store_unavailable` when its shard fails or does not answer.
 */
export async function statusListEntries(env: Env, list: string): Promise<ListEntries | undefined> {
  const parsed = parseListId(list);
  if (parsed === undefined) return undefined;
  return callStore('status_list', () => statusShardStub(env, parsed.shard).entries(list));
}
