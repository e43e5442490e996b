/** The status lists' shards (`StatusList`) and `GET /status/:list`, read and decoded as a verifier would. */
import { evictDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LIST_CAPACITY, STATUS } from '../../worker/core/status-list';
import { CLOSED_RETENTION_MS, listId, statusShardStub } from '../../worker/status/status-list';
import { nowSeconds } from '../helpers/clock';
import { ISSUER } from '../helpers/demo';
import { readList } from './list';

const shard = (n: number) => statusShardStub(env, n);

describe('a status list shard', () => {
  it('hands out blocks that never overlap, and starts a new generation when one is full', async () => {
    const first = await shard(1).reserve(1024);
    const second = await shard(1).reserve(1024);
    expect(first).toEqual({ list: listId(1, 0), start: 0, count: 1024 });
    expect(second).toEqual({ list: listId(1, 0), start: 1024, count: 1024 });
    const rest = await shard(1).reserve(LIST_CAPACITY - 2048);
    expect(rest.start).toBe(2048);
    const next = await shard(1).reserve(10);
    expect(next).toEqual({ list: listId(1, 1), start: 0, count: 10 });
  });

  it('never turns INVALID back, and clears only SUSPENDED on VALID', async () => {
    const { list } = await shard(2).reserve(8);
    await shard(2).flip([
      { list, idx: 0, status: STATUS.INVALID },
      { list, idx: 1, status: STATUS.SUSPENDED },
      { list, idx: 2, status: STATUS.SUSPENDED },
    ]);
    await shard(2).flip([
      { list, idx: 0, status: STATUS.VALID },
      { list, idx: 0, status: STATUS.SUSPENDED },
      { list, idx: 1, status: STATUS.VALID },
      { list, idx: 2, status: STATUS.INVALID },
      // Never handed out: ignored.
      { list, idx: 8, status: STATUS.INVALID },
    ]);
    expect(await shard(2).entries(list)).toEqual({
      size: LIST_CAPACITY,
      changed: [
        { idx: 0, status: STATUS.INVALID },
        { idx: 2, status: STATUS.INVALID },
      ],
    });
  });

  it('loses nothing when evicted', async () => {
    const { list } = await shard(3).reserve(4);
    await shard(3).flip([{ list, idx: 3, status: STATUS.INVALID }]);
    await evictDurableObject(shard(3));
    expect(await shard(3).entries(list)).toEqual({
      size: LIST_CAPACITY,
      changed: [{ idx: 3, status: STATUS.INVALID }],
    });
    expect((await shard(3).reserve(4)).start).toBe(4);
  });
});

describe('a status list shard, as its generations age', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('forgets a generation once every token it can name has expired, and only then', async () => {
    const at = (ms: number) => {
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(ms);
    };
    const closedAt = Date.now() + 60_000;
    const full = await shard(5).reserve(LIST_CAPACITY);
    await shard(5).flip([{ list: full.list, idx: 7, status: STATUS.INVALID }]);
    at(closedAt);
    const next = await shard(5).reserve(4);
    expect(next.list).toBe(listId(5, 1));

    at(closedAt + CLOSED_RETENTION_MS - 1_000);
    await shard(5).reserve(4);
    expect(await shard(5).entries(full.list)).toEqual({ size: LIST_CAPACITY, changed: [{ idx: 7, status: 1 }] });

    at(closedAt + CLOSED_RETENTION_MS + 1_000);
    expect(await shard(5).reserve(4)).toEqual({ list: listId(5, 1), start: 8, count: 4 });
    expect(await shard(5).entries(full.list)).toBeUndefined();
    expect(await shard(5).lists()).toEqual([listId(5, 1)]);
    // A flip for it changes nothing, and the newest generation, however old, is kept.
    expect(await shard(5).flip([{ list: full.list, idx: 7, status: STATUS.INVALID }])).toBe(0);
    at(closedAt + 10 * CLOSED_RETENTION_MS);
    expect((await shard(5).reserve(4)).list).toBe(listId(5, 1));
    const response = await exports.default.fetch(`${ISSUER}/status/${full.list}`);
    expect(response.status).toBe(404);
  });
});

describe('GET /status/:list', () => {
  it('serves a signed status list token naming its own URI, with iat, exp and ttl', async () => {
    const { list } = await shard(4).reserve(5);
    await shard(4).flip([
      { list, idx: 1, status: STATUS.INVALID },
      { list, idx: 4, status: STATUS.SUSPENDED },
    ]);
    const { statuses, payload } = await readList(list);
    expect([...statuses.slice(0, 5)]).toEqual([0, 1, 0, 0, 2]);
    expect(payload.sub).toBe(`${ISSUER}/status/${list}`);
    expect(payload.ttl).toBe(60);
    expect(payload.iat).toBeGreaterThanOrEqual(nowSeconds() - 5);
    expect(payload.exp).toBeGreaterThan(payload.iat as number);
  });

  it('answers 404 for a list no shard started', async () => {
    for (const list of ['sl-5-9', 'sl-99-0', 'nope']) {
      const response = await exports.default.fetch(`${ISSUER}/status/${list}`);
      expect(response.status).toBe(404);
      expect((await response.json<{ error: string }>()).error).toBe('not_found');
    }
  });
});

describe('GET /status: the Status List Aggregation (§9)', () => {
  it('lists every list the shards started, and the metadata points at it', async () => {
    const { list } = await shard(6).reserve(1);
    const response = await exports.default.fetch(`${ISSUER}/status`);
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    const { status_lists } = await response.json<{ status_lists: string[] }>();
    expect(status_lists).toContain(`${ISSUER}/status/${list}`);
    const metadata = await (await exports.default.fetch(`${ISSUER}/.well-known/oauth-authorization-server`)).json<
      Record<string, unknown>
    >();
    expect(metadata.status_list_aggregation_endpoint).toBe(`${ISSUER}/status`);
  });
});
