/** An isolate's blocks of status list indexes (`stores/status-lists.ts`), with a fake shard. */
import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../worker/core/errors';
import { BLOCK_LIFETIME_MS, type IndexBlock } from '../../worker/status/status-list';
import { IndexBlocks } from '../../worker/stores/status-lists';

/** A fake shard handing out blocks of `size` in order, as the real one does. */
function fakeShard(size: number) {
  let next = 0;
  const calls: number[] = [];
  return {
    calls,
    reserve: async (): Promise<IndexBlock> => {
      calls.push(next);
      const block = { list: 'sl-0-0', start: next, count: size };
      next += size;
      return block;
    },
  };
}

describe('IndexBlocks', () => {
  it('hands out every index once, across blocks, renewing in the background', async () => {
    const shard = fakeShard(4);
    const background: Promise<unknown>[] = [];
    const blocks = new IndexBlocks({ reserve: shard.reserve, deadlineMs: 1000 });
    const taken: number[] = [];
    for (let i = 0; i < 50; i += 1) {
      await blocks.ready((work) => background.push(work));
      taken.push((await blocks.take((work) => background.push(work))).idx);
      await Promise.all(background);
    }
    expect(new Set(taken).size).toBe(50);
    expect(background.length).toBeGreaterThan(0);
  });

  it('gives concurrent requests distinct indexes', async () => {
    const shard = fakeShard(8);
    const blocks = new IndexBlocks({ reserve: shard.reserve, deadlineMs: 1000 });
    const taken = await Promise.all(Array.from({ length: 40 }, () => blocks.take(() => undefined)));
    expect(new Set(taken.map((entry) => entry.idx)).size).toBe(40);
  });

  it('refuses with store_unavailable when a reserve does not answer within the deadline, and recovers', async () => {
    let answer = false;
    const shard = fakeShard(4);
    const blocks = new IndexBlocks({
      reserve: () => (answer ? shard.reserve() : new Promise<never>(() => undefined)),
      deadlineMs: 50,
    });
    const refused = await blocks.ready(() => undefined).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BrokerError);
    expect((refused as BrokerError).reason).toBe('store_unavailable');
    answer = true;
    expect(await blocks.take(() => undefined)).toEqual({ list: 'sl-0-0', idx: 0 });
  });

  it('hands out no index past its block’s lifetime, counted from just before the block was asked for', async () => {
    const shard = fakeShard(1024);
    let now = Date.now();
    const blocks = new IndexBlocks({ reserve: shard.reserve, deadlineMs: 1000, now: () => now });
    expect(await blocks.take(() => undefined)).toEqual({ list: 'sl-0-0', idx: 0 });
    now += BLOCK_LIFETIME_MS - 1;
    expect(await blocks.take(() => undefined)).toEqual({ list: 'sl-0-0', idx: 1 });
    now += 1;
    // An isolate idle past the lifetime: the rest of the block is let go, and a request waits for a new one.
    expect((await blocks.ready(() => undefined)).roundTripMs).toBeTypeOf('number');
    expect(await blocks.take(() => undefined)).toEqual({ list: 'sl-0-0', idx: 1024 });
    expect(shard.calls).toEqual([0, 1024]);
  });

  it('renews in the background as its block’s lifetime nears its end, so a busy isolate never waits', async () => {
    const shard = fakeShard(1024);
    let now = Date.now();
    const blocks = new IndexBlocks({ reserve: shard.reserve, deadlineMs: 1000, now: () => now });
    await blocks.take(() => undefined);
    const background: Promise<unknown>[] = [];
    now += BLOCK_LIFETIME_MS - 60_000;
    expect(await blocks.ready((work) => background.push(work))).toEqual({});
    expect(background).toHaveLength(1);
    await Promise.all(background);
    now += 60_000;
    expect(await blocks.ready(() => undefined)).toEqual({});
    expect(await blocks.take(() => undefined)).toEqual({ list: 'sl-0-0', idx: 1024 });
    expect(shard.calls).toEqual([0, 1024]);
  });

  it('says when a request waited for a reserve (a round trip in series), and not when the block was held', async () => {
    const blocks = new IndexBlocks({ reserve: fakeShard(1024).reserve, deadlineMs: 1000 });
    expect((await blocks.ready(() => undefined)).roundTripMs).toBeTypeOf('number');
    await blocks.take(() => undefined);
    expect(await blocks.ready(() => undefined)).toEqual({});
  });
});
