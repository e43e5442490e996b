/**
 * A DPoP-bound token presented as the caller's credential (RFC 9449 §7.1, §7.2), at the broker's own
 * endpoints that take one: `POST /tasks/{id}/complete` and `POST /revoke`. A copy of the token without its
 * key ends nothing: sent as `Bearer`, without a proof, or with a proof of another request, token or key, it
 * is refused with 401 and a `DPoP` challenge, audited, and the token stays active. With a proof of the
 * request the change is made, and the same proof is not accepted twice.
 */
import { exports } from 'cloudflare:workers';
import { accessTokenHash, DPOP_CLOCK_TOLERANCE_SECONDS } from '@tessera/verify';
import { decodeJwt } from 'jose';
import { beforeEach, describe, expect, it } from 'vitest';
import { loadedPolicy } from '../../worker/policy/loaded';
import { evictAgentObject } from '../helpers/agent-object';
import { detailOf, lastAudit } from '../helpers/audit';
import { nowSeconds, useForwardClock } from '../helpers/clock';
import { ISSUER } from '../helpers/demo';
import { type DpopKey, dpopKey, dpopProof } from '../helpers/dpop';
import { exchangeFields, expectError, postJson, TASK_DESCRIPTION } from '../helpers/requests';
import { introspect } from '../helpers/tokens';

const { maxAge } = loadedPolicy().bundle.settings.dpop;

useForwardClock();

beforeEach(async () => {
  await evictAgentObject();
});

interface Bound {
  token: string;
  jti: string;
  taskId: string;
  key: DpopKey;
}

/** A token bound to `key` (a fresh one by default), for a fresh task unless `taskId` is given. */
async function boundToken(key?: DpopKey, taskId: string = crypto.randomUUID()): Promise<Bound> {
  const holder = key ?? (await dpopKey());
  const fields = await exchangeFields({ task: { description: TASK_DESCRIPTION, id: taskId } });
  const response = await postJson(fields, { DPoP: await dpopProof(holder) });
  expect(response.status, await response.clone().text()).toBe(200);
  const body = (await response.json()) as { access_token: string; token_type: string };
  expect(body.token_type).toBe('DPoP');
  return { token: body.access_token, jti: String(decodeJwt(body.access_token).jti), taskId, key: holder };
}

const completeUrl = (taskId: string) => `${ISSUER}/tasks/${taskId}/complete`;

/** A proof of `POST url` for `bound`'s token, signed by its key, unless `options` say otherwise. */
async function proofOf(bound: Bound, url: string, options: Parameters<typeof dpopProof>[1] = {}): Promise<string> {
  return dpopProof(bound.key, { htu: url, ath: await accessTokenHash(bound.token), ...options });
}

function complete(taskId: string, authorization: string | undefined, proof?: string): Promise<Response> {
  const headers = new Headers({ 'content-type': 'application/json' });
  if (authorization !== undefined) headers.set('authorization', authorization);
  if (proof !== undefined) headers.set('DPoP', proof);
  return exports.default.fetch(completeUrl(taskId), { method: 'POST', headers, body: '{}' });
}

