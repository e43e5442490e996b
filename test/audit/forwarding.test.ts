/**
 * The record path: a decision's record commits in the object that decided it, chained, before the answer;
 * the object forwards its records to D1 in batches through the writer, off the request's path, keeps each
 * until D1 has it, and sends it again after a failure; D1 takes a record once however often it is sent.
 */
import {
  createExecutionContext,
  createMessageBatch,
  getQueueResult,
  runDurableObjectAlarm,
  runInDurableObject,
} from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it, type MockInstance, onTestFinished, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import type { AgentState } from '../../worker/agents/agent-state';
import { INTAKE_SHARDS, UNVERIFIED_SAMPLE } from '../../worker/audit/intake';
import { type ChainedRecord, chainHash, decideRecord, recordColumns } from '../../worker/audit/record';
import { retryDelaySeconds } from '../../worker/audit/writer';
import worker from '../../worker/index';
import { loadedPolicy } from '../../worker/policy/loaded';
import { adminFetch, bearer } from '../helpers/admin';
import { agentObject, evictAgentObject } from '../helpers/agent-object';
import { auditRecords, drainAudit } from '../helpers/audit';
import { expectConsole } from '../helpers/console';
import { DEMO_AGENT } from '../helpers/demo';
import { exchange, expectError } from '../helpers/requests';
import { issue } from '../helpers/tokens';

const intake = (shard: number) => env.AUDIT_INTAKE.get(env.AUDIT_INTAKE.idFromName(`intake-${shard}`));

/** Makes every D1 insert of audit records fail until `restore` is called. */
function failD1Inserts() {
  const prepare = env.AUDIT_DB.prepare.bind(env.AUDIT_DB);
  return vi.spyOn(env.AUDIT_DB, 'prepare').mockImplementation((query: string) => {
    if (/\binsert into audit_events\b/i.test(query)) throw new Error('D1 is down');
    return prepare(query);
  });
}

/** Checks the consumer warned that D1 refused records for `reason`, and warned of nothing else. */
function expectRefusedByD1(warned: MockInstance<(...data: unknown[]) => void>, reason: string): void {
  expect(warned).toHaveBeenCalled();
  for (const [line] of warned.mock.calls) {
    expect(line).toMatch(/^audit (batch of \d+ messages|message \S+) refused by D1\b/);
    expect(line).toContain(reason);
  }
}

/** The records waiting in the demo agent's object, oldest first. */
function outbox(): Promise<ChainedRecord[]> {
  return runInDurableObject(agentObject(), (_instance: AgentState, state) =>
    state.storage.sql
      .exec<{ record: string }>('SELECT record FROM audit_outbox ORDER BY chain_seq')
      .toArray()
      .map((row) => JSON.parse(row.record) as ChainedRecord),
  );
}

