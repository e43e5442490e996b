/**
 * The billing meter, on (this project sets `BILLING_METER`): what a token exchange bills, counted from the
 * worker's real Durable Objects and local D1, read through `GET /admin/meter`.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import type { MeterCounts } from '../../worker/durable/meter';
import { adminFetch, bearer } from '../helpers/admin';
import { agentObject, evictAgentObject } from '../helpers/agent-object';
import { drainAudit } from '../helpers/audit';
import { exchange } from '../helpers/requests';

async function meter(): Promise<MeterCounts> {
  const response = await adminFetch('/admin/meter', { headers: bearer(creds.admin) });
  expect(response.status).toBe(200);
  return ((await response.json()) as { counts: MeterCounts }).counts;
}

/** `after` minus `before`, per count. */
function delta(before: MeterCounts, after: MeterCounts): MeterCounts {
  const entries = Object.entries(after).map(([key, value]) => [key, value - before[key as keyof MeterCounts]]);
  return Object.fromEntries(entries) as MeterCounts;
}

describe('GET /admin/meter, meter on', () => {
  it('counts a token exchange: its invocation, the agent object request and rows it wrote', async () => {
    await exchange(); // the signing key, the lease and the agent's object exist before the count
    const before = await meter();
    expect((await exchange()).status).toBe(200);
    const after = delta(before, await meter());
    // The exchange and the meter read that took `after`.
    expect(after.workerInvocations).toBe(2);
    // The one call to the agent's object (the lease is held, the signing key cached).
    expect(after.doRequests).toBeGreaterThanOrEqual(1);
    // The replay mark and the decision's record, each a row (and index rows) in the agent's SQLite.
    expect(after.doSqlRowsWritten).toBeGreaterThanOrEqual(2);
    expect(after.doSqlRowsRead).toBeGreaterThan(0);
    expect(after.queueMessagesSent + after.r2ClassA + after.r2ClassB).toBe(0);
  });

  it("counts D1's rows written once the exchange's record reaches D1", async () => {
    expect((await exchange()).status).toBe(200);
    const before = await meter();
    await drainAudit();
    const after = delta(before, await meter());
    expect(after.d1Queries).toBeGreaterThanOrEqual(1);
    // At least the record's row in audit_events; each of its indexes adds one.
    expect(after.d1RowsWritten).toBeGreaterThanOrEqual(2);
    // The agent's object handing its records to the writer: a Durable Object request of its own.
    expect(after.doRequests).toBeGreaterThanOrEqual(1);
  });

  it('counts each alarm that fires, and the setAlarm that scheduled it', async () => {
    // No alarm set before the exchange (an earlier test's may be due later), so that it sets one.
    await runInDurableObject(agentObject(), (_instance, state) => state.storage.deleteAlarm());
    await evictAgentObject();
    const before = await meter();
    expect((await exchange()).status).toBe(200);
    const scheduled = delta(before, await meter());
    expect(scheduled.doKvRowsWritten).toBeGreaterThanOrEqual(1);
    const fired = await meter();
    expect(await runDurableObjectAlarm(agentObject())).toBe(true);
    expect(delta(fired, await meter()).doAlarms).toBe(1);
  });
});
