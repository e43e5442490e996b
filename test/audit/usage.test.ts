/**
 * `usage_daily` (issue 22): the per-day counts the access review and the console's Overview read, kept by a
 * trigger as records reach `audit_events`. The counts equal what the records themselves say, whatever the
 * decisions; a redelivered record counts nothing; the archive's deletes leave them; and the real `/token`
 * path and an approver's decision are counted.
 */
import { env } from 'cloudflare:workers';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { type AuditOutcome, decideRecord, EMPTY_CHAIN, linkRecord } from '../../worker/audit/record';
import type { AuditEvent } from '../../worker/audit/schema';
import { writeRecords } from '../../worker/audit/writer';
import type { Reason } from '../../worker/core/errors';
import { fuzzParameters, fuzzTimeout } from '../fuzz/params';
import { adminFetch, bearer } from '../helpers/admin';
import { DISABLE_USER, openApproval } from '../helpers/approvals';
import { drainAudit } from '../helpers/audit';
import { useForwardClock } from '../helpers/clock';
import { DEMO_AGENT, IAM, TICKETS } from '../helpers/demo';
import { issue } from '../helpers/tokens';

const DAY_MS = 86_400_000;
const clock = useForwardClock();
const sealer = () => env.AUDIT_SEALER.get(env.AUDIT_SEALER.idFromName('global'));

type Counts = Map<string, number>;
const key = (day: string, agent: string, audience: string, actions: string, outcome: string, reason: string) =>
  JSON.stringify([day, agent, audience, actions, outcome, reason]);

/** Every count in `usage_daily`, by its key. */
async function usage(): Promise<Counts> {
  const { results } = await env.AUDIT_DB.prepare('SELECT * FROM usage_daily').all<{
    day: string;
    agent: string;
    audience: string;
    actions: string;
    outcome: string;
    reason: string;
    count: number;
  }>();
  return new Map(results.map((r) => [key(r.day, r.agent, r.audience, r.actions, r.outcome, r.reason), r.count]));
}

/** What grew from `before` to `after`, by key. */
function grown(before: Counts, after: Counts): Counts {
  const delta: Counts = new Map();
  for (const [k, n] of after) if (n !== (before.get(k) ?? 0)) delta.set(k, n - (before.get(k) ?? 0));
  return delta;
}

/** The oracle: what the records say, counted in TypeScript from the rows D1 holds. */
function countRecords(rows: readonly AuditEvent[]): Counts {
  const counts: Counts = new Map();
  for (const row of rows) {
    const detail =
      row.detail === null ? {} : (JSON.parse(row.detail) as { status?: string; summary?: { count: number } });
    let outcome: string | undefined;
    if (row.event === 'admin.approval.decide' && row.decision === 'granted')
      outcome = detail.status === 'approved' || detail.status === 'denied' ? detail.status : undefined;
    else if (row.event === 'token.exchange') {
      if (row.decision === 'granted') outcome = 'granted';
      else if (row.reason === 'approval_required') outcome = 'approval_asked';
      else if (row.reason === 'approval_pending' || row.reason === 'approval_poll_too_fast')
        outcome = 'approval_waiting';
      else outcome = 'refused';
    }
    if (outcome === undefined) continue;
    const granted = row.event === 'token.exchange' && row.decision === 'granted';
    const actions = (granted ? row.grantedActions : row.requestedActions) ?? '';
    const day = new Date(row.at).toISOString().slice(0, 10);
    const reason = outcome === 'refused' ? (row.reason ?? '') : '';
    const k = key(day, row.agent ?? '', row.audience ?? '', actions, outcome, reason);
    counts.set(k, (counts.get(k) ?? 0) + (detail.summary?.count ?? 1));
  }
  return counts;
}

type Kind =
  | 'granted'
  | 'refused'
  | 'approval_required'
  | 'approval_pending'
  | 'approved'
  | 'approval_half'
  | 'denied'
  | 'other_event'
  | 'summary';

