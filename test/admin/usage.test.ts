/**
 * `GET /admin/usage`: the console Overview's series, from `usage_daily`: tokens issued and refused per day,
 * refusals by reason, top agents; every day of the window, days older than the hot log included.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { utcDay } from '../../worker/core/lifecycle';
import { adminFetch, bearer } from '../helpers/admin';
import { drainAudit } from '../helpers/audit';
import { DEMO_AGENT, TICKETS } from '../helpers/demo';
import { exchange, expectError } from '../helpers/requests';
import { issue } from '../helpers/tokens';

interface Tally {
  issued: number;
  refused: number;
  approvals_asked: number;
  approved: number;
  denied: number;
}
interface UsageJson {
  agent: string | null;
  days: number;
  from: string;
  to: string;
  totals: Tally;
  series: ({ day: string } & Tally)[];
  refusals_by_reason: { reason: string; count: number }[];
  top_agents: ({ agent: string } & Tally)[];
}

async function usage(query = '', credential = creds.auditor): Promise<UsageJson> {
  const response = await adminFetch(`/admin/usage${query}`, { headers: bearer(credential) });
  expect(response.status, await response.clone().text()).toBe(200);
  expect(response.headers.get('cache-control')).toBe('no-store');
  return (await response.json()) as UsageJson;
}

const DAY_MS = 86_400_000;

describe('GET /admin/usage', () => {
  it('counts the tokens issued and refused today, refusals by reason, and the top agents', async () => {
    const before = await usage('?days=7');
    await issue();
    await issue();
    await exchange({ scope: 'tickets:delete' }).then((r) => r.arrayBuffer());
    await drainAudit();
    const after = await usage('?days=7');
    expect(after).toMatchObject({
      agent: null,
      days: 7,
      to: utcDay(Date.now()),
      from: utcDay(Date.now() - 6 * DAY_MS),
    });
    expect(after.series.map((day) => day.day)).toEqual(
      Array.from({ length: 7 }, (_, i) => utcDay(Date.now() - (6 - i) * DAY_MS)),
    );
    // Day by day over the window read after: a day that began between the two reads counts whole.
    const added = (field: keyof Tally) =>
      after.series.reduce(
        (sum, day) => sum + day[field] - (before.series.find((d) => d.day === day.day)?.[field] ?? 0),
        0,
      );
    expect(added('issued')).toBe(2);
    expect(added('refused')).toBe(1);
    expect(after.totals.issued - before.totals.issued).toBe(2);
    const reason = (u: UsageJson) => u.refusals_by_reason.find((r) => r.reason === 'action_not_granted')?.count ?? 0;
    expect(reason(after) - reason(before)).toBe(1);
    expect(after.top_agents[0]?.agent).toBe(DEMO_AGENT);
  });

  it('keeps days the hot log no longer holds, and one agent’s counts with ?agent=', async () => {
    const old = utcDay(Date.now() - 80 * DAY_MS);
    await env.AUDIT_DB.prepare(
      `INSERT INTO usage_daily (day, agent, audience, actions, outcome, reason, count)
       VALUES (?1, 'graph-indexer', ?2, 'graph:read', 'granted', '', 41),
              (?1, 'graph-indexer', ?2, 'graph:read', 'refused', 'rate_limited', 3),
              (?1, 'release-bot', ?2, 'tickets:comment', 'granted', '', 5)`,
    )
      .bind(old, TICKETS)
      .run();
    const all = await usage('?days=90');
    expect(all.series).toHaveLength(90);
    expect(all.series.find((day) => day.day === old)).toMatchObject({ issued: 46, refused: 3 });
    const one = await usage('?days=90&agent=graph-indexer');
    expect(one.agent).toBe('graph-indexer');
    expect(one.totals).toMatchObject({ issued: 41, refused: 3 });
    expect(one.refusals_by_reason).toEqual([{ reason: 'rate_limited', count: 3 }]);
    expect(one.top_agents.map((agent) => agent.agent)).toEqual(['graph-indexer']);
    // Outside a 30-day window.
    expect((await usage('?days=30&agent=graph-indexer')).totals.issued).toBe(0);
  });

  it('refuses a bad query with invalid_request, and callers without a reading role', async () => {
    for (const query of ['?days=0', '?days=367', '?days=abc', '?days=1.5', '?since=1', `?agent=${'a'.repeat(129)}`]) {
      const body = await expectError(
        await adminFetch(`/admin/usage${query}`, { headers: bearer(creds.auditor) }),
        400,
        'invalid_request',
      );
      expect(String(body.error_description)).toMatch(/days|agent|parameter/);
    }
    await expectError(await adminFetch('/admin/usage', { headers: bearer(creds.approver) }), 403, 'insufficient_scope');
    await expectError(await adminFetch('/admin/usage'), 401, 'invalid_token');
  });
});
