/**
 * Errors that say the fix: each public description names the field and the form it takes, in words RFC 6749
 * §5.2 allows (printable ASCII without `"` or `\`), without saying what an attacker may not learn.
 */
import { exports } from 'cloudflare:workers';
import { PUBLIC_DESCRIPTIONS } from '@tessera/verify';
import { type AgentVariables, requireAgent } from '@tessera/verify/hono';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { QUERY_HINTS } from '../../worker/audit/query';
import { NOT_FOUND_HINTS, publicEcho, REASONS } from '../../worker/core/errors';
import { FIELD_HINTS } from '../../worker/core/token-request';
import { ADMIN_BODY_HINTS, AGENT_LIST_HINTS } from '../../worker/routes/admin';
import { adminFetch, bearer } from '../helpers/admin';
import { incidentTask, openApproval, poll } from '../helpers/approvals';
import { attestation } from '../helpers/attestation';
import { useForwardClock } from '../helpers/clock';
import { ISSUER, TICKETS } from '../helpers/demo';
import { exchange, exchangeFields, expectError, postForm } from '../helpers/requests';
import { brokerFetch, clientKey, issueBound, RESOURCE, resourceProof } from '../helpers/verify';

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

describe('every text a refusal can carry is in the RFC 6749 section 5.2 set, by construction', () => {
  it('holds for every reason of the table', () => {
    for (const [reason, spec] of Object.entries(REASONS)) expect(spec.description, reason).toMatch(RFC_6749_TEXT);
  });

  it('holds for every hint table, and a field named with its hint', () => {
    const tables = { FIELD_HINTS, QUERY_HINTS, ADMIN_BODY_HINTS, AGENT_LIST_HINTS };
    for (const [table, hints] of Object.entries(tables)) {
      for (const [field, hint] of hints)
        expect(`invalid ${field}: ${hint}`, `${table} ${field}`).toMatch(RFC_6749_TEXT);
    }
    for (const [kind, hint] of Object.entries(NOT_FOUND_HINTS)) expect(hint, kind).toMatch(RFC_6749_TEXT);
  });

  it("holds for the verifier's public descriptions of every code", () => {
    for (const [code, text] of Object.entries(PUBLIC_DESCRIPTIONS)) expect(text, code).toMatch(RFC_6749_TEXT);
  });

  it('holds for any input, echoed', () => {
    for (const input of [
      '"quoted"',
      'back\\slash',
      'tab\tnew\r\nline',
      '\u0000\u007f\u00e9',
      '\ud800 \ud83d\ude80',
      'x'.repeat(500),
    ]) {
      const echoed = publicEcho(input);
      expect(echoed, JSON.stringify(input)).toMatch(RFC_6749_TEXT);
      expect(echoed.length).toBeLessThanOrEqual(64);
    }
  });
});

describe('/admin/*: a body member that fails its schema', () => {
  it("is described in our words, not zod's (which quote the values it expected)", async () => {
    const response = await adminFetch('/admin/kill-switch', {
      method: 'PUT',
      headers: bearer(creds.admin),
      body: { engaged: 'maybe', reason: 'drill' },
    });
    expect(await description(response, 400, 'invalid_request')).toBe('invalid engaged: engaged is true or false');
  });

  it('names a cursor that is too long in our words', async () => {
    const response = await adminFetch(`/admin/agents?cursor=${'x'.repeat(65)}`, { headers: bearer(creds.admin) });
    expect(await description(response, 400, 'invalid_request')).toBe(
      'invalid cursor: cursor is the next_cursor of the previous page',
    );
  });
});

describe("requireAgent (@tessera/verify/hono): the verifier's challenges", () => {
  it('describe a proof for another URL in its words, not with the URL the proof names', async () => {
    const app = new Hono<{ Variables: AgentVariables }>();
    app.post('/tickets/:id/comments', requireAgent({ issuer: ISSUER, audience: TICKETS, fetch: brokerFetch }), (c) =>
      c.json({}),
    );
    const key = await clientKey();
    const token = await issueBound(key);
    const proof = await resourceProof(token, key, { htu: 'https://tickets.example.com/"x"\\y' });
    const response = await app.request(RESOURCE, {
      method: 'POST',
      headers: { authorization: `DPoP ${token}`, dpop: proof },
    });
    expect(response.status).toBe(401);
    const body = (await response.json()) as { error: string; error_description: string };
    expect(body).toEqual({ error: 'invalid_dpop_proof', error_description: 'the DPoP proof is for another URL' });
    expect(response.headers.get('www-authenticate')).toContain('error_description="the DPoP proof is for another URL"');
  });
});
