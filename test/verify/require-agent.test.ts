/**
 * `requireAgent`: the Hono middleware of a downstream API, here a tickets API built in the test and guarded
 * for `tickets:comment`, verifying tokens of the real broker in this isolate. It lets a request through with
 * the verified claims as `c.get('agent')`, and otherwise answers with an RFC 6750 / RFC 9449 challenge and an
 * `{ error, error_description }` body.
 *
 * Every test runs on a frozen clock that only moves forward across the file, and starts with a fresh
 * rate-limit bucket (the agent's object is evicted).
 */
import { DPOP_ALGORITHMS } from '@tessera/verify';
import { type AgentVariables, type RequireAgentOptions, requireAgent } from '@tessera/verify/hono';
import { Hono } from 'hono';
import { beforeEach, describe, expect, it } from 'vitest';
import { evictAgentObject } from '../helpers/agent-object';
import { forgedCopy } from '../helpers/attestation';
import { nowSeconds, useForwardClock } from '../helpers/clock';
import { ISSUER, TICKETS } from '../helpers/demo';
import { exchange, postForm } from '../helpers/requests';
import { demoIntrospectionCredential, issue } from '../helpers/tokens';
import {
  brokerFetch,
  clientKey,
  fakeIssuer,
  introspectionWith,
  issueBound,
  RESOURCE,
  resourceProof,
} from '../helpers/verify';

useForwardClock();

beforeEach(async () => {
  await evictAgentObject();
});

const REALM = `realm="${TICKETS}"`;

/** The tickets API: `POST /tickets/:id/comments` needs `tickets:comment`, and echoes who called. */
function ticketsApi(options: Partial<RequireAgentOptions> = {}) {
  const app = new Hono<{ Variables: AgentVariables }>();
  app.post(
    '/tickets/:id/comments',
    requireAgent({ issuer: ISSUER, audience: TICKETS, actions: ['tickets:comment'], fetch: brokerFetch, ...options }),
    (c) => {
      const agent = c.get('agent');
      return c.json({ sub: agent.sub, owner: agent.owner, task: agent.task.id, jkt: agent.cnf?.jkt ?? null });
    },
  );
  return app;
}

function post(app: Hono<{ Variables: AgentVariables }>, headers: HeadersInit = {}, url = RESOURCE) {
  return app.request(url, { method: 'POST', headers });
}

interface Refusal {
  status: number;
  challenge: string | null;
  body: { error: string; error_description: string };
}

/** A refusal's status, `WWW-Authenticate` and body, checking it is not to be cached and has the OAuth shape. */
async function refusalOf(response: Response): Promise<Refusal> {
  expect(response.headers.get('cache-control')).toBe('no-store');
  const body = (await response.json()) as Refusal['body'];
  expect(Object.keys(body).sort()).toEqual(['error', 'error_description']);
  expect(typeof body.error_description).toBe('string');
  return { status: response.status, challenge: response.headers.get('www-authenticate'), body };
}

const DPOP_ALGS = `algs="${DPOP_ALGORITHMS.join(' ')}"`;

describe('requireAgent: a valid token', () => {
  it('lets the request through with the verified claims as c.get("agent")', async () => {
    const issued = await issue('task-require-agent');
    const response = await post(ticketsApi(), { authorization: `Bearer ${issued.token}` });
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await response.json()).toEqual({
      sub: 'demo-agent',
      owner: 'alice@example.com',
      task: 'task-require-agent',
      jkt: null,
    });
  });

  it('accepts the Bearer scheme in any case', async () => {
    const { token } = await issue();
    const response = await post(ticketsApi(), { authorization: `bearer ${token}` });
    expect(response.status, await response.clone().text()).toBe(200);
  });

  it('accepts a DPoP-bound token with the DPoP scheme and a valid proof', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const response = await post(ticketsApi(), {
      authorization: `DPoP ${token}`,
      dpop: await resourceProof(token, key),
    });
    expect(response.status, await response.clone().text()).toBe(200);
    expect(((await response.json()) as { jkt: string }).jkt).toEqual(expect.any(String));
  });

  it('checks htu against publicUrl when the API sits behind a proxy', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const app = ticketsApi({ publicUrl: (c) => c.req.url.replace('http://internal.local', TICKETS) });
    const headers = { authorization: `DPoP ${token}`, dpop: await resourceProof(token, key) };
    const internal = 'http://internal.local/tickets/T-1234/comments';
    expect((await post(ticketsApi(), headers, internal)).status).toBe(401);
    const response = await post(app, { ...headers, dpop: await resourceProof(token, key) }, internal);
    expect(response.status, await response.clone().text()).toBe(200);
  });
});

