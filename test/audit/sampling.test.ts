/**
 * The audit volume nobody asked for: a used attestation replayed, a token revoked again and again, a console
 * tab polling admin reads. Each is sampled like the refusals of unknown callers (worker/audit/sampler.ts): per
 * window and per who-did-what, the first records in full, the rest counted durably and summarised in one
 * chained record once the window is over, which names who, to what, how often, when and from where.
 */
import { runDurableObjectAlarm } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { decodeJwt } from 'jose';
import { beforeEach, describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { INTAKE_SHARDS } from '../../worker/audit/intake';
import { SAMPLING, type SampledKind } from '../../worker/audit/sampler';
import type { AuditEvent } from '../../worker/audit/schema';
import { adminFetch, bearer } from '../helpers/admin';
import { agentObject, evictAgentObject } from '../helpers/agent-object';
import { attestation } from '../helpers/attestation';
import { auditRecords, detailOf } from '../helpers/audit';
import { useForwardClock } from '../helpers/clock';
import { DEMO_AGENT, ISSUER } from '../helpers/demo';
import { exchangeFields, postJson } from '../helpers/requests';
import { issue } from '../helpers/tokens';

const clock = useForwardClock();

beforeEach(async () => {
  await evictAgentObject();
});

interface Summary {
  kind: SampledKind;
  count: number;
  recorded: number;
  sampled: number;
  window: { from: number; to: number };
  first_at: number;
  last_at: number;
  ips: Record<string, number>;
  user_agents: Record<string, number>;
}

const summaryOf = (record: AuditEvent | undefined) => (detailOf(record) as { summary: Summary }).summary;
const isSummary = (record: AuditEvent) => record.detail?.includes('"summary"') === true;

/** A request's origin, unique to the test, so its records are told apart from the file's others. */
function origin(label: string) {
  return { 'cf-connecting-ip': '203.0.113.7', 'user-agent': `${label}/${crypto.randomUUID()}` };
}

/** Moves the fake clock to 1 s into the next window of `kind`, so a flood lands in one window. */
function startOfWindow(kind: SampledKind): number {
  const { windowMs } = SAMPLING[kind];
  clock.set((Math.floor(clock.ms / windowMs) + 1) * windowMs + 1_000);
  return clock.ms - 1_000;
}

/** Moves the fake clock past the window that began at `start` and lets every chain's object's alarm run. */
async function afterWindow(kind: SampledKind, start: number): Promise<void> {
  clock.set(start + SAMPLING[kind].windowMs + 1_000);
  const objects = [
    agentObject(),
    env.KILL_SWITCH.get(env.KILL_SWITCH.idFromName('global')),
    ...Array.from({ length: INTAKE_SHARDS }, (_, shard) =>
      env.AUDIT_INTAKE.get(env.AUDIT_INTAKE.idFromName(`intake-${shard}`)),
    ),
  ];
  for (const stub of objects) await runDurableObjectAlarm(stub);
}

/** Sends `send` `n` times, one after the other. */
async function repeat(n: number, send: () => Promise<Response>): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < n; i += 1) statuses.push((await send()).status);
  return statuses;
}

/** Full records and summaries among `records` for one user agent: in full by column, summarised by tally. */
function split(records: AuditEvent[], userAgent: string) {
  return {
    full: records.filter((record) => record.userAgent === userAgent),
    summaries: records.filter((record) => isSummary(record) && summaryOf(record).user_agents[userAgent] !== undefined),
  };
}