async function backlog() {
  const response = await adminFetch('/admin/audit/backlog', { headers: bearer(creds.auditor) });
  expect(response.status).toBe(200);
  return (await response.json()) as {
    waiting: number;
    oldest_waiting_seconds: number | null;
    chains: { chain: string; waiting: number; unconfirmed: number; failures: number; last_error: string | null }[];
    d1: { write_queries: number; records_written: number; retried_deliveries: number };
    dead_letters: { count: number; oldest_seconds: number | null };
  };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('a decision is recorded in its agent’s object before the answer', () => {
  it('holds the grant record, chained, in the object when the token arrives; D1 gets it when forwarded', async () => {
    await drainAudit();
    const { jti } = await issue();
    const waiting = await outbox();
    expect(waiting.map((record) => record.tokenJti)).toEqual([jti]);
    const [record] = waiting;
    expect(record).toMatchObject({ chain: `agent:${DEMO_AGENT}`, decision: 'granted', event: 'token.exchange' });
    expect(record?.chainHash).toBe(chainHash(recordColumns(record as ChainedRecord)));
    expect((await auditRecords()).filter((row) => row.tokenJti === jti)).toHaveLength(1);
    expect(await outbox()).toEqual([]);
  });

  it('chains the agent’s records: each names the hash of the one before, numbered without a gap', async () => {
    await issue();
    await issue();
    const rows = (await auditRecords()).filter((row) => row.chain === `agent:${DEMO_AGENT}`);
    expect(rows.length).toBeGreaterThanOrEqual(3);
    rows.forEach((row, i) => {
      if (i === 0) return;
      expect(row.chainSeq).toBe((rows[i - 1]?.chainSeq ?? 0) + 1);
      expect(row.chainPrev).toBe(rows[i - 1]?.chainHash);
    });
  });

  it('gives D1 the time each record arrived, after the decision', async () => {
    const { jti } = await issue();
    const [row] = (await auditRecords()).filter((record) => record.tokenJti === jti);
    expect(row?.storedAt).toBeGreaterThanOrEqual(row?.at ?? Number.POSITIVE_INFINITY);
  });
});

describe('a token’s record, handed back to the worker', () => {
  it('reaches D1 in its isolate’s batch, with the others handed over meanwhile, with no object sending it', async () => {
    await drainAudit();
    // The tests' worker has it off (vitest.config.ts): on for this test.
    env.AUDIT_HAND_OFF = 'on';
    onTestFinished(() => {
      env.AUDIT_HAND_OFF = 'off';
    });
    const sendBatch = vi.spyOn(env.AUDIT_QUEUE, 'sendBatch');
    const send = vi.spyOn(env.AUDIT_QUEUE, 'send');
    const [first, second] = await Promise.all([issue(), issue()]);
    const jtis = [first?.jti, second?.jti];
    await vi.waitFor(
      async () => {
        const { results } = await env.AUDIT_DB.prepare('SELECT token_jti AS jti FROM audit_events').all<{
          jti: string;
        }>();
        expect(results.map((row) => row.jti)).toEqual(expect.arrayContaining(jtis));
      },
      { timeout: 5000, interval: 20 },
    );
    expect(send).not.toHaveBeenCalled();
    const bodies = sendBatch.mock.calls.flatMap(([messages]) =>
      Array.from(messages, (message) => String(message.body)),
    );
    expect(bodies.filter((body) => jtis.every((jti) => body.includes(jti as string)))).toHaveLength(1);
    // The object keeps both until it sees D1 hold them.
    expect((await backlog()).chains.find((chain) => chain.chain === `agent:${DEMO_AGENT}`)).toMatchObject({
      waiting: 0,
      unconfirmed: 2,
    });
  });
});

describe('D1 down for a while', () => {
  it('keeps issuing tokens; the queue and the objects hold the records, which arrive once D1 is back, once each', async () => {
    await drainAudit();
    const warned = expectConsole('warn');
    const down = failD1Inserts();
    const jtis: string[] = [];
    for (let i = 0; i < 3; i += 1) jtis.push((await issue()).jti);
    expect(await agentObject().flushAudit()).toBe(true);
    // The consumer has tried D1 and been refused: the records are the queue's to deliver again.
    await vi.waitFor(() =>
      expect(down.mock.calls.some(([query]) => /insert into audit_events/i.test(query))).toBe(true),
    );
    const stuck = await backlog();
    const chain = stuck.chains.find((entry) => entry.chain === `agent:${DEMO_AGENT}`);
    expect(chain).toMatchObject({ waiting: 0, unconfirmed: 3 });
    expect((await outbox()).map((record) => record.tokenJti)).toEqual(expect.arrayContaining(jtis));

    down.mockRestore();
    const records = await auditRecords();
    for (const jti of jtis) expect(records.filter((record) => record.tokenJti === jti)).toHaveLength(1);
    expect(await outbox()).toEqual([]);
    // The queue delivers its refused messages again (after 1 s): adding nothing, counted as retried.
    await vi.waitFor(async () => expect((await backlog()).d1.retried_deliveries).toBeGreaterThan(0), {
      timeout: 10_000,
      interval: 200,
    });
    for (const jti of jtis) {
      const rows = await env.AUDIT_DB.prepare('SELECT COUNT(*) AS n FROM audit_events WHERE token_jti = ?')
        .bind(jti)
        .first<{ n: number }>();
      expect(rows?.n).toBe(1);
    }
    expectRefusedByD1(warned, 'D1 is down');
  });
});

describe('the queue unreachable', () => {
  it('keeps the records in their object, which sends them again, shows the failure, and backs off', async () => {
    await drainAudit();
    // The Worker's batch of /token records (off in the tests' worker): its failure is what the object covers.
    env.AUDIT_HAND_OFF = 'on';
    onTestFinished(() => {
      env.AUDIT_HAND_OFF = 'off';
    });
    const clock = vi.spyOn(Date, 'now');
    const send = vi.spyOn(env.AUDIT_QUEUE, 'send').mockRejectedValue(new Error('queue is down'));
    const sendBatch = vi.spyOn(env.AUDIT_QUEUE, 'sendBatch').mockRejectedValue(new Error('queue is down'));
    const { jti } = await issue();
    // The worker could not send the token's record: it waits in the agent's object.
    expect((await outbox()).map((record) => record.tokenJti)).toContain(jti);
    // A minute on, the object finds D1 without it and sends it itself, and that fails too.
    const later = Date.now() + 61_000;
    clock.mockImplementation(() => later);
    expect(await agentObject().flushAudit()).toBe(false);
    const stuck = await backlog();
    const chain = stuck.chains.find((entry) => entry.chain === `agent:${DEMO_AGENT}`);
    expect(chain).toMatchObject({ failures: 1 });
    expect(chain?.last_error).toContain('queue is down');

    const calls = send.mock.calls.length;
    await runDurableObjectAlarm(agentObject());
    // Backing off: the alarm does not try again at once.
    expect(send.mock.calls.length).toBe(calls);
    send.mockRestore();
    sendBatch.mockRestore();
    expect((await auditRecords()).filter((record) => record.tokenJti === jti)).toHaveLength(1);
    clock.mockRestore();
    expect(await outbox()).toEqual([]);
  });
});

describe('the queue’s consumer', () => {
  /** A message's body: `count` chained records of a chain of their own, as an object sends them. */
  function body(count: number, change: (record: ChainedRecord) => object = (record) => record): string {
    let prev = '0'.repeat(64);
    const chain = `test:${crypto.randomUUID()}`;
    const records = Array.from({ length: count }, (_, i) => {
      const decided = decideRecord(
        { at: Date.now(), event: 'test.redelivery', details: { i } },
        { decision: 'granted' },
        loadedPolicy().bundle.version,
      );
      const linked = { ...decided, chain, chainSeq: i + 1, chainPrev: prev, chainHash: '' };
      const hashed = { ...linked, chainHash: chainHash(recordColumns(linked)) };
      prev = hashed.chainHash;
      return change(hashed);
    });
    return JSON.stringify(records);
  }

  const idsOf = (bodies: string[]) =>
    new Set(bodies.flatMap((b) => (JSON.parse(b) as { id: string }[]).map((r) => r.id)));

  /** Runs the Worker's queue handler on `bodies` as one batch; what it acknowledged and retried. */
  async function consume(bodies: string[], attempts = 1, queue = 'tessera-audit') {
    const batch = createMessageBatch<string>(
      queue,
      bodies.map((b, i) => ({ id: `m${i}-${crypto.randomUUID()}`, timestamp: new Date(), attempts, body: b })),
    );
    const ctx = createExecutionContext();
    await worker.queue(batch, env);
    return { batch, result: await getQueueResult(batch, ctx) };
  }

  async function stats() {
    return (await backlog()).d1;
  }

  it('adds nothing for a batch delivered twice: a record is written once, never replaced', async () => {
    const bodies = [body(3)];
    await consume(bodies);
    const before = await stats();
    const { result } = await consume(bodies, 2);
    expect(result.ackAll).toBe(true);
    const after = await stats();
    expect(after.write_queries).toBe(before.write_queries + 1);
    expect(after.records_written).toBe(before.records_written);
    const ids = idsOf(bodies);
    expect((await auditRecords()).filter((record) => ids.has(record.id))).toHaveLength(3);
  });

  it('takes a record given twice in one batch once', async () => {
    const one = body(1);
    await consume([one, one]);
    const ids = idsOf([one]);
    expect((await auditRecords()).filter((record) => ids.has(record.id))).toHaveLength(1);
  });

  it('lets a chain’s records reach D1 out of order: the chain check links them in chain order', async () => {
    const records = JSON.parse(body(3)) as unknown[];
    // A message retried after the one behind it: records 2 and 3 arrive before record 1.
    await consume([JSON.stringify(records.slice(1))]);
    await consume([JSON.stringify(records.slice(0, 1))]);
    const response = await adminFetch('/admin/audit/verify', { headers: bearer(creds.auditor) });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { problems: unknown[] }).problems).toEqual([]);
  });

  it('writes what many objects sent in one batch in one D1 query', async () => {
    const before = await stats();
    await consume(Array.from({ length: 8 }, () => body(2)));
    const after = await stats();
    expect(after.write_queries - before.write_queries).toBe(1);
    expect(after.records_written - before.records_written).toBe(16);
  });

  it('retries each message while D1 is down, with backoff: 1 s, doubling, at most 5 minutes', async () => {
    const warned = expectConsole('warn');
    const down = failD1Inserts();
    const { batch, result } = await consume([body(1), body(2)]);
    down.mockRestore();
    expectRefusedByD1(warned, 'D1 is down');
    expect(result.ackAll).toBe(false);
    expect(result.retryMessages.map((retry) => retry.msgId)).toEqual(batch.messages.map((message) => message.id));
    // (The test harness does not report a retried message's delay: the schedule the handler asks for.)
    expect([1, 2, 3, 4, 9, 12].map(retryDelaySeconds)).toEqual([1, 2, 4, 8, 256, 300]);
  });

  it('lets a record D1 refuses hold back only its own message', async () => {
    const good = [body(2), body(1)];
    // No policy version: D1's NOT NULL constraint refuses the row, however often it is sent.
    const poison = body(1, (record) => ({ ...record, policyVersion: null }));
    const warned = expectConsole('warn');
    const { batch, result } = await consume([good[0] as string, poison, good[1] as string]);
    expectRefusedByD1(warned, 'NOT NULL constraint failed: audit_events.policy_version');
    expect(result.retryMessages.map((retry) => retry.msgId)).toEqual([batch.messages[1]?.id]);
    expect(result.explicitAcks.sort()).toEqual([batch.messages[0]?.id, batch.messages[2]?.id].sort());
    const ids = idsOf(good);
    expect((await auditRecords()).filter((record) => ids.has(record.id))).toHaveLength(3);
  });

  it('moves a message D1 keeps refusing to the dead letters in R2, where admins see it', async () => {
    const before = (await backlog()).dead_letters.count;
    const poison = body(1, (record) => ({ ...record, policyVersion: null }));
    const warned = expectConsole('warn');
    await env.AUDIT_QUEUE.send(poison, { contentType: 'text' });
    // Three attempts (1 s and 2 s apart), then the dead-letter queue, then R2.
    await vi.waitFor(async () => expect((await backlog()).dead_letters.count).toBe(before + 1), {
      timeout: 20_000,
      interval: 250,
    });
    const listed = await env.AUDIT_ARCHIVE.list({ prefix: 'dead-letters/' });
    const kept = await Promise.all(listed.objects.map(async (o) => (await env.AUDIT_ARCHIVE.get(o.key))?.text()));
    expect(kept).toContain(poison);
    expectRefusedByD1(warned, 'NOT NULL constraint failed: audit_events.policy_version');
  });
});

