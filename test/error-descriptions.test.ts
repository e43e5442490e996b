/**
 * Errors that say the fix: each public description names the field and the form it takes, in words RFC 6749
 * §5.2 allows (printable ASCII without `"` or `\`), without saying what an attacker may not learn.
 */
import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import creds from '../scripts/demo/admin-credentials.json';
import { adminFetch, bearer } from './admin-helpers';
import {
  attestation,
  exchange,
  exchangeFields,
  expectError,
  ISSUER,
  incidentTask,
  openApproval,
  poll,
  postForm,
  useForwardClock,
} from './helpers';

/** RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E. */
const RFC_6749_TEXT = /^[\x20\x21\x23-\x5b\x5d-\x7e]+$/;

async function description(response: Response, status: number, code: string): Promise<string> {
  const body = await expectError(response, status, code);
  const text = String(body.error_description);
  expect(text).toMatch(RFC_6749_TEXT);
  return text;
}

const clock = useForwardClock();

describe('POST /token: descriptions that name the fix', () => {
  it('says a JSON body was sent with the form content type (curl -d without -H)', async () => {
    const response = await exports.default.fetch(`${ISSUER}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: JSON.stringify(await exchangeFields()),
    });
    expect(await description(response, 400, 'invalid_request')).toContain('Content-Type: application/json');
  });

  it('says scopes are separated by spaces when they come with commas', async () => {
    const response = await exchange({ scope: 'tickets:read,tickets:comment' });
    expect(await description(response, 400, 'invalid_request')).toMatch(/separated by spaces, not commas/);
  });

  it('says requested_ttl is a whole number of seconds', async () => {
    const response = await postForm(await exchangeFields({ requested_ttl: '5m' }));
    const text = await description(response, 400, 'invalid_request');
    expect(text).toContain('requested_ttl');
    expect(text).toContain('whole number of seconds');
  });

  it('says what the task is when a member is not one of its own, and echoes no value', async () => {
    const response = await exchange({ task: { description: 'x', owner: '"<script>' } });
    const text = await description(response, 400, 'invalid_request');
    expect(text).toContain('description, id and justification');
    expect(text).not.toContain('<');
  });

  it('names the term a poll changed: the task id it must repeat', async () => {
    const pending = await openApproval();
    clock.advance(10);
    const { id: _id, ...withoutId } = pending.task;
    const response = await poll(pending, { task: withoutId });
    const text = await description(response, 400, 'invalid_grant');
    expect(text).toContain('task.id');
    expect(text).toContain('task_id of the pending answer');
  });

  it('names the term a poll changed: the audience', async () => {
    const pending = await openApproval(incidentTask());
    clock.advance(10);
    const response = await poll(pending, { audience: 'https://tickets.example.com' });
    expect(await description(response, 400, 'invalid_grant')).toContain('audience');
  });

  it('keeps saying nothing about which key or agent failed', async () => {
    const response = await exchange({ subject_token: await attestation({ claims: { iss: 'nobody', sub: 'nobody' } }) });
    expect(await description(response, 400, 'invalid_grant')).toBe('the attestation could not be verified');
  });
});

describe('/admin/*: descriptions that name the fix', () => {
  it('names the role a call needs', async () => {
    const pending = await openApproval();
    const response = await adminFetch(`/admin/approvals/${pending.id}`, {
      method: 'POST',
      headers: bearer(creds.auditor),
      body: { decision: 'approve', reason: 'looks fine' },
    });
    const text = await description(response, 403, 'insufficient_scope');
    expect(text).toContain('needs the role approver');
  });

  it('says approval, not agent, token or task, for an approval it does not know', async () => {
    const response = await adminFetch(`/admin/approvals/${crypto.randomUUID()}.demo-agent`, {
      headers: bearer(creds.approver),
    });
    expect(await description(response, 404, 'not_found')).toBe('no such approval');
  });

  it('says the accepted time formats for since and until', async () => {
    const response = await adminFetch('/admin/audit?since=yesterday', { headers: bearer(creds.auditor) });
    const text = await description(response, 400, 'invalid_request');
    expect(text).toContain('since');
    expect(text).toContain('ISO 8601');
  });

  it('lists the parameters when one is unknown, echoing it safely', async () => {
    const response = await adminFetch(`/admin/audit?${encodeURIComponent('agent"\r\nX')}=1`, {
      headers: bearer(creds.auditor),
    });
    const text = await description(response, 400, 'invalid_request');
    expect(text).toContain('the parameters are agent, task, decision');
  });

  it('echoes a repeated form key only as safe printable text', async () => {
    const response = await exports.default.fetch(`${ISSUER}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `${encodeURIComponent('a\r\nSet-Cookie: x=1')}=1&${encodeURIComponent('a\r\nSet-Cookie: x=1')}=2`,
    });
    const text = await description(response, 400, 'invalid_request');
    expect(text).toContain('is repeated');
    expect(text).not.toMatch(/[\r\n]/);
  });
});
