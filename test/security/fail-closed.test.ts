/**
 * `/token` fails closed: when the agent's object or the signing keys do not answer, no token leaves and the
 * refusal is recorded. D1 is not on the path: while it is down, tokens are still issued and their records
 * wait in the agents' objects (see `test/audit/forwarding.test.ts` for their arrival once it is back).
 */
import { env, exports } from 'cloudflare:workers';
import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AgentState } from '../../worker/agents/agent-state';
import { SigningKeys } from '../../worker/keys/signing-keys';
import { auditRecords, drainAudit, lastAudit } from '../helpers/audit';
import { expectConsole } from '../helpers/console';
import { DEMO_AGENT } from '../helpers/demo';
import { exchange, readError } from '../helpers/requests';

afterEach(() => {
  vi.restoreAllMocks();
});

async function expectRefusedUnavailable(response: Response) {
  expect(response.status).toBe(503);
  expect(response.headers.get('cache-control')).toBe('no-store');
  const body = await readError(response);
  expect(body.error).toBe('temporarily_unavailable');
  expect(body).not.toHaveProperty('access_token');
}

describe('POST /token fails closed', () => {
  // First in this file: the isolate has no signing key cached yet, so the key store is asked.
  it('refuses with 503 when the signing keys cannot be had, and records it in the agent’s chain', async () => {
    vi.spyOn(SigningKeys.prototype, 'activeKey').mockRejectedValue(new Error('key store down'));
    await expectRefusedUnavailable(await exchange());
    expect(await lastAudit()).toMatchObject({
      decision: 'refused',
      reason: 'signing_unavailable',
      chain: `agent:${DEMO_AGENT}`,
    });
  });

  // Still no key cached: the one before was refused.
  it('refuses with 503 when the signing keys do not answer in time, and records it', async () => {
    const activeKey = vi.spyOn(SigningKeys.prototype, 'activeKey').mockReturnValue(new Promise(() => {}));
    await expectRefusedUnavailable(await exchange());
    expect(activeKey).toHaveBeenCalled();
    vi.restoreAllMocks();
    const record = await lastAudit();
    expect(record).toMatchObject({ decision: 'refused', reason: 'signing_unavailable', chain: `agent:${DEMO_AGENT}` });
    expect(record.detail).toContain('no answer within');
  });

  it('answers the JWKS with 503 when the signing keys do not answer in time', async () => {
    vi.spyOn(SigningKeys.prototype, 'jwks').mockReturnValue(new Promise(() => {}));
    await expectRefusedUnavailable(await exports.default.fetch(`${env.ISSUER}/.well-known/jwks.json`));
  });

  it('refuses with 503 when the agent’s object throws, and the refusal is recorded elsewhere', async () => {
    vi.spyOn(AgentState.prototype, 'exchange').mockRejectedValue(new Error('storage exploded'));
    vi.spyOn(AgentState.prototype, 'record').mockRejectedValue(new Error('storage exploded'));
    const logged = expectConsole('error');
    await expectRefusedUnavailable(await exchange());
    expect(logged).toHaveBeenCalledExactlyOnceWith(
      'agent object could not record a refusal',
      DEMO_AGENT,
      expect.objectContaining({ reason: 'store_unavailable' }),
    );
    vi.restoreAllMocks();
    expect(await lastAudit()).toMatchObject({
      decision: 'refused',
      reason: 'store_unavailable',
      agent: DEMO_AGENT,
      tokenJti: null,
    });
    expect((await lastAudit()).chain).toMatch(/^intake:/);
  });

  it('refuses with 503 when the agent’s object does not answer in time', async () => {
    vi.spyOn(AgentState.prototype, 'exchange').mockReturnValue(new Promise(() => {}));
    await expectRefusedUnavailable(await exchange());
    vi.restoreAllMocks();
    expect(await lastAudit()).toMatchObject({ decision: 'refused', reason: 'store_unavailable', tokenJti: null });
  });

  it('issues while D1 is down: the token waits for nothing but its record in the agent’s object', async () => {
    await drainAudit();
    const prepare = env.AUDIT_DB.prepare.bind(env.AUDIT_DB);
    const d1 = vi.spyOn(env.AUDIT_DB, 'prepare').mockImplementation((query: string) => {
      throw new Error(`D1 unavailable: ${query.slice(0, 20)}`);
    });
    const response = await exchange();
    expect(response.status).toBe(200);
    expect(d1).not.toHaveBeenCalled();
    d1.mockImplementation(prepare);
    const { access_token } = (await response.json()) as { access_token: string };
    const granted = (await auditRecords()).filter((r) => r.tokenJti === decodeJwt(access_token).jti);
    expect(granted).toHaveLength(1);
  });

  it('issues again once the stores answer', async () => {
    expect((await exchange()).status).toBe(200);
  });
});
