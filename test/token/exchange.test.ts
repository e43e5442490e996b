import { exports } from 'cloudflare:workers';
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { MAX_DESCRIPTION_CHARS } from '../../worker/core/token-request';
import { loadedPolicy } from '../../worker/policy/loaded';
import { auditRecords, lastAudit } from '../helpers/audit';
import { DEMO_AGENT, ISSUER, TICKETS } from '../helpers/demo';
import { exchange, exchangeFields, postForm, postJson, readError, TOKEN_EXCHANGE } from '../helpers/requests';
import { sha256Base64url } from '../helpers/tokens';

interface TokenResponse {
  access_token: string;
  issued_token_type: string;
  token_type: string;
  expires_in: number;
  scope: string;
  task_id: string;
}

async function brokerJwks() {
  const response = await exports.default.fetch(`${ISSUER}/.well-known/jwks.json`);
  return createLocalJWKSet((await response.json()) as JSONWebKeySet);
}

describe('POST /token: RFC 8693 token exchange', () => {
  it('exchanges an attestation and a task for a scoped access token (JSON)', async () => {
    const description = 'Summarise ticket T-1234 and post the summary as a comment';
    const response = await exchange({ task: { description, id: 'task-1234' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const body = (await response.json()) as TokenResponse;
    expect(body).toMatchObject({
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: 'Bearer',
      expires_in: 300,
      scope: 'tickets:read tickets:comment',
      task_id: 'task-1234',
    });

    const header = decodeProtectedHeader(body.access_token);
    expect(header).toMatchObject({ typ: 'at+jwt', alg: 'ES256' });
    expect(typeof header.kid).toBe('string');
    const { payload } = await jwtVerify(body.access_token, await brokerJwks(), {
      issuer: ISSUER,
      audience: TICKETS,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    });
    expect(payload).toMatchObject({
      iss: ISSUER,
      sub: DEMO_AGENT,
      client_id: DEMO_AGENT,
      aud: TICKETS,
      scope: 'tickets:read tickets:comment',
      task: { id: 'task-1234', hash: await sha256Base64url(description) },
      owner: 'alice@example.com',
      policy: loadedPolicy().bundle.version,
    });
    expect(payload.nbf).toBe(payload.iat);
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(300);
    expect(typeof payload.jti).toBe('string');
  });

  it('accepts the form encoding with task as a JSON string', async () => {
    const response = await postForm(await exchangeFields({ scope: 'tickets:read' }));
    expect(response.status).toBe(200);
    const body = (await response.json()) as TokenResponse;
    expect(body.scope).toBe('tickets:read');
  });

  it('accepts resource (RFC 8707) as a synonym of audience', async () => {
    const response = await exchange({ audience: undefined, resource: TICKETS });
    expect(response.status).toBe(200);
  });

  it('generates a task id when the task names none', async () => {
    const body = (await (await exchange()).json()) as TokenResponse;
    expect(body.task_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('honours a requested TTL below the cap', async () => {
    const body = (await (await exchange({ requested_ttl: 60 })).json()) as TokenResponse;
    expect(body.expires_in).toBe(60);
  });

  it('issues a different jti for every token', async () => {
    const first = (await (await exchange()).json()) as TokenResponse;
    const second = (await (await exchange()).json()) as TokenResponse;
    const jwks = await brokerJwks();
    const a = await jwtVerify(first.access_token, jwks, { issuer: ISSUER, audience: TICKETS });
    const b = await jwtVerify(second.access_token, jwks, { issuer: ISSUER, audience: TICKETS });
    expect(a.payload.jti).not.toBe(b.payload.jti);
  });
});

describe('POST /token: the audit record', () => {
  it('records who was granted what, for which task and why, with the token id', async () => {
    const description = 'Post the weekly digest on ticket T-9';
    const response = await exchange({
      task: { description, id: 'digest-9', justification: 'weekly digest' },
      requested_ttl: 900,
    });
    const body = (await response.json()) as TokenResponse;
    const { payload } = await jwtVerify(body.access_token, await brokerJwks(), { issuer: ISSUER, audience: TICKETS });
    const record = await lastAudit();
    expect(record).toMatchObject({
      event: 'token.exchange',
      decision: 'granted',
      errorCode: null,
      reason: null,
      agent: DEMO_AGENT,
      owner: 'alice@example.com',
      attestationVia: 'self',
      audience: TICKETS,
      requestedActions: 'tickets:read tickets:comment',
      grantedActions: 'tickets:read tickets:comment',
      taskId: 'digest-9',
      taskDescription: description,
      taskHash: await sha256Base64url(description),
      justification: 'weekly digest',
      requestedTtl: 900,
      policyVersion: loadedPolicy().bundle.version,
      tokenJti: payload.jti,
      tokenExp: payload.exp,
    });
    expect(typeof record.attestationJti).toBe('string');
    expect(JSON.parse(record.detail ?? '{}')).toEqual({ grants: ['support-tickets'], ttl: 600, ttlCapped: true });
  });

  it('records the request origin', async () => {
    await exchange({}).then((r) => r.arrayBuffer());
    const fields = await exchangeFields();
    await postJson(fields, { 'cf-connecting-ip': '203.0.113.7', 'user-agent': 'agent-sdk/1.0' });
    expect(await lastAudit()).toMatchObject({ ip: '203.0.113.7', userAgent: 'agent-sdk/1.0' });
  });

  it('writes exactly one record per decision, granted or refused', async () => {
    const before = (await auditRecords()).length;
    await exchange().then((r) => r.arrayBuffer());
    await exchange({ scope: 'tickets:delete' }).then((r) => r.arrayBuffer());
    await postJson('{').then((r) => r.arrayBuffer());
    // In the order decided: D1's is the order of arrival, and the three travel three ways.
    const records = (await auditRecords()).slice(before).sort((a, b) => a.at - b.at);
    expect(records.map((r) => r.decision)).toEqual(['granted', 'refused', 'refused']);
    expect(records.map((r) => r.errorCode)).toEqual([null, 'invalid_scope', 'invalid_request']);
  });
});

describe('POST /token: bad input changes nothing and gets a clear error', () => {
  const cases: Array<[string, () => Promise<Response>, number, string]> = [
    [
      'a content type other than form or JSON',
      async () =>
        exports.default.fetch(`${ISSUER}/token`, {
          method: 'POST',
          headers: { 'content-type': 'text/plain' },
          body: 'hello',
        }),
      415,
      'invalid_request',
    ],
    [
      'no content type',
      async () => exports.default.fetch(`${ISSUER}/token`, { method: 'POST', body: new Uint8Array([1, 2]) }),
      415,
      'invalid_request',
    ],
    ['malformed JSON', () => postJson('{"grant_type":'), 400, 'invalid_request'],
    ['a JSON array', () => postJson('[]'), 400, 'invalid_request'],
    ['JSON null', () => postJson('null'), 400, 'invalid_request'],
    ['an empty body', () => postJson(''), 400, 'invalid_request'],
    ['an unknown grant type', async () => exchange({ grant_type: 'client_credentials' }), 400, 'invalid_request'],
    ['a missing grant type', async () => exchange({ grant_type: undefined }), 400, 'invalid_request'],
    ['a missing subject_token', async () => exchange({ subject_token: undefined }), 400, 'invalid_request'],
    [
      'an unknown subject_token_type',
      async () => exchange({ subject_token_type: 'urn:x:saml' }),
      400,
      'invalid_request',
    ],
    ['a missing audience', async () => exchange({ audience: undefined }), 400, 'invalid_request'],
    [
      'audience and resource that disagree',
      async () => exchange({ resource: 'https://other.example.com' }),
      400,
      'invalid_request',
    ],
    ['a missing scope', async () => exchange({ scope: undefined }), 400, 'invalid_request'],
    ['an empty scope', async () => exchange({ scope: '   ' }), 400, 'invalid_request'],
    [
      'an action with forbidden characters',
      async () => exchange({ scope: 'tickets:read <script>' }),
      400,
      'invalid_request',
    ],
    ['a missing task', async () => exchange({ task: undefined }), 400, 'invalid_request'],
    ['a task that is not an object', async () => exchange({ task: 42 }), 400, 'invalid_request'],
    ['a task with an empty description', async () => exchange({ task: { description: '' } }), 400, 'invalid_request'],
    [
      'an oversized task description',
      async () => exchange({ task: { description: 'x'.repeat(MAX_DESCRIPTION_CHARS + 1) } }),
      400,
      'invalid_request',
    ],
    [
      'an unknown task field',
      async () => exchange({ task: { description: 'd', approver: 'me' } }),
      400,
      'invalid_request',
    ],
    ['a task id with spaces', async () => exchange({ task: { description: 'd', id: 'a b' } }), 400, 'invalid_request'],
    ['a negative requested_ttl', async () => exchange({ requested_ttl: -5 }), 400, 'invalid_request'],
    ['a fractional requested_ttl', async () => exchange({ requested_ttl: 1.5 }), 400, 'invalid_request'],
    ['a non-numeric requested_ttl', async () => exchange({ requested_ttl: 'soon' }), 400, 'invalid_request'],
    ['a delegation actor_token', async () => exchange({ actor_token: 'x' }), 400, 'invalid_request'],
    ['a subject_token that is not a JWT', async () => exchange({ subject_token: 'not-a-jwt' }), 400, 'invalid_grant'],
    [
      'a form body with task that is not JSON',
      async () => postForm({ ...(await exchangeFields()), task: '{oops' }),
      400,
      'invalid_request',
    ],
    [
      'a form body repeating a parameter',
      async () => {
        const body = new URLSearchParams(
          Object.entries(await exchangeFields({ task: '{"description":"d"}' })) as [string, string][],
        );
        body.append('audience', 'https://graph.example.com');
        return exports.default.fetch(`${ISSUER}/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body,
        });
      },
      400,
      'invalid_request',
    ],
    [
      'a body over 16 KiB',
      () => postJson({ grant_type: TOKEN_EXCHANGE, padding: 'x'.repeat(17 * 1024) }),
      413,
      'invalid_request',
    ],
    [
      'a body over 16 KiB without Content-Length',
      async () => {
        const chunk = new TextEncoder().encode('x'.repeat(4096));
        const stream = new ReadableStream<Uint8Array>({
          start(controller) {
            for (let i = 0; i < 5; i += 1) controller.enqueue(chunk);
            controller.close();
          },
        });
        return exports.default.fetch(`${ISSUER}/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: stream,
        });
      },
      413,
      'invalid_request',
    ],
  ];

  it.each(cases)('refuses %s', async (_name, send, status, code) => {
    const before = await auditRecords();
    const response = await send();
    expect(response.status).toBe(status);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const body = await readError(response);
    expect(body.error).toBe(code);
    expect(body).not.toHaveProperty('access_token');
    const after = await auditRecords();
    expect(after.length).toBe(before.length + 1);
    expect(after.at(-1)).toMatchObject({ decision: 'refused', errorCode: code, tokenJti: null });
  });

  it('answers 405 to other methods on /token', async () => {
    const response = await exports.default.fetch(`${ISSUER}/token`);
    expect(response.status).toBe(405);
    expect((await readError(response)).error).toBe('method_not_allowed');
  });

  it('answers 404 in the error shape for an unknown path', async () => {
    const response = await exports.default.fetch(`${ISSUER}/nope`);
    expect(response.status).toBe(404);
    expect((await readError(response)).error).toBe('not_found');
  });
});
