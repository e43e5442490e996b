/**
 * A token's status list entry costs no Durable Object row of its own: its attestation's replay mark carries
 * it, and the index comes from the isolate's block, reserved once per 1,024 tokens. In this configuration
 * (`AUDIT_HAND_OFF` off: each object sends its own records) a granted token writes 3 SQL rows, exactly as on
 * the commit before status lists (332e8f8: 30 for 10 tokens, the same test); `npm run bench`, with the
 * hand-off on, counts the 2 that docs/benchmarks.md reports.
 */
import { describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import type { MeterCounts } from '../../worker/durable/meter';
import { adminFetch, bearer } from '../helpers/admin';
import { exchange } from '../helpers/requests';

async function meter(): Promise<MeterCounts> {
  const response = await adminFetch('/admin/meter', { headers: bearer(creds.admin) });
  expect(response.status).toBe(200);
  return ((await response.json()) as { counts: MeterCounts }).counts;
}

describe('DO rows written per granted token, with status lists', () => {
  it('adds none', async () => {
    // The signing key, the lease, the agent's object and the isolate's block of indexes exist before the count.
    expect((await exchange()).status).toBe(200);
    const tokens = 10;
    const before = await meter();
    for (let i = 0; i < tokens; i += 1) expect((await exchange()).status).toBe(200);
    const after = await meter();
    expect((after.doSqlRowsWritten - before.doSqlRowsWritten) / tokens).toBe(3);
    // One call per token: the agent's object; no reserve (the block holds 1,024), no status list object.
    expect(after.doRequests - before.doRequests).toBe(tokens + 1);
  });
});