describe('an object’s records after an eviction', () => {
  it('keeps records in the object after an eviction, and forwards them then', async () => {
    const down = failD1Inserts();
    const { jti } = await issue();
    down.mockRestore();
    await evictAgentObject();
    expect((await outbox()).map((record) => record.tokenJti)).toContain(jti);
    expect((await auditRecords()).filter((record) => record.tokenJti === jti)).toHaveLength(1);
  });

  it.each([
    ['records wait in it', true],
    ['D1 holds them all', false],
  ])('continues the chain from its head after an eviction while %s', async (_name, waiting) => {
    const down = waiting ? failD1Inserts() : undefined;
    const { jti: before } = await issue();
    if (!waiting) await drainAudit();
    await evictAgentObject();
    down?.mockRestore();
    const { jti: after } = await issue();
    const chain = (await auditRecords()).filter((record) => record.chain === `agent:${DEMO_AGENT}`);
    const last = chain.findIndex((record) => record.tokenJti === after);
    const previous = chain[last - 1];
    expect(previous?.tokenJti).toBe(before);
    expect(chain[last]).toMatchObject({ chainSeq: (previous?.chainSeq ?? 0) + 1, chainPrev: previous?.chainHash });
  });
});

describe('refusals of callers not known yet: sampled per intake shard and minute', () => {
  // One time for every refusal of a test, so that they fall in one window even if a minute turns meanwhile.
  const refusal = (i: number, at: number) =>
    decideRecord(
      { at, event: 'token.exchange', ip: `198.51.100.${i % 3}`, userAgent: 'flood/1', details: {} },
      { decision: 'refused', reason: 'bad_signature' },
      loadedPolicy().bundle.version,
    );

  it('records the first of a minute in full, counts the rest, and summarises them when the minute closes', async () => {
    await drainAudit({ closeWindows: true });
    const before = (await auditRecords()).length;
    const extra = 7;
    const at = Date.now();
    for (let i = 0; i < UNVERIFIED_SAMPLE + extra; i += 1) await intake(0).refused(refusal(i, at));
    await drainAudit();
    const sampled = (await auditRecords()).slice(before);
    expect(sampled).toHaveLength(UNVERIFIED_SAMPLE);
    await drainAudit({ closeWindows: true });
    const [summary, ...others] = (await auditRecords()).slice(before + UNVERIFIED_SAMPLE);
    expect(others).toEqual([]);
    expect(summary).toMatchObject({ event: 'token.exchange', decision: 'refused', reason: 'bad_signature' });
    const detail = JSON.parse(summary?.detail ?? '{}') as { summary: { count: number; ips: Record<string, number> } };
    expect(detail.summary.count).toBe(extra);
    expect(Object.values(detail.summary.ips).reduce((sum, n) => sum + n, 0)).toBe(extra);
  });

  it('accounts for every garbage request over HTTP: full records plus summary counts add up', async () => {
    await drainAudit({ closeWindows: true });
    const before = (await auditRecords()).length;
    // Shards are picked at random and the broker's clock may turn a minute meanwhile: two windows per shard.
    // Then at most 2 * INTAKE_SHARDS * UNVERIFIED_SAMPLE are in full, plus a summary per shard and window,
    // fewer than sent; and some shard's window got more than its sample, so there is a summary.
    const sent = 2 * INTAKE_SHARDS * (UNVERIFIED_SAMPLE + 1) + 1;
    for (let i = 0; i < sent; i += 1) {
      const response = await exchange({ subject_token: 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln' });
      await expectError(response, 400, 'invalid_grant');
    }
    await drainAudit({ closeWindows: true });
    const added = (await auditRecords()).slice(before);
    const summaries = added.filter((record) => record.detail?.includes('"summary"'));
    expect(summaries.length).toBeGreaterThan(0);
    const counted = summaries.reduce(
      (sum, record) => sum + (JSON.parse(record.detail ?? '{}') as { summary: { count: number } }).summary.count,
      0,
    );
    expect(added.length - summaries.length + counted).toBe(sent);
    expect(added.length).toBeLessThan(sent);
  });
});

describe('GET /admin/audit/backlog', () => {
  it('counts D1 write queries and records written, so a client can tell records per query', async () => {
    const before = (await backlog()).d1;
    await issue();
    await drainAudit();
    const after = (await backlog()).d1;
    expect(after.write_queries).toBeGreaterThan(before.write_queries);
    expect(after.records_written).toBeGreaterThan(before.records_written);
  });

  it('reports nothing waiting once everything is forwarded', async () => {
    await drainAudit();
    expect(await backlog()).toMatchObject({ waiting: 0, oldest_waiting_seconds: null, chains: [] });
  });
});

describe('a token whose request reached its agent’s object', () => {
  it('is recorded exactly once, with the jti the token carries', async () => {
    const response = await exchange();
    const { access_token } = (await response.json()) as { access_token: string };
    const jti = decodeJwt(access_token).jti;
    const rows = (await auditRecords()).filter((record) => record.tokenJti === jti);
    expect(rows).toHaveLength(1);
    expect(rows[0]?.decision).toBe('granted');
  });
});