function revoke(token: string, proof?: string): Promise<Response> {
  return exports.default.fetch(`${ISSUER}/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(proof !== undefined && { DPoP: proof }) },
    body: new URLSearchParams({ token }).toString(),
  });
}

const isActive = async (token: string) => (await introspect(token)).active as boolean;

/**
 * Checks a 401 with the spec's error `code`, a `DPoP` challenge naming it, the refusal audited under
 * `event` with `reason` (and `check`, which check of the proof failed), and the token still active.
 */
async function expectRefused(
  response: Response,
  expected: { code: 'invalid_token' | 'invalid_dpop_proof'; event: string; reason: string; check?: string },
  bound: Bound,
): Promise<void> {
  await expectError(response, 401, expected.code);
  const challenge = response.headers.get('www-authenticate') ?? '';
  expect(challenge).toMatch(/^DPoP /);
  expect(challenge).toContain(`error="${expected.code}"`);
  expect(challenge).toContain('algs="');
  const audit = await lastAudit();
  expect(audit).toMatchObject({ event: expected.event, decision: 'refused', reason: expected.reason });
  if (expected.check !== undefined) expect(detailOf(audit).check).toBe(expected.check);
  expect(await isActive(bound.token)).toBe(true);
}

const COMPLETE = 'task.complete';
const REVOKE = 'token.revoke';

describe('POST /tasks/{task_id}/complete with a DPoP-bound token', () => {
  it('refuses the token presented as Bearer, and the task goes on', async () => {
    const bound = await boundToken();
    const response = await complete(bound.taskId, `Bearer ${bound.token}`);
    await expectRefused(response, { code: 'invalid_token', event: COMPLETE, reason: 'dpop_bound_token' }, bound);
  });

  it('refuses the token presented as Bearer even with a valid proof', async () => {
    const bound = await boundToken();
    const proof = await proofOf(bound, completeUrl(bound.taskId));
    const response = await complete(bound.taskId, `Bearer ${bound.token}`, proof);
    await expectRefused(response, { code: 'invalid_token', event: COMPLETE, reason: 'dpop_bound_token' }, bound);
  });

  it('refuses the DPoP scheme without a proof', async () => {
    const bound = await boundToken();
    const response = await complete(bound.taskId, `DPoP ${bound.token}`);
    await expectRefused(response, { code: 'invalid_token', event: COMPLETE, reason: 'dpop_bound_token' }, bound);
  });

  const badProofs: { name: string; check: string; proof: (bound: Bound) => Promise<string> }[] = [
    {
      name: 'signed by another key',
      check: 'dpop_key_mismatch',
      proof: async (bound) => proofOf({ ...bound, key: await dpopKey() }, completeUrl(bound.taskId)),
    },
    {
      name: 'for another token (ath)',
      check: 'dpop_wrong_token',
      proof: async (bound) =>
        proofOf({ ...bound, token: (await boundToken(bound.key)).token }, completeUrl(bound.taskId)),
    },
    {
      name: 'without ath',
      check: 'dpop_wrong_token',
      proof: (bound) => dpopProof(bound.key, { htu: completeUrl(bound.taskId) }),
    },
    { name: 'for the token endpoint', check: 'dpop_wrong_url', proof: (bound) => proofOf(bound, `${ISSUER}/token`) },
    {
      name: 'for another task',
      check: 'dpop_wrong_url',
      proof: (bound) => proofOf(bound, completeUrl('another-task')),
    },
    {
      name: 'for another method',
      check: 'dpop_wrong_method',
      proof: (bound) => proofOf(bound, completeUrl(bound.taskId), { htm: 'GET' }),
    },
    {
      name: 'older than the proof max age',
      check: 'dpop_stale',
      proof: (bound) =>
        proofOf(bound, completeUrl(bound.taskId), { iat: nowSeconds() - maxAge - DPOP_CLOCK_TOLERANCE_SECONDS - 1 }),
    },
  ];
  for (const bad of badProofs) {
    it(`refuses a proof ${bad.name}`, async () => {
      const bound = await boundToken();
      const response = await complete(bound.taskId, `DPoP ${bound.token}`, await bad.proof(bound));
      await expectRefused(
        response,
        { code: 'invalid_dpop_proof', event: COMPLETE, reason: 'dpop_proof_refused', check: bad.check },
        bound,
      );
    });
  }

  it('completes the task with the DPoP scheme and a proof of the request, and accepts that proof once', async () => {
    const bound = await boundToken();
    const proof = await proofOf(bound, completeUrl(bound.taskId));
    const response = await complete(bound.taskId, `DPoP ${bound.token}`, proof);
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await response.json()).toEqual({ task_id: bound.taskId, completed: true });
    expect(await lastAudit()).toMatchObject({ event: COMPLETE, decision: 'granted', tokenJti: bound.jti });
    expect(await isActive(bound.token)).toBe(false);

    const replayed = await complete(bound.taskId, `DPoP ${bound.token}`, proof);
    await expectError(replayed, 401, 'invalid_dpop_proof');
    expect(replayed.headers.get('www-authenticate')).toMatch(/^DPoP .*error="invalid_dpop_proof"/);
    expect(await lastAudit()).toMatchObject({ event: COMPLETE, decision: 'refused', reason: 'dpop_proof_reused' });
  });

  it('refuses a token that is not bound presented with the DPoP scheme', async () => {
    const key = await dpopKey();
    const taskId = crypto.randomUUID();
    const response = await postJson(await exchangeFields({ task: { description: TASK_DESCRIPTION, id: taskId } }));
    const { access_token: token } = (await response.json()) as { access_token: string };
    const unbound: Bound = { token, jti: String(decodeJwt(token).jti), taskId, key };
    const refused = await complete(taskId, `DPoP ${token}`, await proofOf(unbound, completeUrl(taskId)));
    await expectRefused(refused, { code: 'invalid_token', event: COMPLETE, reason: 'dpop_unbound_token' }, unbound);
  });
});

describe('POST /revoke with a DPoP-bound token', () => {
  it('refuses the token without a proof, and it stays active', async () => {
    const bound = await boundToken();
    await expectRefused(
      await revoke(bound.token),
      { code: 'invalid_token', event: REVOKE, reason: 'dpop_bound_token' },
      bound,
    );
  });

  it('refuses a proof of another request', async () => {
    const bound = await boundToken();
    const response = await revoke(bound.token, await proofOf(bound, completeUrl(bound.taskId)));
    await expectRefused(
      response,
      { code: 'invalid_dpop_proof', event: REVOKE, reason: 'dpop_proof_refused', check: 'dpop_wrong_url' },
      bound,
    );
  });

  it('revokes the token with a proof of the request, and accepts that proof once', async () => {
    const bound = await boundToken();
    const proof = await proofOf(bound, `${ISSUER}/revoke`);
    const response = await revoke(bound.token, proof);
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await response.json()).toEqual({});
    expect(await lastAudit()).toMatchObject({ event: REVOKE, decision: 'granted', tokenJti: bound.jti });
    expect(await isActive(bound.token)).toBe(false);

    const replayed = await revoke(bound.token, proof);
    await expectError(replayed, 401, 'invalid_dpop_proof');
    expect(await lastAudit()).toMatchObject({ event: REVOKE, decision: 'refused', reason: 'dpop_proof_reused' });
  });
});
