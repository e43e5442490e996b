import { createExecutionContext, createScheduledController, waitOnExecutionContext } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { canonicalRecord, GENESIS, sealHash, verifyChain } from '../../worker/audit/chain';
import { chainHash } from '../../worker/audit/record';
import worker from '../../worker/index';
import { adminFetch, bearer } from '../helpers/admin';
import { drainAudit } from '../helpers/audit';
import { exchange } from '../helpers/requests';

interface Report {
  valid: boolean;
  records: number;
  head: { seq: number; hash: string };
  chains: { checked: number; records: number };
  problems: { seq: number; chain?: string; problem: string }[];
}

/** The chain check, once every record decided so far has reached D1. */
async function verify(): Promise<Report> {
  await drainAudit();
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
    await drainAudit();
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
    expect(report.problems).toContainEqual({ seq: head.seq + 1, problem: 'chain_rewritten' });
    // And the record's own chain, hashed when its object committed it, no longer gives its hash.
    expect(report.problems).toContainEqual(
      expect.objectContaining({ chain: expect.any(String), problem: 'record_changed' }),
    );
  });
});

// The decision-time chains: hashed when the deciding object commits, before D1 or the sealer see a record.
describe('GET /admin/audit/verify checks every decision-time chain', () => {
  const DEMO_CHAIN = 'agent:demo-agent';

  async function lastOfChain(chain: string) {
    return env.AUDIT_DB.prepare('SELECT * FROM audit_events WHERE chain = ? ORDER BY chain_seq DESC LIMIT 1')
      .bind(chain)
      .first<Record<string, unknown> & { seq: number; chain_seq: number; chain_hash: string }>();
  }

  it('reports the chains it checked', async () => {
    await decisions(1);
    const report = await verify();
    expect(report.chains.checked).toBeGreaterThan(0);
    expect(report.chains.records).toBeGreaterThan(0);
  });

  it('catches a record changed in D1 before it was ever sealed', async () => {
    await exec('DROP TRIGGER IF EXISTS audit_events_no_update');
    await decisions(1);
    await drainAudit();
    const last = await lastOfChain(DEMO_CHAIN);
    await exec("UPDATE audit_events SET owner = 'mallory@example.com' WHERE seq = ?", last?.seq);
    const report = await verify();
    expect(report.valid).toBe(false);
    expect(report.problems).toContainEqual({ chain: DEMO_CHAIN, seq: last?.chain_seq, problem: 'record_changed' });
  });

  it('catches the newest records of a chain deleted from D1, against what its object knows D1 holds', async () => {
    await exec('DROP TRIGGER IF EXISTS audit_events_no_delete');
    await decisions(1);
    await drainAudit();
    const last = await lastOfChain(DEMO_CHAIN);
    await exec('DELETE FROM audit_events WHERE seq = ?', last?.seq);
    const report = await verify();
    expect(report.valid).toBe(false);
    expect(report.problems).toContainEqual({ chain: DEMO_CHAIN, seq: last?.chain_seq, problem: 'record_missing' });
  });

  it('catches a record added to D1 that no object committed, however well its hash is forged', async () => {
    await decisions(1);
    await drainAudit();
    const last = await lastOfChain(DEMO_CHAIN);
    if (last === null) throw new Error('no record in the chain');
    const { seq: _seq, stored_at: _stored, ...columns } = last;
    const forged = {
      ...columns,
      id: crypto.randomUUID(),
      reason: null,
      decision: 'granted',
      chain_seq: last.chain_seq + 1,
      chain_prev: last.chain_hash,
    };
    const hashed = { ...forged, chain_hash: chainHash(forged) };
    const names = Object.keys(hashed);
    await exec(
      `INSERT INTO audit_events (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})`,
      ...Object.values(hashed),
    );
    const report = await verify();
    expect(report.valid).toBe(false);
    expect(report.problems).toContainEqual({ chain: DEMO_CHAIN, seq: last.chain_seq + 1, problem: 'unknown_record' });
  });
});