describe('requireAgent: no or a bad credential (RFC 6750 §3)', () => {
  it('answers 401 with a bare Bearer challenge when there is no Authorization header', async () => {
    const refusal = await refusalOf(await post(ticketsApi()));
    expect(refusal.status).toBe(401);
    expect(refusal.challenge).toBe(`Bearer ${REALM}`);
  });

  it('names the realm given in the options', async () => {
    const refusal = await refusalOf(await post(ticketsApi({ realm: 'tickets' })));
    expect(refusal.challenge).toBe('Bearer realm="tickets"');
  });

  it('answers 401 invalid_token for a token that does not verify', async () => {
    const { token } = await issue();
    const refusal = await refusalOf(await post(ticketsApi(), { authorization: `Bearer ${await forgedCopy(token)}` }));
    expect(refusal.status).toBe(401);
    expect(refusal.body.error).toBe('invalid_token');
    expect(refusal.challenge).toMatch(
      new RegExp(`^Bearer ${REALM}, error="invalid_token", error_description="[^"]*"$`),
    );
  });

  it.each([
    ['another scheme', 'Basic ZGVtbzpkZW1v'],
    ['no token', 'Bearer'],
    ['two tokens', 'Bearer abc def'],
  ])('answers 401 invalid_token for an Authorization header with %s', async (_, authorization) => {
    const refusal = await refusalOf(await post(ticketsApi(), { authorization }));
    expect(refusal.status).toBe(401);
    expect(refusal.body.error).toBe('invalid_token');
    expect(refusal.challenge).toContain('error="invalid_token"');
  });

  it('answers 401 invalid_token for a token revoked at the broker, when introspecting', async () => {
    const { token } = await issue();
    expect((await postForm({ token }, '/revoke')).status).toBe(200);
    const refusal = await refusalOf(
      await post(ticketsApi({ introspection: { credential: demoIntrospectionCredential(TICKETS) } }), {
        authorization: `Bearer ${token}`,
      }),
    );
    expect(refusal.status).toBe(401);
    expect(refusal.body.error).toBe('invalid_token');
  });

  it('answers 403 insufficient_scope for a token without the route action', async () => {
    const response = await exchange({ scope: 'tickets:read' });
    expect(response.status, await response.clone().text()).toBe(200);
    const { access_token: token } = (await response.json()) as { access_token: string };
    const refusal = await refusalOf(await post(ticketsApi(), { authorization: `Bearer ${token}` }));
    expect(refusal.status).toBe(403);
    expect(refusal.body.error).toBe('insufficient_scope');
    expect(refusal.challenge).toMatch(new RegExp(`^Bearer ${REALM}, error="insufficient_scope"`));
  });
});

