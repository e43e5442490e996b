/**
 * Every string the broker takes in is well-formed UTF-16 (issue 12 §1). A JSON body can spell a lone
 * surrogate (`"\ud800"`), which Cedar, the audit log and headers cannot take: such a request is refused as
 * `invalid_request` when it is read, before anything is consumed (the attestation, a rate-limit slot), and
 * never answered with a 500.
 */
import { exports } from 'cloudflare:workers';
import { SignJWT } from 'jose';
import { beforeEach, describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import type { AuditEvent } from '../../worker/audit/schema';
import { adminFetch, bearer } from '../helpers/admin';
import { evictAgentObject } from '../helpers/agent-object';
import { demoClaims, demoSigningKey } from '../helpers/attestation';
import { auditRecords, detailOf, lastAudit, matchingAudit } from '../helpers/audit';
import { DEMO_KID, ISSUER, TICKETS } from '../helpers/demo';
import { dpopKey, dpopProof } from '../helpers/dpop';
import { exchangeFields, expectError, postJson } from '../helpers/requests';

const LONE_SURROGATES = { high: '\ud800', low: '\udfff', reversed: '\udfff\ud800' };

beforeEach(async () => {
  await evictAgentObject();
});

/** A JSON body as a client would write it: the lone surrogate as a `\u` escape, which JSON allows. */
function rawJson(fields: Record<string, unknown>): string {
  return JSON.stringify(fields);
}

describe('POST /token: a lone surrogate in a field', () => {
  for (const field of ['audience', 'resource'] as const) {
    for (const [name, surrogate] of Object.entries(LONE_SURROGATES)) {
      it(`refuses ${field} ending in a ${name} surrogate as invalid_request, and the attestation stays unused`, async () => {
        const fields = await exchangeFields();
        const { audience: _audience, ...rest } = fields;
        const response = await postJson(rawJson({ ...rest, [field]: `${TICKETS}${surrogate}` }));
        await expectError(response, 400, 'invalid_request');
        expect((await lastAudit()).reason).toBe('malformed_body');

        // The same attestation, asked for the same task without the surrogate: nothing was consumed.
        const again = await postJson(rawJson(fields));
        expect(again.status, await again.clone().text()).toBe(200);
      });
    }
  }

  it('refuses one in the task, in a member name, or nested, before the attestation is used', async () => {
    const bodies = [
      { task: { description: `Summarise T-1234${LONE_SURROGATES.high}` } },
      { task: { description: 'Summarise T-1234', justification: LONE_SURROGATES.low } },
      { [`x${LONE_SURROGATES.high}`]: 'y' },
      { extra: [{ deep: [LONE_SURROGATES.low] }] },
    ];
    const fields = await exchangeFields();
    for (const body of bodies) {
      const response = await postJson(rawJson({ ...fields, ...body }));
      await expectError(response, 400, 'invalid_request');
    }
    const again = await postJson(rawJson(fields));
    expect(again.status, await again.clone().text()).toBe(200);
  });

  it('keeps a well-formed pair (an emoji) as the string it is', async () => {
    const response = await postJson(
      rawJson(await exchangeFields({ task: { description: 'Summarise T-1234 \ud83d\ude80 for the launch' } })),
    );
    expect(response.status, await response.clone().text()).toBe(200);
  });
});

describe('POST /token: a lone surrogate in a signed claim', () => {
  it('refuses an attestation whose jti is not well-formed as malformed, naming no agent', async () => {
    const token = await new SignJWT(demoClaims({ jti: `id-${LONE_SURROGATES.high}` }))
      .setProtectedHeader({ alg: 'ES256', kid: DEMO_KID })
      .sign(await demoSigningKey());
    const malformed = (record: AuditEvent) => record.reason === 'malformed_attestation';
    const before = (await auditRecords()).filter(malformed).length;
    const response = await postJson(await exchangeFields({ subject_token: token }));
    await expectError(response, 400, 'invalid_grant');
    const audit = (await matchingAudit(malformed, before + 1)).at(-1);
    expect(audit?.agent).toBeNull();
  });

  it('refuses a DPoP proof whose jti is not well-formed as invalid_dpop_proof, and the attestation stays unused', async () => {
    const key = await dpopKey();
    const fields = await exchangeFields();
    const response = await postJson(fields, { dpop: await dpopProof(key, { jti: `p-${LONE_SURROGATES.low}` }) });
    await expectError(response, 400, 'invalid_dpop_proof');
    const again = await postJson(fields, { dpop: await dpopProof(key) });
    expect(again.status, await again.clone().text()).toBe(200);
  });
});

describe('/admin/*: a lone surrogate in a body', () => {
  it('refuses a suspend reason with one as invalid_request, and the agent is not suspended', async () => {
    const response = await exports.default.fetch(`${ISSUER}/admin/agents/demo-agent/suspend`, {
      method: 'POST',
      headers: { ...bearer(creds.admin), 'content-type': 'application/json' },
      body: rawJson({ reason: `incident ${LONE_SURROGATES.low}` }),
    });
    await expectError(response, 400, 'invalid_request');
    const agent = await adminFetch('/admin/agents/demo-agent', { headers: bearer(creds.auditor) });
    expect(((await agent.json()) as { suspended: boolean }).suspended).toBe(false);
  });
});

describe('query and path parameters', () => {
  // Percent-decoding is UTF-8 decoding, which has no lone surrogates (an encoded one, %ED%A0%80, is invalid
  // UTF-8: in a path it stays as it was sent, in a query it decodes to U+FFFD, as URLSearchParams does): a URL
  // cannot carry one to a route. This holds that property.
  it('reach the routes, and their records, as well-formed strings', async () => {
    const agent = await adminFetch('/admin/agents/%ED%A0%80', { headers: bearer(creds.auditor) });
    await expectError(agent, 404, 'not_found');
    const named = detailOf(await lastAudit()).agent;
    expect(typeof named === 'string' && named.isWellFormed()).toBe(true);

    // Cut to 128 units for the record, an id does not leave half of a pair behind.
    const long = await adminFetch(`/admin/agents/${'a'.repeat(127)}%F0%9F%9A%80`, { headers: bearer(creds.auditor) });
    await expectError(long, 404, 'not_found');
    expect(detailOf(await lastAudit()).agent).toBe('a'.repeat(127));

    const audit = await adminFetch('/admin/audit?agent=%ED%A0%80&event=%uD800', { headers: bearer(creds.auditor) });
    expect(audit.status, await audit.clone().text()).toBe(200);
    const { query } = detailOf(await lastAudit()) as { query: Record<string, unknown> };
    expect(query.agent).toBe('\ufffd\ufffd\ufffd');
    expect(query.event).toBe('%uD800');
  });
});