describe('POST /token: a replayed attestation, sampled per attestation', () => {
  const FLOOD = 60;

  it('records the first replays in full and one summary after the window, whose count adds up', async () => {
    const start = startOfWindow('replay');
    const headers = origin('replayer');
    const fields = await exchangeFields();
    const jti = String(decodeJwt(String(fields.subject_token)).jti);
    expect((await postJson(fields)).status).toBe(200);
    expect(await repeat(FLOOD, () => postJson(fields, headers))).toEqual(Array(FLOOD).fill(400));
    await afterWindow('replay', start);

    const { full, summaries } = split(await auditRecords(), headers['user-agent']);
    const { sample } = SAMPLING.replay;
    expect(full).toHaveLength(sample);
    for (const record of full) expect(record).toMatchObject({ reason: 'replayed', attestationJti: jti });
    expect(summaries).toHaveLength(1);
    const [summary] = summaries;
    expect(summary).toMatchObject({
      event: 'token.exchange',
      decision: 'refused',
      errorCode: 'invalid_grant',
      reason: 'replayed',
      agent: DEMO_AGENT,
      attestationJti: jti,
      attestationVia: 'self',
      chain: `agent:${DEMO_AGENT}`,
      // What a replay may vary is not the key's, so the summary does not claim it.
      taskDescription: null,
    });
    const counted = summaryOf(summary);
    expect(full.length + counted.count).toBe(FLOOD);
    expect(counted).toMatchObject({
      kind: 'replay',
      recorded: sample,
      window: { from: start, to: start + SAMPLING.replay.windowMs },
      ips: { '203.0.113.7': FLOOD - sample },
      user_agents: { [headers['user-agent']]: FLOOD - sample },
    });
    expect(counted.first_at).toBeGreaterThanOrEqual(start);
    expect(counted.last_at).toBeLessThan(start + SAMPLING.replay.windowMs);
  });

  it('records the first replay of each window in full', async () => {
    const start = startOfWindow('replay');
    const headers = origin('replayer');
    const fields = await exchangeFields();
    expect((await postJson(fields)).status).toBe(200);
    await repeat(SAMPLING.replay.sample + 2, () => postJson(fields, headers));
    await afterWindow('replay', start);
    expect((await postJson(fields, headers)).status).toBe(400);

    const { full, summaries } = split(await auditRecords(), headers['user-agent']);
    expect(full).toHaveLength(SAMPLING.replay.sample + 1);
    expect(full.at(-1)?.at).toBeGreaterThanOrEqual(start + SAMPLING.replay.windowMs);
    expect(summaries.map((record) => summaryOf(record).count)).toEqual([2]);
  });

  it('keeps its counts in storage: an evicted object still summarises the whole window', async () => {
    const start = startOfWindow('replay');
    const headers = origin('replayer');
    const fields = await exchangeFields();
    expect((await postJson(fields)).status).toBe(200);
    await repeat(FLOOD / 2, () => postJson(fields, headers));
    await evictAgentObject();
    await repeat(FLOOD / 2, () => postJson(fields, headers));
    await afterWindow('replay', start);

    const { full, summaries } = split(await auditRecords(), headers['user-agent']);
    expect(full).toHaveLength(SAMPLING.replay.sample);
    expect(summaries.map((record) => summaryOf(record).count)).toEqual([FLOOD - SAMPLING.replay.sample]);
  });

  it('samples each attestation apart: the first replay of another is in full however many came before', async () => {
    const start = startOfWindow('replay');
    const headers = origin('replayer');
    const first = await exchangeFields();
    const second = await exchangeFields({ subject_token: await attestation() });
    expect((await postJson(first)).status).toBe(200);
    expect((await postJson(second)).status).toBe(200);
    await repeat(10, () => postJson(first, headers));
    expect((await postJson(second, headers)).status).toBe(400);
    await afterWindow('replay', start);

    const { full } = split(await auditRecords(), headers['user-agent']);
    const secondJti = String(decodeJwt(String(second.subject_token)).jti);
    expect(full.filter((record) => record.attestationJti === secondJti)).toHaveLength(1);
  });

  it('takes nothing from the agent’s rate limit: the agent is still served after a flood', async () => {
    const fields = await exchangeFields();
    expect((await postJson(fields)).status).toBe(200);
    await repeat(FLOOD, () => postJson(fields));
    expect((await postJson(await exchangeFields())).status).toBe(200);
  });
});

