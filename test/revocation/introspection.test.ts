/**
 * `POST /introspect` (RFC 7662): the API a token is for, authenticated with its credential (§2.1), learns
 * whether it is active and, if so, its claims; anything else, whether it never was a token of this broker,
 * was tampered with, has expired, was revoked by any path, is held while the global kill switch is engaged,
 * or is another API's token, is `{ active: false }` and nothing more. A caller that does not authenticate
 * as a declared API is refused with 401 `invalid_client` and learns nothing.
 *
 * Every test runs on a frozen clock that only moves forward across the file (an agent-wide revocation
 * leaves a cut-off behind it), and starts with a fresh rate-limit bucket (the agent's object is evicted).
 */
import { exports } from 'cloudflare:workers';
import { base64url, decodeJwt, decodeProtectedHeader } from 'jose';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { loadedPolicy } from '../../worker/policy/loaded';
import { agentObject, evictAgentObject } from '../helpers/agent-object';
import { attestation, forgedCopy } from '../helpers/attestation';
import { useForwardClock } from '../helpers/clock';
import { DEMO_AGENT, GRAPH, ISSUER, TICKETS } from '../helpers/demo';
import { expectError, postForm, readError } from '../helpers/requests';
import {
  demoIntrospectionCredential,
  type Issued,
  introspect,
  introspectionAuthorization,
  issue,
} from '../helpers/tokens';

const { bundle } = loadedPolicy();

const clock = useForwardClock();

beforeEach(async () => {
  // A fresh rate-limit bucket: an evicted object starts with a full one.
  await evictAgentObject();
});

function request(path: string, init: { method?: string; body: unknown; headers?: Record<string, string> }) {
  return exports.default.fetch(`${ISSUER}${path}`, {
    method: init.method ?? 'POST',
    headers: { 'content-type': 'application/json', ...init.headers },
    body: JSON.stringify(init.body),
  });
}

/** POSTs form-encoded `fields` to `/introspect` as the tickets API, or with the `authorization` given. */
const introspectForm = (
  fields: Record<string, string>,
  authorization: Record<string, string> = introspectionAuthorization(TICKETS),
) => postForm(fields, '/introspect', authorization);

/** POSTs a JSON body to `/introspect` as the tickets API. */
const introspectJson = (body: unknown) =>
  request('/introspect', { body, headers: introspectionAuthorization(TICKETS) });

function admin(path: string, body: unknown = { reason: 'incident INC-7' }, method = 'POST') {
  return request(path, { method, body, headers: { authorization: `Bearer ${creds.admin}` } });
}

async function expectOk(response: Response): Promise<void> {
  expect(response.status, await response.clone().text()).toBe(200);
}

/** `token` with its payload changed and its signature kept. */
function tampered(token: string): string {
  const [header, , signature] = token.split('.');
  const payload = { ...decodeJwt(token), scope: 'tickets:read tickets:comment tickets:delete' };
  return [header, base64url.encode(JSON.stringify(payload)), signature].join('.');
}

/** The token with `alg: none` (RFC 7519 §6) and no signature, under the broker's own `kid`. */
function unsignedCopy(token: string): string {
  const [, payload] = token.split('.');
  const header = { ...decodeProtectedHeader(token), alg: 'none' };
  return `${base64url.encode(JSON.stringify(header))}.${payload}.`;
}

describe('POST /introspect: an active token (RFC 7662 §2.2)', () => {
  it('answers active with the token type and every claim of the token', async () => {
    const issued = await issue('task-introspect');
    const body = await introspect(issued.token);
    const now = Math.floor(clock.ms / 1000);
    expect(body).toEqual({
      active: true,
      token_type: 'Bearer',
      iss: ISSUER,
      sub: DEMO_AGENT,
      client_id: DEMO_AGENT,
      aud: TICKETS,
      iat: now,
      nbf: now,
      exp: now + bundle.settings.tokens.defaultTtl,
      jti: issued.jti,
      scope: 'tickets:read tickets:comment',
      task: { id: 'task-introspect', hash: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) },
      owner: 'alice@example.com',
      policy: bundle.version,
      status: { status_list: { idx: expect.any(Number), uri: expect.stringMatching(/\/status\/sl-\d+-\d+$/) } },
    });
    expect(body).toEqual({ active: true, token_type: 'Bearer', ...decodeJwt(issued.token) });
  });

  it('accepts a JSON body as well as the form encoding', async () => {
    const issued = await issue();
    const response = await introspectJson({ token: issued.token });
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toMatchObject({ active: true, jti: issued.jti });
  });

  it('accepts a token_type_hint', async () => {
    const issued = await issue();
    const response = await introspectForm({ token: issued.token, token_type_hint: 'access_token' });
    expect(await response.json()).toMatchObject({ active: true, jti: issued.jti });
  });

  it('is active until the second before the token expires', async () => {
    const issued = await issue(undefined, 60);
    clock.set((issued.exp - 1) * 1000);
    expect(await introspect(issued.token)).toMatchObject({ active: true, jti: issued.jti });
  });
});