/** A decision as the objects record it: what is drawn, then completed and linked like any record. */
interface Decision {
  kind: Kind;
  daysAgo: number;
  agent: string | null;
  audience: string | null;
  actions: string[] | null;
  reason: Reason;
  summaryCount: number;
}

const decision: fc.Arbitrary<Decision> = fc.record({
  kind: fc.constantFrom<Kind>(
    'granted',
    'refused',
    'approval_required',
    'approval_pending',
    'approved',
    'approval_half',
    'denied',
    'other_event',
    'summary',
  ),
  daysAgo: fc.integer({ min: 0, max: 3 }),
  agent: fc.constantFrom('usage-a', 'usage-b', null),
  audience: fc.constantFrom(TICKETS, IAM, null),
  actions: fc.option(
    fc.uniqueArray(fc.constantFrom('tickets:read', 'tickets:write', 'tickets:comment', 'iam:disable-user'), {
      minLength: 1,
    }),
    { nil: null },
  ),
  reason: fc.constantFrom<Reason>(
    'action_not_granted',
    'rate_limited',
    'audience_not_granted',
    'justification_required',
  ),
  summaryCount: fc.integer({ min: 1, max: 500 }),
});

let chainNumber = 0;

/** The chained records of `decisions`, in one chain of their own, as their objects would send them. */
function chained(decisions: readonly Decision[], now: number): string[] {
  let head = EMPTY_CHAIN;
  chainNumber += 1;
  const chain = `usage-test:${chainNumber}`;
  return decisions.map((d) => {
    const decide = d.kind === 'approved' || d.kind === 'approval_half' || d.kind === 'denied';
    const outcome: AuditOutcome =
      d.kind === 'granted' || decide || d.kind === 'other_event'
        ? { decision: 'granted' }
        : {
            decision: 'refused',
            reason: d.kind === 'approval_required' || d.kind === 'approval_pending' ? d.kind : d.reason,
          };
    const status = { approved: 'approved', approval_half: 'pending', denied: 'denied' } as Record<string, string>;
    const record = decideRecord(
      {
        event: decide ? 'admin.approval.decide' : d.kind === 'other_event' ? 'admin.agent.read' : 'token.exchange',
        at: now - d.daysAgo * DAY_MS,
        agent: d.agent,
        audience: d.audience,
        requestedActions: d.actions?.join(' ') ?? null,
        grantedActions: d.kind === 'granted' ? (d.actions?.join(' ') ?? null) : null,
        details: {
          ...(decide && { decision: d.kind === 'denied' ? 'deny' : 'approve', status: status[d.kind] }),
          ...(d.kind === 'summary' && { summary: { kind: 'unverified', count: d.summaryCount } }),
        },
      },
      outcome,
      'usage-test',
    );
    const linked = linkRecord(record, chain, head);
    head = { seq: linked.chainSeq, hash: linked.chainHash };
    return JSON.stringify(linked);
  });
}

/** The D1 rows of the records with these ids. */
async function rowsOf(records: readonly string[]): Promise<AuditEvent[]> {
  const ids = records.map((json) => (JSON.parse(json) as { id: string }).id);
  const { results } = await env.AUDIT_DB.prepare(
    `SELECT seq, id, at, event, decision, reason, detail, agent, audience,
       requested_actions AS requestedActions, granted_actions AS grantedActions
     FROM audit_events WHERE id IN (SELECT value FROM json_each(?1))`,
  )
    .bind(JSON.stringify(ids))
    .all<AuditEvent>();
  return results;
}