describe('POST /revoke: a token revoked again, sampled per token', () => {
  const FLOOD = 60;
  const revoke = (token: string, headers: Record<string, string>) =>
    exports.default.fetch(`${ISSUER}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ token }),
    });

  it('records the first revoke and the first repeats in full, and one summary whose count adds up', async () => {
    const start = startOfWindow('repeat_revoke');
    const headers = origin('revoker');
    const issued = await issue();
    expect(await repeat(FLOOD, () => revoke(issued.token, headers))).toEqual(Array(FLOOD).fill(200));
    await afterWindow('repeat_revoke', start);

    const { full, summaries } = split(await auditRecords(), headers['user-agent']);
    const { sample } = SAMPLING.repeat_revoke;
    // The first revoke is the change, always in full; then the repeats' sample.
    expect(full).toHaveLength(1 + sample);
    for (const record of full)
      expect(record).toMatchObject({ event: 'token.revoke', decision: 'granted', tokenJti: issued.jti });
    expect(summaries).toHaveLength(1);
    const [summary] = summaries;
    expect(summary).toMatchObject({
      event: 'token.revoke',
      decision: 'granted',
      agent: DEMO_AGENT,
      tokenJti: issued.jti,
      tokenExp: issued.exp,
      taskId: issued.taskId,
      chain: `agent:${DEMO_AGENT}`,
    });
    const counted = summaryOf(summary);
    expect(full.length + counted.count).toBe(FLOOD);
    expect(counted).toMatchObject({ kind: 'repeat_revoke', ips: { '203.0.113.7': counted.count } });
  });

  it('never samples an admin’s revoke: each is a change, in full', async () => {
    const issued = await issue();
    const headers = origin('admin-revoker');
    for (let i = 0; i < 5; i += 1) {
      const response = await adminFetch(`/admin/tokens/${issued.jti}/revoke`, {
        method: 'POST',
        body: { reason: 'incident INC-7' },
        headers: { ...bearer(creds.admin), ...headers },
      });
      expect(response.status).toBe(200);
    }
    const { full } = split(await auditRecords(), headers['user-agent']);
    expect(full).toHaveLength(5);
    for (const record of full) expect(record).toMatchObject({ event: 'admin.token.revoke', actor: 'demo-admin' });
  });
});

describe('admin reads a console polls, sampled per admin', () => {
  const cases = [
    { event: 'admin.approval.list', path: '/admin/approvals?status=pending', credential: creds.approver, polls: 60 },
    { event: 'admin.whoami', path: '/admin/whoami', credential: creds.auditor, polls: 60 },
    { event: 'admin.kill_switch.read', path: '/admin/kill-switch', credential: creds.admin, polls: 12 },
  ];

  for (const { event, path, credential, polls } of cases) {
    it(`records the first ${event} of a window in full and summarises the rest, naming the admin`, async () => {
      const start = startOfWindow('admin_read');
      const headers = origin('console');
      const statuses = await repeat(polls, () => adminFetch(path, { headers: { ...bearer(credential), ...headers } }));
      expect(statuses).toEqual(Array(polls).fill(200));
      await afterWindow('admin_read', start);

      const { full, summaries } = split(await auditRecords(), headers['user-agent']);
      const { sample } = SAMPLING.admin_read;
      const actor = credential.split('.')[1];
      expect(full).toHaveLength(sample);
      for (const record of full) expect(record).toMatchObject({ event, decision: 'granted', actor });
      expect(summaries).toHaveLength(1);
      const [summary] = summaries;
      expect(summary).toMatchObject({ event, decision: 'granted', actor, actorRole: expect.any(String) });
      const counted = summaryOf(summary);
      expect(full.length + counted.count).toBe(polls);
      expect(counted).toMatchObject({
        kind: 'admin_read',
        window: { from: start, to: start + SAMPLING.admin_read.windowMs },
        ips: { '203.0.113.7': polls - sample },
      });
    });
  }

  it('never samples an admin change: every kill switch change is in full', async () => {
    const headers = origin('console');
    for (const engaged of [true, false]) {
      const response = await adminFetch('/admin/kill-switch', {
        method: 'PUT',
        body: { engaged, reason: 'drill' },
        headers: { ...bearer(creds.admin), ...headers },
      });
      expect(response.status).toBe(200);
    }
    const { full, summaries } = split(await auditRecords(), headers['user-agent']);
    expect(full.map((record) => record.event)).toEqual(['admin.kill_switch.set', 'admin.kill_switch.set']);
    expect(summaries).toHaveLength(0);
  });
});