describe('POST /introspect: inactive tokens say nothing more', () => {
  const notOurs: Array<[string, (issued: Issued) => Promise<string>]> = [
    ['garbage', async () => 'not-a-token'],
    ['a token whose payload was changed', async (issued) => tampered(issued.token)],
    ["a copy signed by another key under the broker's kid", (issued) => forgedCopy(issued.token)],
    ['an unsigned copy (alg none)', async (issued) => unsignedCopy(issued.token)],
    ["an agent's attestation (a JWT the broker did not issue)", async () => attestation()],
  ];

  it.each(notOurs)('answers inactive for %s', async (_, make) => {
    const issued = await issue();
    expect(await introspect(await make(issued))).toEqual({ active: false });
    // The genuine token is untouched.
    expect(await introspect(issued.token)).toMatchObject({ active: true });
  });

  it('answers inactive once the token has expired', async () => {
    const issued = await issue(undefined, 60);
    clock.set((issued.exp + bundle.settings.attestations.clockSkew + 1) * 1000);
    expect(await introspect(issued.token)).toEqual({ active: false });
  });

  // RFC 7519 §4.1.4: on or after `exp` the token must not be accepted. The broker judges its own tokens on
  // its own clock, so no skew applies.
  it('answers inactive from the very second of its exp', async () => {
    const issued = await issue(undefined, 60);
    clock.set(issued.exp * 1000);
    expect(await introspect(issued.token)).toEqual({ active: false });
  });
});

describe('POST /introspect: revoked tokens', () => {
  afterEach(async () => {
    if ((await agentObject().status()).suspended) {
      await expectOk(await admin(`/admin/agents/${DEMO_AGENT}/resume`, { reason: 'test cleanup' }));
    }
  });

  const paths: Array<[string, (issued: Issued) => Promise<Response>]> = [
    ['revoked by its holder (RFC 7009)', (issued) => request('/revoke', { body: { token: issued.token } })],
    [
      'of a completed task',
      (issued) =>
        request(`/tasks/${issued.taskId}/complete`, {
          body: {},
          headers: { authorization: `Bearer ${issued.token}` },
        }),
    ],
    ['revoked by an admin by its jti', (issued) => admin(`/admin/tokens/${issued.jti}/revoke`)],
    ['of a task revoked by an admin', (issued) => admin(`/admin/tasks/${issued.taskId}/revoke`)],
    ['of an agent revoked by an admin', () => admin(`/admin/agents/${DEMO_AGENT}/revoke`)],
    ['of a suspended agent', () => admin(`/admin/agents/${DEMO_AGENT}/suspend`)],
  ];

  it.each(paths)('answers inactive for a token %s', async (_, revoke) => {
    const issued = await issue();
    expect(await introspect(issued.token)).toMatchObject({ active: true });
    await expectOk(await revoke(issued));
    expect(await introspect(issued.token)).toEqual({ active: false });
  });
});

describe('POST /introspect: the global kill switch', () => {
  it('answers inactive for every token while the kill switch is engaged', async () => {
    const issued = await issue();
    expect(await introspect(issued.token)).toMatchObject({ active: true });

    const engage = await admin('/admin/kill-switch', { engaged: true, reason: 'drill' }, 'PUT');
    try {
      await expectOk(engage);
      expect(await engage.json()).toMatchObject({ engaged: true });
      expect(await introspect(issued.token)).toEqual({ active: false });
    } finally {
      await expectOk(await admin('/admin/kill-switch', { engaged: false, reason: 'drill over' }, 'PUT'));
    }
    const fresh = await issue();
    expect(await introspect(fresh.token)).toMatchObject({ active: true });
  });
});