describe('requireAgent: DPoP (RFC 9449 §7)', () => {
  it('answers 401 with a DPoP challenge naming the algorithms for a bound token sent as Bearer', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const refusal = await refusalOf(await post(ticketsApi(), { authorization: `Bearer ${token}` }));
    expect(refusal.status).toBe(401);
    expect(refusal.body.error).toBe('invalid_token');
    expect(refusal.challenge).toMatch(/^DPoP /);
    expect(refusal.challenge).toContain(REALM);
    expect(refusal.challenge).toContain('error="invalid_token"');
    expect(refusal.challenge).toContain(DPOP_ALGS);
  });

  it('answers 401 invalid_dpop_proof for two DPoP headers', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const headers = new Headers({ authorization: `DPoP ${token}` });
    headers.append('DPoP', await resourceProof(token, key));
    headers.append('DPoP', await resourceProof(token, key));
    const refusal = await refusalOf(await post(ticketsApi(), headers));
    expect(refusal.status).toBe(401);
    expect(refusal.body.error).toBe('invalid_dpop_proof');
    expect(refusal.challenge).toMatch(/^DPoP /);
    expect(refusal.challenge).toContain('error="invalid_dpop_proof"');
    expect(refusal.challenge).toContain(DPOP_ALGS);
  });

  it('answers 401 invalid_dpop_proof for a proof of another URL', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const dpop = await resourceProof(token, key, { htu: `${TICKETS}/tickets/T-9999/comments` });
    const refusal = await refusalOf(await post(ticketsApi(), { authorization: `DPoP ${token}`, dpop }));
    expect(refusal.status).toBe(401);
    expect(refusal.body.error).toBe('invalid_dpop_proof');
    expect(refusal.challenge).toMatch(/^DPoP /);
  });

  it.each([
    ['an htm with a line break', { htm: 'POST\r\nX-Injected: 1' }],
    ['an htu with a line break', { htu: `${TICKETS}/x\r\nX-Injected: 1` }],
  ])('answers 401 invalid_dpop_proof, not a 500, for a proof with %s', async (_, claims) => {
    const key = await clientKey();
    const token = await issueBound(key);
    const dpop = await resourceProof(token, key, claims);
    const response = await post(ticketsApi(), { authorization: `DPoP ${token}`, dpop });
    expect(response.status, await response.clone().text()).toBe(401);
    const refusal = await refusalOf(response);
    expect(refusal.body.error).toBe('invalid_dpop_proof');
    expect(response.headers.get('x-injected')).toBeNull();
  });

  it('answers 401 with a DPoP challenge for the DPoP scheme without a proof', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const refusal = await refusalOf(await post(ticketsApi(), { authorization: `DPoP ${token}` }));
    expect(refusal.status).toBe(401);
    expect(refusal.body.error).toBe('invalid_token');
    expect(refusal.challenge).toMatch(/^DPoP /);
    expect(refusal.challenge).toContain(DPOP_ALGS);
  });

  it('challenges with DPoP when the API requires it and no token came', async () => {
    const refusal = await refusalOf(await post(ticketsApi({ requireDpop: true })));
    expect(refusal.status).toBe(401);
    expect(refusal.challenge).toBe(`DPoP ${REALM}, ${DPOP_ALGS}`);
  });

  it('refuses an unbound token with a DPoP challenge when the API requires DPoP', async () => {
    const { token } = await issue();
    const refusal = await refusalOf(
      await post(ticketsApi({ requireDpop: true }), { authorization: `Bearer ${token}` }),
    );
    expect(refusal.status).toBe(401);
    expect(refusal.body.error).toBe('invalid_token');
    expect(refusal.challenge).toMatch(/^DPoP /);
  });
});

describe('requireAgent: the broker unavailable', () => {
  it('answers 503 temporarily_unavailable when the JWKS cannot be had', async () => {
    const fake = await fakeIssuer();
    fake.answers.jwks = 'down';
    const app = ticketsApi({ issuer: fake.issuer, fetch: fake.fetch });
    const refusal = await refusalOf(await post(app, { authorization: `Bearer ${await fake.sign()}` }));
    expect(refusal.status).toBe(503);
    expect(refusal.body.error).toBe('temporarily_unavailable');
    expect(refusal.challenge).toBe(`Bearer ${REALM}`);
    expect(fake.calls.jwks).toBe(1);
  });

  it('answers 503 temporarily_unavailable when introspection is required and down', async () => {
    const fake = await fakeIssuer();
    fake.answers.introspection = 'down';
    const app = ticketsApi({ issuer: fake.issuer, fetch: fake.fetch, introspection: introspectionWith() });
    const token = await fake.sign({ claims: { iat: nowSeconds(), nbf: nowSeconds(), exp: nowSeconds() + 300 } });
    const refusal = await refusalOf(await post(app, { authorization: `Bearer ${token}` }));
    expect(refusal.status).toBe(503);
    expect(refusal.body.error).toBe('temporarily_unavailable');
    expect(fake.calls.introspection).toBe(1);
  });
});

describe('requireAgent: a misconfigured issuer', () => {
  it("lets the TypeError through to the app's error handler instead of answering 503", async () => {
    const fake = await fakeIssuer();
    fake.answers.metadataIssuer = ISSUER;
    const app = ticketsApi({ issuer: fake.issuer, fetch: fake.fetch });
    const caught: unknown[] = [];
    app.onError((error, c) => {
      caught.push(error);
      return c.text('misconfigured', 500);
    });
    const response = await post(app, { authorization: `Bearer ${await fake.sign()}` });
    expect(response.status).toBe(500);
    expect(caught).toEqual([expect.any(TypeError)]);
    expect(fake.calls.jwks).toBe(0);
  });
});

describe('requireAgent: options', () => {
  it.each([
    ['no issuer', { audience: TICKETS }],
    ['no audience', { issuer: ISSUER }],
  ])('throws a TypeError when created with %s', (_, options) => {
    expect(() => requireAgent(options as RequireAgentOptions)).toThrow(TypeError);
  });
});
