/**
 * The record path: a decision's record commits in the object that decided it, chained, before the answer;
 * the object forwards its records to D1 in batches through the writer, off the request's path, keeps each
 * until D1 has it, and sends it again after a failure; D1 takes a record once however often it is sent.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import creds from '../scripts/demo/admin-credentials.json';
import type { AgentState } from '../worker/agents/agent-state';
import { INTAKE_SHARDS, UNVERIFIED_SAMPLE } from '../worker/audit/intake';
import {
  type ChainedRecord,
  chainHash,
  decideRecord,
  type ForwardedRecord,
  recordColumns,
} from '../worker/audit/record';
import { loadedPolicy } from '../worker/policy/loaded';
import { adminFetch, bearer } from './admin-helpers';
import {
  agentObject,
  auditRecords,
  DEMO_AGENT,
  drainAudit,
  evictAgentObject,
  exchange,
  expectError,
  issue,
} from './helpers';

const writer = () => env.AUDIT_WRITER.get(env.AUDIT_WRITER.idFromName('global'));
const intake = (shard: number) => env.AUDIT_INTAKE.get(env.AUDIT_INTAKE.idFromName(`intake-${shard}`));

/** Makes every D1 insert of audit records fail until `restore` is called. */
function failD1Inserts() {
  const prepare = env.AUDIT_DB.prepare.bind(env.AUDIT_DB);
  return vi.spyOn(env.AUDIT_DB, 'prepare').mockImplementation((query: string) => {
    if (/\binsert into audit_events\b/i.test(query)) throw new Error('D1 is down');
    return prepare(query);
  });
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
    chains: { chain: string; waiting: number; failures: number; last_error: string | null }[];
    d1: { write_queries: number; records_written: number };
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

describe('D1 down for a while', () => {
  it('keeps issuing tokens; the records wait, show in the backlog, and arrive once D1 is back, once each', async () => {
    await drainAudit();
    const down = failD1Inserts();
    const jtis: string[] = [];
    for (let i = 0; i < 3; i += 1) jtis.push((await issue()).jti);
    expect(await agentObject().flushAudit()).toBe(false);
    const stuck = await backlog();
    expect(stuck.waiting).toBeGreaterThanOrEqual(3);
    expect(stuck.oldest_waiting_seconds).not.toBeNull();
    const chain = stuck.chains.find((entry) => entry.chain === `agent:${DEMO_AGENT}`);
    expect(chain).toMatchObject({ failures: 1 });
    expect(chain?.last_error).toContain('D1 is down');
    expect((await outbox()).map((record) => record.tokenJti)).toEqual(expect.arrayContaining(jtis));

    down.mockRestore();
    const records = await auditRecords();
    for (const jti of jtis) expect(records.filter((record) => record.tokenJti === jti)).toHaveLength(1);
    expect((await backlog()).waiting).toBe(0);
  });

  it('backs off after a failure: the alarm does not try D1 again at once', async () => {
    const down = failD1Inserts();
    await issue();
    expect(await agentObject().flushAudit()).toBe(false);
    const attempts = down.mock.calls.length;
    await runDurableObjectAlarm(agentObject());
    expect(down.mock.calls.length).toBe(attempts);
    expect((await agentObject().backlog()).waiting).toBeGreaterThan(0);
    down.mockRestore();
    await drainAudit();
    expect((await agentObject().backlog()).waiting).toBe(0);
  });
});

describe('the writer', () => {
  function records(count: number): ForwardedRecord[] {
    let prev = '0'.repeat(64);
    return Array.from({ length: count }, (_, i) => {
      const decided = decideRecord(
        { at: Date.now(), event: 'test.redelivery', details: { i } },
        { decision: 'granted' },
        loadedPolicy().bundle.version,
      );
      const linked = {
        ...decided,
        chain: `test:${crypto.randomUUID()}`,
        chainSeq: i + 1,
        chainPrev: prev,
        chainHash: '',
      };
      const hashed = { ...linked, chainHash: chainHash(recordColumns(linked)) };
      prev = hashed.chainHash;
      return { id: hashed.id, json: JSON.stringify(hashed) };
    });
  }

  it('adds nothing for a batch sent again: a record is written once, never replaced', async () => {
    const batch = records(3);
    expect(await writer().write(batch)).toEqual({ written: true });
    const before = await writer().stats();
    expect(await writer().write(batch)).toEqual({ written: true });
    const after = await writer().stats();
    expect(after.writeQueries).toBe(before.writeQueries + 1);
    expect(after.recordsWritten).toBe(before.recordsWritten);
    const ids = new Set(batch.map((record) => record.id));
    expect((await auditRecords()).filter((record) => ids.has(record.id))).toHaveLength(3);
  });

  it('takes a record sent twice in one batch once', async () => {
    const [one] = records(1);
    if (one === undefined) throw new Error('no record');
    await writer().write([one, one]);
    expect((await auditRecords()).filter((record) => record.id === one.id)).toHaveLength(1);
  });

  it('writes what many objects send at once in one D1 query', async () => {
    const before = await writer().stats();
    await Promise.all(Array.from({ length: 8 }, () => writer().write(records(2))));
    const after = await writer().stats();
    expect(after.writeQueries - before.writeQueries).toBe(1);
    expect(after.recordsWritten - before.recordsWritten).toBe(16);
  });

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
  const refusal = (i: number) =>
    decideRecord(
      { at: Date.now(), event: 'token.exchange', ip: `198.51.100.${i % 3}`, userAgent: 'flood/1', details: {} },
      { decision: 'refused', reason: 'bad_signature' },
      loadedPolicy().bundle.version,
    );

  it('records the first of a minute in full, counts the rest, and summarises them when the minute closes', async () => {
    await drainAudit({ closeWindows: true });
    const before = (await auditRecords()).length;
    const extra = 7;
    for (let i = 0; i < UNVERIFIED_SAMPLE + extra; i += 1) await intake(0).refused(refusal(i));
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
    const sent = INTAKE_SHARDS * UNVERIFIED_SAMPLE + 1;
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