describe('usage_daily', () => {
  it(
    'counts what the records written through the audit writer say, and a redelivery adds nothing',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(decision, { minLength: 1, maxLength: 25 }),
          fc.integer({ min: 1, max: 4 }),
          fc.array(fc.nat(), { maxLength: 8 }),
          async (decisions, messages, redelivered) => {
            const before = await usage();
            const records = chained(decisions, Date.now());
            // Several messages in one write; a record given twice in one batch; then some delivered again.
            const size = Math.ceil(records.length / messages);
            const bodies = Array.from(
              { length: messages },
              (_, m) => `[${records.slice(m * size, (m + 1) * size).join(',')}]`,
            );
            const again = redelivered.map((n) => records[n % records.length] as string);
            await writeRecords(env.AUDIT_DB, [...bodies, `[${again.join(',')}]`]);
            const written = await usage();
            await writeRecords(env.AUDIT_DB, [`[${records.join(',')}]`], 1);
            const rows = await rowsOf(records);
            expect(rows).toHaveLength(records.length);
            expect(grown(before, written)).toEqual(countRecords(rows));
            expect(await usage()).toEqual(written);
          },
        ),
        fuzzParameters(30, 200),
      );
    },
    fuzzTimeout(30, 200),
  );

  it('writes one D1 row per token record besides the record’s own, however many actions (WITHOUT ROWID: no index)', async () => {
    const record = (kind: Decision['kind'], actions: string[]) =>
      chained(
        [
          {
            kind,
            daysAgo: 0,
            agent: 'usage-rows',
            audience: TICKETS,
            actions,
            reason: 'rate_limited',
            summaryCount: 1,
          },
        ],
        Date.now(),
      );
    const rowsWritten = async (records: string[]) => {
      const [insert] = await env.AUDIT_DB.batch([
        env.AUDIT_DB.prepare(
          `INSERT INTO audit_events (id, at, event, decision, agent, audience, granted_actions, policy_version)
           SELECT value ->> '$.id', value ->> '$.at', value ->> '$.event', value ->> '$.decision', value ->> '$.agent',
             value ->> '$.audience', value ->> '$.grantedActions', value ->> '$.policyVersion' FROM json_each(?1)`,
        ).bind(`[${records.join(',')}]`),
      ]);
      return insert?.meta.rows_written ?? Number.NaN;
    };
    const uncounted = await rowsWritten(record('other_event', ['tickets:read']));
    const counted = await rowsWritten(record('granted', ['tickets:read']));
    expect(counted - uncounted).toBe(1);
    expect(await rowsWritten(record('granted', ['tickets:read', 'tickets:write', 'tickets:comment']))).toBe(counted);
    // The same key counted again: an update, still one row.
    expect(await rowsWritten(record('granted', ['tickets:read']))).toBe(counted);
  });

  it('counts a token the broker issues, once its record reaches D1', async () => {
    const before = await usage();
    await issue();
    await drainAudit();
    const day = new Date(Date.now()).toISOString().slice(0, 10);
    const delta = grown(before, await usage());
    expect(delta.get(key(day, DEMO_AGENT, TICKETS, 'tickets:read tickets:comment', 'granted', ''))).toBe(1);
  });

  it('counts an approval asked for and the approver’s decision that settled it, under its API and action', async () => {
    const before = await usage();
    const pending = await openApproval();
    const response = await adminFetch(`/admin/approvals/${pending.id}`, {
      method: 'POST',
      body: { decision: 'deny', reason: 'not this account' },
      headers: bearer(creds.approver),
    });
    expect(response.status, await response.clone().text()).toBe(200);
    await drainAudit();
    const day = new Date(Date.now()).toISOString().slice(0, 10);
    const delta = grown(before, await usage());
    expect(delta.get(key(day, DEMO_AGENT, IAM, DISABLE_USER, 'approval_asked', ''))).toBe(1);
    expect(delta.get(key(day, DEMO_AGENT, IAM, DISABLE_USER, 'denied', ''))).toBe(1);
  });

  it('keeps the counts when the archive deletes the records they came from', async () => {
    for (let i = 0; i < 3; i += 1) await issue();
    await drainAudit();
    const counted = await usage();
    clock.advance(32 * 86_400);
    const { archive } = await sealer().maintain();
    expect(archive.segments.length).toBeGreaterThan(0);
    const left = await env.AUDIT_DB.prepare('SELECT COUNT(*) AS n FROM audit_events WHERE seq <= ?')
      .bind(archive.segments.at(-1)?.last_seq ?? 0)
      .first<{ n: number }>();
    expect(left?.n).toBe(0);
    expect(await usage()).toEqual(counted);
  });
});
