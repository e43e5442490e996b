import { createExecutionContext, createScheduledController, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import creds from '../scripts/demo/admin-credentials.json';
import { canonicalRecord, GENESIS, sealHash, verifyChain } from '../worker/audit/chain';
import worker from '../worker/index';
import { adminFetch, bearer } from './admin-helpers';
import { exchange } from './helpers';

interface Report {
  valid: boolean;
  records: number;
  head: { seq: number; hash: string };
  problems: { seq: number; problem: string }[];
}

async function verify(): Promise<Report> {
  const response = await adminFetch('/admin/audit/verify', { headers: bearer(creds.auditor) });
  expect(response.status).toBe(200);
  return (await response.json()) as Report;
}

async function decisions(count: number): Promise<void> {
  for (let i = 0; i < count; i += 1) {
    await (await exchange(i % 2 === 0 ? {} : { scope: 'tickets:delete' })).arrayBuffer();
  }
}

async function exec(sql: string, ...values: unknown[]) {
  return env.AUDIT_DB.prepare(sql)
    .bind(...values)
    .run();
}

describe('audit hash chain: canonical form', () => {
  it('ignores key order and null columns, so a nullable column added later changes no hash', async () => {
    const row = { seq: 1, decision: 'granted', agent: 'a' };
    expect(canonicalRecord({ agent: 'a', seq: 1, decision: 'granted', actor: null })).toBe(canonicalRecord(row));
    expect(await sealHash(GENESIS, { ...row, actor: null })).toBe(await sealHash(GENESIS, row));
    expect(await sealHash(GENESIS, { ...row, decision: 'refused' })).not.toBe(await sealHash(GENESIS, row));
    expect(await sealHash('1'.repeat(64), row)).not.toBe(await sealHash(GENESIS, row));
  });
});

describe('GET /admin/audit/verify', () => {
  it('seals the records in order and finds the chain whole', async () => {
    await decisions(6);
    const report = await verify();
    expect(report).toMatchObject({ valid: true, problems: [] });
    expect(report.records).toBeGreaterThanOrEqual(6);
    const { results } = await env.AUDIT_DB.prepare('SELECT MAX(seq) AS seq FROM audit_seals').all<{ seq: number }>();
    expect(report.head.seq).toBe(results[0]?.seq);
  });

  it('shows each record with the hash of the one before it', async () => {
    await verify();
    const response = await adminFetch('/admin/audit?limit=500', { headers: bearer(creds.auditor) });
    const { records } = (await response.json()) as {
      records: { seq: number; prev_hash: string | null; hash: string | null }[];
    };
    const sealed = records.filter((r) => r.hash !== null).sort((a, b) => a.seq - b.seq);
    expect(sealed.length).toBeGreaterThan(5);
    expect(sealed[0]?.prev_hash).toBe(GENESIS);
    for (let i = 1; i < sealed.length; i += 1) expect(sealed[i]?.prev_hash).toBe(sealed[i - 1]?.hash);
  });

  it('reports a chain that does not end at the head the sealer anchored', async () => {
    const { head } = await verify();
    const report = await verifyChain(env.AUDIT_DB, { seq: head.seq, hash: 'f'.repeat(64) });
    expect(report).toMatchObject({ valid: false, problems: [{ seq: head.seq, problem: 'head_mismatch' }] });
  });

  it('is sealed by the cron trigger too, off every request path', async () => {
    await decisions(2);
    const before = (await env.AUDIT_DB.prepare('SELECT COUNT(*) AS n FROM audit_seals').first<{ n: number }>())?.n ?? 0;
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: '* * * * *' }), env, ctx);
    await waitOnExecutionContext(ctx);
    const after = (await env.AUDIT_DB.prepare('SELECT COUNT(*) AS n FROM audit_seals').first<{ n: number }>())?.n ?? 0;
    const records =
      (await env.AUDIT_DB.prepare('SELECT COUNT(*) AS n FROM audit_events').first<{ n: number }>())?.n ?? 0;
    expect(after).toBeGreaterThan(before);
    expect(after).toBe(records);
  });
});

// The tamper cases drop the append-only triggers first, as someone with raw access to the database could.
describe('GET /admin/audit/verify detects tampering', () => {
  it('reports a record changed after it was sealed', async () => {
    await decisions(2);
    const { head } = await verify();
    await exec('DROP TRIGGER IF EXISTS audit_events_no_update');
    await exec("UPDATE audit_events SET owner = 'mallory@example.com' WHERE seq = ?", head.seq - 1);
    const report = await verify();
    expect(report.valid).toBe(false);
    expect(report.problems).toContainEqual({ seq: head.seq - 1, problem: 'record_changed' });
  });

  it('reports a record deleted after it was sealed', async () => {
    const { head } = await verify();
    await exec('DROP TRIGGER IF EXISTS audit_events_no_delete');
    await exec('DELETE FROM audit_events WHERE seq = ?', head.seq - 2);
    const report = await verify();
    expect(report.valid).toBe(false);
    expect(report.problems).toContainEqual({ seq: head.seq - 2, problem: 'record_missing' });
  });

  it('reports records and seals rewritten together, against the head the sealer keeps', async () => {
    const { head } = await verify();
    await exec('DROP TRIGGER IF EXISTS audit_seals_no_delete');
    await exec('DROP TRIGGER IF EXISTS audit_seals_no_update');
    // Rewrite the whole chain consistently from the start, as a careful attacker would.
    await exec('DELETE FROM audit_seals');
    await exec("UPDATE audit_events SET owner = 'someone-else@example.com' WHERE seq = 1");
    const { results } = await env.AUDIT_DB.prepare('SELECT * FROM audit_events WHERE seq <= ? ORDER BY seq')
      .bind(head.seq)
      .all<Record<string, unknown> & { seq: number }>();
    let prev = GENESIS;
    for (const row of results) {
      const hash = await sealHash(prev, row);
      await exec('INSERT INTO audit_seals (seq, prev_hash, hash) VALUES (?, ?, ?)', row.seq, prev, hash);
      prev = hash;
    }
    // The sealer had already chained later records onto the real head: the rewrite shows where they meet.
    const report = await verify();
    expect(report.valid).toBe(false);
    expect(report.problems).toEqual([{ seq: head.seq + 1, problem: 'chain_rewritten' }]);
  });
});
