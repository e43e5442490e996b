/**
 * Every way a token dies changes its entry in its status list, read through `GET /status/:list` and decoded
 * as a verifier would: a revoke (the holder's and an admin's), a task finished or revoked, the agent revoked,
 * suspended and resumed; and nothing is lost when the agent's object is evicted.
 */
import { exports } from 'cloudflare:workers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LIST_CAPACITY, STATUS } from '../../worker/core/status-list';
import { agentObject, evictAgentObject } from '../helpers/agent-object';
import { useForwardClock } from '../helpers/clock';
import { DEMO_AGENT, ISSUER } from '../helpers/demo';
import { postJsonTo } from '../helpers/requests';
import { issue } from '../helpers/tokens';
import { adminPost, entryOf, forgetCached, readList, statusOf } from './list';

const clock = useForwardClock();

beforeEach(async () => {
  await evictAgentObject();
});

const admin = adminPost;

describe('the status claim', () => {
  it('names an entry of a list the broker serves, VALID while the token lives', async () => {
    const { token } = await issue();
    const entry = entryOf(token);
    expect(entry.uri).toMatch(new RegExp(`^${ISSUER}/status/sl-\\d+-\\d+$`));
    expect(Number.isInteger(entry.idx) && entry.idx >= 0).toBe(true);
    expect(await statusOf(token)).toBe(STATUS.VALID);
  });

  it('gives every token its own index', async () => {
    const entries = new Set<string>();
    for (let i = 0; i < 20; i += 1) {
      const { list, idx } = entryOf((await issue()).token);
      entries.add(`${list}#${idx}`);
    }
    expect(entries.size).toBe(20);
  });

  // A verifier keeps a list for its ttl while isolates go on taking blocks of indexes from it: a token minted
  // meanwhile must find its entry on the list it holds, not an index past its end.
  it('serves every index its generation can hand out, so a list cached before a token was minted covers it', async () => {
    const { list } = entryOf((await issue()).token);
    const { statuses } = await readList(list);
    expect(statuses.length).toBe(LIST_CAPACITY);
    expect(statuses.every((status) => status === STATUS.VALID)).toBe(true);
  });
});

describe('a token dies: its entry reads INVALID', () => {
  it('POST /revoke', async () => {
    const revoked = await issue('task-status-revoke');
    const sibling = await issue('task-status-revoke');
    expect((await postJsonTo('/revoke', { token: revoked.token })).status).toBe(200);
    expect(await statusOf(revoked.token)).toBe(STATUS.INVALID);
    expect(await statusOf(sibling.token)).toBe(STATUS.VALID);
  });

  it("an admin's token revoke", async () => {
    const revoked = await issue();
    expect((await admin(`/admin/tokens/${revoked.jti}/revoke`)).status).toBe(200);
    expect(await statusOf(revoked.token)).toBe(STATUS.INVALID);
  });

  it('a task completed by its agent: every token of it, no other', async () => {
    const first = await issue('task-status-complete');
    const second = await issue('task-status-complete');
    const other = await issue();
    const response = await postJsonTo(
      '/tasks/task-status-complete/complete',
      {},
      { authorization: `Bearer ${first.token}` },
    );
    expect(response.status).toBe(200);
    expect(await statusOf(first.token)).toBe(STATUS.INVALID);
    expect(await statusOf(second.token)).toBe(STATUS.INVALID);
    expect(await statusOf(other.token)).toBe(STATUS.VALID);
  });

  it("an admin's task revoke", async () => {
    const held = await issue('task-status-admin');
    expect((await admin('/admin/tasks/task-status-admin/revoke')).status).toBe(200);
    expect(await statusOf(held.token)).toBe(STATUS.INVALID);
  });

  it("the agent's object evicted between the grant and the revoke loses nothing", async () => {
    const held = await issue();
    await evictAgentObject();
    expect((await postJsonTo('/revoke', { token: held.token })).status).toBe(200);
    expect(await statusOf(held.token)).toBe(STATUS.INVALID);
  });
});

describe('the agent revoked, suspended, resumed', () => {
  afterEach(async () => {
    if ((await agentObject().status()).suspended) {
      expect((await admin(`/admin/agents/${DEMO_AGENT}/resume`, 'test cleanup')).status).toBe(200);
    }
  });

  it('revoke: every token it admitted before reads INVALID, one admitted after VALID', async () => {
    const first = await issue();
    const second = await issue();
    expect((await admin(`/admin/agents/${DEMO_AGENT}/revoke`)).status).toBe(200);
    clock.advance(2);
    const after = await issue();
    expect(await statusOf(first.token)).toBe(STATUS.INVALID);
    expect(await statusOf(second.token)).toBe(STATUS.INVALID);
    expect(await statusOf(after.token)).toBe(STATUS.VALID);
  });

  it('suspend: live tokens read SUSPENDED, a revoked one stays INVALID', async () => {
    const held = await issue();
    const revoked = await issue();
    expect((await postJsonTo('/revoke', { token: revoked.token })).status).toBe(200);
    expect((await admin(`/admin/agents/${DEMO_AGENT}/suspend`)).status).toBe(200);
    expect(await statusOf(held.token)).toBe(STATUS.SUSPENDED);
    expect(await statusOf(revoked.token)).toBe(STATUS.INVALID);
  });

  it('resume: a token held through the suspension reads VALID again, one revoked meanwhile INVALID', async () => {
    const held = await issue();
    const revoked = await issue();
    expect((await admin(`/admin/agents/${DEMO_AGENT}/suspend`)).status).toBe(200);
    expect((await postJsonTo('/revoke', { token: revoked.token })).status).toBe(200);
    expect((await admin(`/admin/agents/${DEMO_AGENT}/resume`, 'false alarm')).status).toBe(200);
    expect(await statusOf(held.token)).toBe(STATUS.VALID);
    expect(await statusOf(revoked.token)).toBe(STATUS.INVALID);
    clock.advance(2);
    const after = await issue();
    expect(await statusOf(after.token)).toBe(STATUS.VALID);
  });

  it('revoke with suspend: every token reads INVALID, and stays so after resume', async () => {
    const held = await issue();
    expect((await admin(`/admin/agents/${DEMO_AGENT}/revoke`, 'INC-7', { suspend: true })).status).toBe(200);
    expect(await statusOf(held.token)).toBe(STATUS.INVALID);
    expect((await admin(`/admin/agents/${DEMO_AGENT}/resume`, 'contained')).status).toBe(200);
    expect(await statusOf(held.token)).toBe(STATUS.INVALID);
  });
});

describe('the edge cache', () => {
  it('serves the same copy for a second (s-maxage), then the change; a verifier keeps it one ttl (max-age)', async () => {
    const held = await issue();
    const { list, idx } = entryOf(held.token);
    await forgetCached(list);
    const response = await exports.default.fetch(`${ISSUER}/status/${list}`);
    expect(response.headers.get('cache-control')).toBe('public, max-age=60, s-maxage=1');
    await forgetCached(list);
    const first = await readList(list);
    expect(first.payload.ttl).toBe(60);
    expect((first.payload.exp as number) - (first.payload.iat as number)).toBe(120);
    // The cache is written in the background (waitUntil): give it a moment.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await postJsonTo('/revoke', { token: held.token })).status).toBe(200);
    const cached = await readList(list);
    expect(cached.statuses[idx]).toBe(STATUS.VALID);
    expect(cached.payload.iat).toBe(first.payload.iat);
    // The colo keeps a copy one second (s-maxage), in real time: then the next read is the list as it is.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const fresh = await readList(list);
    expect(fresh.statuses[idx]).toBe(STATUS.INVALID);
  });
});
