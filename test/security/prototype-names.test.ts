/**
 * Names that are properties of `Object.prototype` (issue 12 §4). An agent id, an approval's agent, a user
 * agent or an address comes from the caller: looked up in a plain object, `constructor` finds a function and
 * `__proto__` the prototype. Every such lookup is by own property (or a `Map`), so these names are as unknown
 * as any other.
 */
import { env, exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { UNVERIFIED_SAMPLE } from '../../worker/audit/intake';
import { decideRecord } from '../../worker/audit/record';
import { loadedPolicy } from '../../worker/policy/loaded';
import { adminFetch, bearer } from '../helpers/admin';
import { attestation } from '../helpers/attestation';
import { auditRecords, detailOf, drainAudit, lastAudit } from '../helpers/audit';
import { ISSUER } from '../helpers/demo';
import { exchange, expectError } from '../helpers/requests';

const PROTOTYPE_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf'];

describe('POST /token: a self-signed attestation whose iss = sub names a property of Object.prototype', () => {
  for (const name of PROTOTYPE_NAMES) {
    it(`refuses ${name} as an unknown agent`, async () => {
      const response = await exchange({ subject_token: await attestation({ claims: { iss: name, sub: name } }) });
      const body = await expectError(response, 400, 'invalid_grant');
      expect(body.error_description).toBe('the attestation could not be verified');
      const audit = await lastAudit();
      expect(audit.reason).toBe('unknown_agent');
      expect(detailOf(audit)).toEqual({ agent: name });
      expect(audit.agent).toBeNull();
    });
  }
});

describe('/admin/*: a path naming a property of Object.prototype', () => {
  for (const name of PROTOTYPE_NAMES) {
    it(`answers 404 for the agent ${name}, and for an approval of it`, async () => {
      await expectError(
        await adminFetch(`/admin/agents/${name}`, { headers: bearer(creds.auditor) }),
        404,
        'not_found',
      );
      const suspend = await exports.default.fetch(`${ISSUER}/admin/agents/${name}/suspend`, {
        method: 'POST',
        headers: { ...bearer(creds.admin), 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'test' }),
      });
      await expectError(suspend, 404, 'not_found');
      const approval = `${crypto.randomUUID()}.${name}`;
      await expectError(
        await adminFetch(`/admin/approvals/${approval}`, { headers: bearer(creds.approver) }),
        404,
        'not_found',
      );
    });
  }
});

describe('intake summaries: user agents and addresses that name properties of Object.prototype', () => {
  it('counts each as a name like any other', async () => {
    await drainAudit({ closeWindows: true });
    const before = (await auditRecords()).length;
    const shard = env.AUDIT_INTAKE.get(env.AUDIT_INTAKE.idFromName('intake-0'));
    const at = Date.now(); // one time for all, so they fall in one minute's window even if a minute turns
    const refusal = (name: string) =>
      decideRecord(
        { at, event: 'token.exchange', ip: name, userAgent: name, details: {} },
        { decision: 'refused', reason: 'malformed_attestation' },
        loadedPolicy().bundle.version,
      );
    for (let i = 0; i < UNVERIFIED_SAMPLE; i += 1) await shard.refused(refusal('sample'));
    for (const name of PROTOTYPE_NAMES) await shard.refused(refusal(name));
    await drainAudit({ closeWindows: true });
    const summary = (await auditRecords()).slice(before).find((record) => record.detail?.includes('"summary"'));
    const { ips, user_agents } = (detailOf(summary) as { summary: Record<string, Record<string, unknown>> }).summary;
    const expected = Object.fromEntries(PROTOTYPE_NAMES.map((name) => [name, 1]));
    for (const counts of [ips, user_agents]) {
      expect(Object.keys(counts ?? {}).sort()).toEqual(Object.keys(expected).sort());
      expect(Object.values(counts ?? {})).toEqual(PROTOTYPE_NAMES.map(() => 1));
    }
  });
});
