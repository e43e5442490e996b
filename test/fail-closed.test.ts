import { env } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AgentState } from '../worker/agents/agent-state';
import { SigningKeys } from '../worker/keys/signing-keys';
import { auditRecords, exchange, lastAudit, readError } from './helpers';

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
  it('refuses with 503 when the signing keys cannot be had', async () => {
    vi.spyOn(SigningKeys.prototype, 'activeKey').mockRejectedValue(new Error('key store down'));
    await expectRefusedUnavailable(await exchange());
    expect(await lastAudit()).toMatchObject({ decision: 'refused', reason: 'signing_unavailable' });
  });

  it('refuses with 503 and audits it when the agent state throws', async () => {
    vi.spyOn(AgentState.prototype, 'admit').mockRejectedValue(new Error('storage exploded'));
    await expectRefusedUnavailable(await exchange());
    expect(await lastAudit()).toMatchObject({ decision: 'refused', reason: 'store_unavailable', tokenJti: null });
  });

  it('refuses with 503 when the agent state does not answer in time', async () => {
    vi.spyOn(AgentState.prototype, 'admit').mockReturnValue(new Promise(() => {}));
    await expectRefusedUnavailable(await exchange());
    expect(await lastAudit()).toMatchObject({ decision: 'refused', reason: 'store_unavailable' });
  });

  it('never returns a token whose audit record could not be written', async () => {
    const before = (await auditRecords()).filter((r) => r.decision === 'granted').length;
    const prepare = env.AUDIT_DB.prepare.bind(env.AUDIT_DB);
    vi.spyOn(env.AUDIT_DB, 'prepare').mockImplementation((query: string) => {
      if (/^insert into "?audit_events"?/i.test(query)) throw new Error('D1 unavailable');
      return prepare(query);
    });
    await expectRefusedUnavailable(await exchange());
    vi.restoreAllMocks();
    const granted = (await auditRecords()).filter((r) => r.decision === 'granted').length;
    expect(granted).toBe(before);
  });

  it('issues again once the stores answer', async () => {
    expect((await exchange()).status).toBe(200);
  });
});
