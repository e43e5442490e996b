/**
 * A token is one exact string (issue 12 §3). jose's base64url decoder skips whitespace and padding and ignores
 * unused bits, so a copy of a live token with a space, tab or newline in its signature, `==` at its end or
 * another last character verifies like the original. The broker refuses every such spelling wherever it
 * takes a token: `/introspect`, `/revoke`, `/tasks/{id}/complete`, the attestation and the DPoP proof of
 * `/token`.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../worker/audit/schema';
import { evictAgentObject } from '../helpers/agent-object';
import { auditRecords, matchingAudit } from '../helpers/audit';
import { dpopKey, dpopProof } from '../helpers/dpop';
import { exchangeFields, expectError, postForm, postJson, postJsonTo } from '../helpers/requests';
import { headerSpellings, nonCanonicalSpellings } from '../helpers/spellings';
import { introspect, issue } from '../helpers/tokens';

beforeEach(async () => {
  await evictAgentObject();
});

describe('POST /introspect: a non-canonical spelling of a live token', () => {
  it('is inactive, while the token as issued is active', async () => {
    const { token } = await issue();
    for (const spelling of nonCanonicalSpellings(token)) {
      expect(await introspect(spelling.token), spelling.name).toEqual({ active: false });
    }
    expect(await introspect(token)).toMatchObject({ active: true });
  });
});

describe('POST /revoke (RFC 7009): a non-canonical spelling of a live token', () => {
  it('is answered 200 as an invalid token is, and revokes nothing', async () => {
    const { token } = await issue();
    for (const spelling of nonCanonicalSpellings(token)) {
      const response = await postForm({ token: spelling.token }, '/revoke');
      expect(response.status, spelling.name).toBe(200);
      expect(await response.json()).toEqual({});
    }
    expect(await introspect(token)).toMatchObject({ active: true });
  });
});

describe('POST /tasks/{task_id}/complete: a non-canonical spelling of the task token', () => {
  it('is refused with 401 invalid_token, and the task goes on', async () => {
    const issued = await issue();
    for (const spelling of headerSpellings(issued.token)) {
      const response = await postJsonTo(
        `/tasks/${issued.taskId}/complete`,
        {},
        { authorization: `Bearer ${spelling.token}` },
      );
      expect(response.headers.get('www-authenticate'), spelling.name).toMatch(/^Bearer /);
      await expectError(response, 401, 'invalid_token');
    }
    expect(await introspect(issued.token)).toMatchObject({ active: true });
  });
});

describe('POST /token: non-canonical spellings', () => {
  it('refuses a non-canonical attestation as invalid_grant, and does not use it up', async () => {
    const fields = await exchangeFields();
    const attestation = String(fields.subject_token);
    const malformed = (record: AuditEvent) => record.reason === 'malformed_attestation';
    const before = (await auditRecords()).filter(malformed).length;
    for (const [i, spelling] of nonCanonicalSpellings(attestation).entries()) {
      const response = await postJson({ ...fields, subject_token: spelling.token });
      await expectError(response, 400, 'invalid_grant');
      await matchingAudit(malformed, before + i + 1);
    }
    expect((await postJson(fields)).status).toBe(200);
  });

  it('refuses a non-canonical DPoP proof as invalid_dpop_proof', async () => {
    const key = await dpopKey();
    const proof = await dpopProof(key);
    for (const spelling of headerSpellings(proof)) {
      const response = await postJson(await exchangeFields(), { DPoP: spelling.token });
      await expectError(response, 400, 'invalid_dpop_proof');
    }
    const accepted = await postJson(await exchangeFields(), { DPoP: proof });
    expect(accepted.status, await accepted.clone().text()).toBe(200);
  });
});
