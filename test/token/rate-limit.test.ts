/**
 * The per-agent rate limit on `POST /token`: a token bucket (policy default 120/min, burst 20) kept in the
 * agent's Durable Object memory. Past the burst the agent gets 429 `slow_down` with an honest
 * `Retry-After`; a refused request is audited and does not use up its attestation.
 *
 * Every test runs on a frozen clock (the bucket refills only when a test moves it) and starts with a full
 * bucket: the agent's object is evicted, which drops its memory and keeps its storage.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { loadedPolicy } from '../../worker/policy/loaded';
import { admissionCall, admit, agentObject, evictAgentObject } from '../helpers/agent-object';
import { attestation } from '../helpers/attestation';
import { lastAudit } from '../helpers/audit';
import { useForwardClock } from '../helpers/clock';
import { DEMO_AGENT } from '../helpers/demo';
import { exchange, exchangeFields, expectError, postJson, readError } from '../helpers/requests';

const { perMinute, burst } = loadedPolicy().bundle.settings.rateLimit;

const clock = useForwardClock();

beforeEach(async () => {
  await evictAgentObject();
});

/** Sends `count` valid exchanges one after the other and returns their statuses. */
async function exchanges(count: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const response = await exchange();
    await response.arrayBuffer();
    statuses.push(response.status);
  }
  return statuses;
}

/** Takes the whole burst, checking every request of it passes. */
async function drain(): Promise<void> {
  expect(await exchanges(burst)).toEqual(Array(burst).fill(200));
}

/** Expects a 429 `slow_down` and returns its `Retry-After`, in seconds. */
async function expectSlowDown(response: Response): Promise<number> {
  await expectError(response, 429, 'slow_down');
  const retryAfter = response.headers.get('retry-after');
  expect(retryAfter).toMatch(/^[1-9][0-9]*$/);
  return Number(retryAfter);
}

describe('POST /token: the per-agent rate limit', () => {
  it('passes the burst and answers the next request with 429 slow_down and Retry-After', async () => {
    expect(burst).toBe(20);
    await drain();
    const retryAfter = await expectSlowDown(await exchange());
    // The bucket is empty; one request comes back after 60 / perMinute seconds, rounded up.
    expect(retryAfter).toBe(Math.ceil(60 / perMinute));
  });

  it('audits the refusal with its reason and issues nothing', async () => {
    await drain();
    const subject_token = await attestation();
    await expectSlowDown(await exchange({ subject_token }));
    const record = await lastAudit();
    expect(record).toMatchObject({
      event: 'token.exchange',
      decision: 'refused',
      errorCode: 'slow_down',
      reason: 'rate_limited',
      agent: DEMO_AGENT,
      tokenJti: null,
      grantedActions: null,
    });
    expect(JSON.parse(record.detail ?? '{}')).toMatchObject({ retryAfter: expect.any(Number) });
  });

  it('does not consume the attestation of a refused request: it passes once the agent has waited', async () => {
    await drain();
    const fields = await exchangeFields();
    const retryAfter = await expectSlowDown(await postJson(fields));

    clock.advance(retryAfter);
    const admitted = await postJson(fields);
    expect(admitted.status, await admitted.clone().text()).toBe(200);
    // Now it is used: the same attestation again is a replay.
    const replayed = await postJson(fields);
    expect(replayed.status).toBe(400);
    expect((await readError(replayed)).error).toBe('invalid_grant');
    expect(await lastAudit()).toMatchObject({ reason: 'replayed' });
  });

  it('admits an agent that waits Retry-After, however often it was refused before', async () => {
    await drain();
    let retryAfter = 0;
    for (let i = 0; i < 5; i += 1) retryAfter = await expectSlowDown(await exchange());
    clock.advance(retryAfter);
    expect((await exchange()).status).toBe(200);
  });

  it('refills at perMinute / 60 requests a second', async () => {
    await drain();
    clock.advance(1);
    const perSecond = perMinute / 60;
    expect(await exchanges(perSecond + 1)).toEqual([...Array(perSecond).fill(200), 429]);
  });

  it('never holds more than the burst, however long the agent was idle', async () => {
    await drain();
    clock.advance(120);
    expect(await exchanges(burst + 1)).toEqual([...Array(burst).fill(200), 429]);
  });

  it('starts a full bucket again after its object is evicted, and still remembers what is durable', async () => {
    const used = await exchangeFields();
    expect((await postJson(used)).status).toBe(200);
    expect(await exchanges(burst)).toEqual([...Array(burst - 1).fill(200), 429]);

    await evictAgentObject();

    // In memory, gone: a full bucket.
    expect(await exchanges(burst)).toEqual(Array(burst).fill(200));
    // In storage, kept: the used attestation is still a replay.
    const replayed = await postJson(used);
    expect(replayed.status).toBe(400);
    expect((await readError(replayed)).error).toBe('invalid_grant');
    expect(await lastAudit()).toMatchObject({ reason: 'replayed' });
  });
});

describe('AgentState.exchange: one bucket per agent', () => {
  const rateLimit = { perMinute: 60, burst: 2 };
  const admitTo = (name: string, key: string) =>
    admit(
      agentObject(name),
      admissionCall({
        replayKey: `issuer\n${key}`,
        replayUntil: Math.floor(clock.ms / 1000) + 300,
        taskId: 'task-rate',
        rateLimit,
      }),
    );

  it('refuses the request after the burst with rate_limited and a retry delay', async () => {
    expect(await admitTo('rate-a', 'a1')).toEqual({ outcome: 'granted' });
    expect(await admitTo('rate-a', 'a2')).toEqual({ outcome: 'granted' });
    expect(await admitTo('rate-a', 'a3')).toEqual({
      outcome: 'refused',
      refusal: { reason: 'rate_limited', retryAfter: 1 },
    });
  });

  it("leaves another agent's bucket untouched", async () => {
    await admitTo('rate-b', 'b1');
    await admitTo('rate-b', 'b2');
    expect(await admitTo('rate-b', 'b3')).toMatchObject({ outcome: 'refused', refusal: { reason: 'rate_limited' } });
    expect(await admitTo('rate-c', 'c1')).toEqual({ outcome: 'granted' });
    expect(await admitTo('rate-c', 'c2')).toEqual({ outcome: 'granted' });
  });

  it('does not record a refused attestation as used', async () => {
    await admitTo('rate-d', 'd1');
    await admitTo('rate-d', 'd2');
    expect(await admitTo('rate-d', 'd3')).toMatchObject({ outcome: 'refused', refusal: { reason: 'rate_limited' } });
    clock.advance(1);
    expect(await admitTo('rate-d', 'd3')).toEqual({ outcome: 'granted' });
    expect(await admitTo('rate-d', 'd3')).toEqual({ outcome: 'refused', refusal: { reason: 'replayed' } });
  });
});
