/**
 * A client that hangs up mid-body (issue 12 §5): the body stream errors before it ends. That is the
 * client's doing, not a broker fault: refused as `invalid_request` (`client_disconnected`), recorded as
 * such, never a 500 `server_error` or an `internal_error` record.
 */
import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { bearer } from '../helpers/admin';
import { lastAudit } from '../helpers/audit';
import { ISSUER } from '../helpers/demo';
import { exchangeFields, expectError } from '../helpers/requests';

/**
 * Posts a body that declares its whole length but sends only `head` before the client goes away: the
 * stream is aborted, as a connection reset part-way through the upload leaves it.
 */
async function postBroken(path: string, head: string, headers: Record<string, string> = {}): Promise<Response> {
  const bytes = new TextEncoder().encode(head);
  const { readable, writable } = new FixedLengthStream(bytes.byteLength * 2);
  const sent = exports.default.fetch(`${ISSUER}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: readable,
  });
  const writer = writable.getWriter();
  await writer.write(bytes);
  await writer.abort(new Error('connection reset by peer'));
  return sent;
}

describe('a body whose stream errors part-way', () => {
  it('is refused at POST /token as invalid_request, recorded as client_disconnected', async () => {
    const body = JSON.stringify(await exchangeFields());
    const response = await postBroken('/token', body.slice(0, body.length / 2));
    await expectError(response, 400, 'invalid_request');
    const audit = await lastAudit();
    expect(audit).toMatchObject({ event: 'token.exchange', decision: 'refused', reason: 'client_disconnected' });
  });

  it('is refused at an admin write as invalid_request, recorded as client_disconnected, and changes nothing', async () => {
    const response = await postBroken('/admin/agents/demo-agent/suspend', '{"reason": "inc', bearer(creds.admin));
    await expectError(response, 400, 'invalid_request');
    expect(await lastAudit()).toMatchObject({
      event: 'admin.agent.suspend',
      decision: 'refused',
      reason: 'client_disconnected',
    });
    const agent = await exports.default.fetch(`${ISSUER}/admin/agents/demo-agent`, { headers: bearer(creds.auditor) });
    expect(((await agent.json()) as { suspended: boolean }).suspended).toBe(false);
  });

  it('is refused at POST /revoke as invalid_request, recorded as client_disconnected', async () => {
    const response = await postBroken('/revoke', '{"token": "eyJ');
    await expectError(response, 400, 'invalid_request');
    expect(await lastAudit()).toMatchObject({ event: 'token.revoke', reason: 'client_disconnected' });
  });
});