describe('POST /introspect: bad requests', () => {
  it('refuses a request without a token with 400 invalid_request', async () => {
    for (const response of [
      await introspectForm({}),
      await introspectForm({ token: '' }),
      await introspectJson({}),
      await introspectJson({ token: 42 }),
    ]) {
      expect(response.status).toBe(400);
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect((await readError(response)).error).toBe('invalid_request');
    }
  });

  it('refuses a content type other than form or JSON with 415 invalid_request', async () => {
    const issued = await issue();
    const response = await exports.default.fetch(`${ISSUER}/introspect`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', ...introspectionAuthorization(TICKETS) },
      body: issued.token,
    });
    expect(response.status).toBe(415);
    expect((await readError(response)).error).toBe('invalid_request');
  });
});

describe('POST /introspect: the API authenticates (RFC 7662 §2.1)', () => {
  /** Checks a 401 `invalid_client` with a Basic challenge (RFC 6749 §5.2), not cached, and nothing of the token. */
  async function expectUnauthenticated(response: Response): Promise<void> {
    const body = await expectError(response, 401, 'invalid_client');
    expect(response.headers.get('www-authenticate')).toBe('Basic realm="tessera-introspection"');
    expect(body).not.toHaveProperty('active');
    expect(body).not.toHaveProperty('owner');
  }

  const basic = (user: string, password: string) => ({ authorization: `Basic ${btoa(`${user}:${password}`)}` });

  const refused: { name: string; headers: (token: string) => Record<string, string> }[] = [
    { name: 'no Authorization header', headers: () => ({}) },
    { name: 'the token itself as a bearer credential', headers: (token) => ({ authorization: `Bearer ${token}` }) },
    { name: 'an admin credential as a bearer credential', headers: () => ({ authorization: `Bearer ${creds.admin}` }) },
    {
      name: "another API's credential",
      headers: () => introspectionAuthorization(TICKETS, demoIntrospectionCredential(GRAPH)),
    },
    {
      name: 'a wrong secret',
      headers: () => introspectionAuthorization(TICKETS, `tessera_introspection.${'A'.repeat(43)}`),
    },
    {
      name: 'the stored hash as the secret',
      headers: () => introspectionAuthorization(TICKETS, bundle.apis[TICKETS]?.introspectionSecretSha256 ?? ''),
    },
    {
      name: 'an audience not declared in apis.yaml',
      headers: () => introspectionAuthorization('https://unknown.example.com', demoIntrospectionCredential(TICKETS)),
    },
    { name: 'an empty password', headers: () => introspectionAuthorization(TICKETS, '') },
    { name: 'no colon', headers: () => ({ authorization: `Basic ${btoa(TICKETS)}` }) },
    { name: 'not base64', headers: () => ({ authorization: 'Basic %%%' }) },
    {
      name: 'a bad % escape',
      headers: () => basic('https%E0%A4%A://tickets.example.com', demoIntrospectionCredential(TICKETS)),
    },
    {
      name: 'a name of Object.prototype as audience',
      headers: () => basic('constructor', demoIntrospectionCredential(TICKETS)),
    },
  ];
  for (const { name, headers } of refused) {
    it(`refuses a caller with ${name}: 401 invalid_client, and says nothing of the token`, async () => {
      const issued = await issue();
      await expectUnauthenticated(await introspectForm({ token: issued.token }, headers(issued.token)));
    });
  }

  it('refuses an unauthenticated caller before it reads the body', async () => {
    await expectUnauthenticated(await introspectForm({}, {}));
  });

  it('accepts the audience as client id sent without form encoding', async () => {
    const issued = await issue();
    const response = await introspectForm(
      { token: issued.token },
      basic(TICKETS, demoIntrospectionCredential(TICKETS)),
    );
    await expectOk(response);
    expect(await response.json()).toMatchObject({ active: true, jti: issued.jti });
  });

  it("answers another API's caller about a live token with active false and nothing more (§2.2)", async () => {
    const issued = await issue();
    expect(await introspect(issued.token, GRAPH)).toEqual({ active: false });
    expect(await introspect(issued.token, TICKETS)).toMatchObject({ active: true, owner: 'alice@example.com' });
  });
});
