/**
 * Status lists in the verifier (draft-ietf-oauth-status-list §8): a token that names one is checked against
 * it. A fake broker publishes its keys and, beside them, status list tokens the test signs and counts; the
 * clock is `NOW` (the real time when the file loads) moved through the `now` option, never a calendar date.
 */
import { StatusLists, type VerifyAgentTokenOptions, verifyAgentToken } from '@tessera/verify';
import { type AgentVariables, requireAgent } from '@tessera/verify/hono';
import { Hono } from 'hono';
import { type JWTPayload, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { encodeStatusList, STATUS } from '../../worker/core/status-list';
import { TICKETS } from '../helpers/demo';
import { at, type FakeIssuer, fakeIssuer, optionsFor, refusal, T, type TestKey, testKey } from '../helpers/verify';

/** The statuses of the fake's list: entry 0 VALID, 1 INVALID, 2 SUSPENDED, 3 the application-specific 0x03. */
const STATUSES = Uint8Array.of(STATUS.VALID, STATUS.INVALID, STATUS.SUSPENDED, 3);
const ENTRY = { valid: 0, revoked: 1, suspended: 2, other: 3 } as const;

interface ListOptions {
  /** Claims over `sub` (the URI), `iat` T, `exp` T + 600, `ttl` 60 and the encoded list. */
  claims?: JWTPayload;
  /** Header parameters over `{ alg, kid, typ: 'statuslist+jwt' }`. */
  header?: Record<string, unknown>;
  /** The key to sign with; default the broker's. */
  key?: TestKey;
}

interface StatusServer {
  fake: FakeIssuer;
  uri: string;
  /** What the list's URI answers: a list signed as `list` says, an HTTP 500, or a network failure. */
  answer: 'ok' | 'down' | 'unreachable';
  list: ListOptions;
  /** Fetches of the list, and the `Accept` of each. */
  readonly fetches: string[];
  options: VerifyAgentTokenOptions;
  /** A valid token of the fake broker naming entry `idx` of the list. */
  token(idx: number): Promise<string>;
}

/** A fake broker that also serves its status list at `/status/1`. */
async function statusServer(): Promise<StatusServer> {
  const fake = await fakeIssuer();
  const uri = `${fake.issuer}/status/1`;
  const server: StatusServer = {
    fake,
    uri,
    answer: 'ok',
    list: {},
    fetches: [],
    options: { ...optionsFor(fake) },
    token: (idx) => fake.sign({ claims: { status: { status_list: { idx, uri } } } }),
  };
  async function signList(): Promise<string> {
    const { claims, header, key = fake.key } = server.list;
    const payload = { sub: uri, iat: T, exp: T + 600, ttl: 60, status_list: await encodeStatusList(STATUSES, 2) };
    return new SignJWT({ ...payload, ...claims })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'statuslist+jwt', ...header } as { alg: string })
      .sign(key.privateKey);
  }
  // As the Workers runtime's fetch does, it refuses to run as a method of another object.
  const serving = async function serving(this: unknown, input: RequestInfo | URL, init?: RequestInit) {
    if (this !== undefined && this !== globalThis) throw new TypeError('Illegal invocation');
    const url = input instanceof Request ? input.url : String(input);
    if (url !== uri) return fake.fetch(input, init);
    server.fetches.push(new Headers(init?.headers).get('accept') ?? '');
    if (server.answer === 'unreachable') throw new TypeError('network connection lost');
    if (server.answer === 'down') return new Response('unavailable', { status: 500 });
    return new Response(await signList(), { headers: { 'content-type': 'application/statuslist+jwt' } });
  } as typeof fetch;
  server.options.fetch = serving;
  return server;
}

describe('verifyAgentToken: the status of a token that names a status list (§8.3)', () => {
  it('accepts a token whose entry is VALID, asking for the list as application/statuslist+jwt', async () => {
    const server = await statusServer();
    const claims = await verifyAgentToken(await server.token(ENTRY.valid), server.options);
    expect(claims.status).toEqual({ status_list: { idx: ENTRY.valid, uri: server.uri } });
    expect(server.fetches).toEqual(['application/statuslist+jwt']);
  });

  const refusals = [
    { entry: ENTRY.revoked, name: 'INVALID', code: 'revoked' },
    { entry: ENTRY.suspended, name: 'SUSPENDED', code: 'suspended' },
    { entry: ENTRY.other, name: 'the application-specific 0x03', code: 'unknown_status' },
  ] as const;
  for (const { entry, name, code } of refusals) {
    it(`refuses a token whose entry is ${name} with ${code}`, async () => {
      const server = await statusServer();
      const error = await refusal(verifyAgentToken(await server.token(entry), server.options));
      expect(error).toMatchObject({ code, status: 401, error: 'invalid_token' });
    });
  }

  it('reads entries of a 1-bit list too', async () => {
    const server = await statusServer();
    server.list = { claims: { status_list: await encodeStatusList(Uint8Array.of(STATUS.VALID, STATUS.INVALID), 1) } };
    await expect(verifyAgentToken(await server.token(0), server.options)).resolves.toBeDefined();
    expect((await refusal(verifyAgentToken(await server.token(1), server.options))).code).toBe('revoked');
  });

  it('refuses an idx beyond the end of the list with unknown_status', async () => {
    const server = await statusServer();
    // Four 2-bit entries fill one byte: idx 4 is past the list.
    const error = await refusal(verifyAgentToken(await server.token(4), server.options));
    expect(error).toMatchObject({ code: 'unknown_status', status: 401 });
  });

  it('refuses a status claim without an idx or a uri as malformed, without fetching', async () => {
    const server = await statusServer();
    const token = await server.fake.sign({ claims: { status: { status_list: { idx: -1, uri: server.uri } } } });
    expect((await refusal(verifyAgentToken(token, server.options))).code).toBe('malformed');
    expect(server.fetches).toEqual([]);
  });
});

describe('verifyAgentToken: a status list that does not verify (§8.3), status_unavailable', () => {
  const lists: { name: string; list: (server: StatusServer) => Promise<ListOptions> | ListOptions }[] = [
    { name: 'of another typ', list: () => ({ header: { typ: 'at+jwt' } }) },
    { name: 'without typ', list: () => ({ header: { typ: undefined } }) },
    { name: 'whose sub is another list', list: (server) => ({ claims: { sub: `${server.uri}0` } }) },
    { name: 'that has expired', list: () => ({ claims: { iat: T - 700, exp: T - 100 } }) },
    { name: 'issued in the future', list: () => ({ claims: { iat: T + 600, exp: T + 1200 } }) },
    { name: 'without iat', list: () => ({ claims: { iat: undefined } }) },
    { name: 'with bits 3', list: () => ({ claims: { status_list: { bits: 3, lst: 'eNrbuRgAAhcBXQ' } } }) },
    { name: 'whose lst is not ZLIB', list: () => ({ claims: { status_list: { bits: 2, lst: 'AAAA' } } }) },
    { name: 'signed by a key the broker does not publish', list: async () => ({ key: await testKey() }) },
    {
      name: 'signed with an algorithm not pinned (a published ES384 key)',
      list: async (server) => {
        const key = await testKey('ES384');
        server.fake.published.push(key);
        return { key };
      },
    },
  ];
  for (const { name, list } of lists) {
    it(`refuses a token whose list is ${name}`, async () => {
      const server = await statusServer();
      server.list = await list(server);
      const error = await refusal(verifyAgentToken(await server.token(ENTRY.valid), server.options));
      expect(error).toMatchObject({ code: 'status_unavailable', status: 503 });
    });
  }
});

describe('verifyAgentToken: a status list that cannot be had', () => {
  for (const answer of ['down', 'unreachable'] as const) {
    it(`fails closed with status_unavailable when the list is ${answer}`, async () => {
      const server = await statusServer();
      server.answer = answer;
      const error = await refusal(verifyAgentToken(await server.token(ENTRY.valid), server.options));
      expect(error).toMatchObject({ code: 'status_unavailable', status: 503 });
    });
  }

  it("accepts the token on its signature when the API chose onUnavailable: 'accept'", async () => {
    const server = await statusServer();
    server.answer = 'down';
    const statusLists = new StatusLists({ onUnavailable: 'accept' });
    const claims = await verifyAgentToken(await server.token(ENTRY.revoked), { ...server.options, statusLists });
    expect(claims.status?.status_list.idx).toBe(ENTRY.revoked);
    expect(server.fetches).toHaveLength(1);
  });

  it("still refuses a token the list says is revoked when onUnavailable is 'accept'", async () => {
    const server = await statusServer();
    const statusLists = new StatusLists({ onUnavailable: 'accept' });
    const error = await refusal(
      verifyAgentToken(await server.token(ENTRY.revoked), { ...server.options, statusLists }),
    );
    expect(error.code).toBe('revoked');
  });

  it('gives up on a list that does not answer within the timeout', async () => {
    const server = await statusServer();
    const serving = server.options.fetch as typeof fetch;
    const hanging: typeof fetch = (input, init) =>
      String(input) === server.uri
        ? new Promise((_, reject) => init?.signal?.addEventListener('abort', () => reject(init.signal?.reason)))
        : serving(input, init);
    const statusLists = new StatusLists({ timeout: 50 });
    const error = await refusal(
      verifyAgentToken(await server.token(ENTRY.valid), { ...server.options, fetch: hanging, statusLists }),
    );
    expect(error.code).toBe('status_unavailable');
  });

  it('refuses options it cannot use with a TypeError', () => {
    expect(() => new StatusLists({ onUnavailable: 'ignore' as 'accept' })).toThrow(TypeError);
    expect(() => new StatusLists({ timeout: 0 })).toThrow(TypeError);
  });
});

describe('StatusLists: the cache', () => {
  /** Verifies a token on the VALID entry at `now`, with one `StatusLists` for every call. */
  function verifierOf(server: StatusServer) {
    const statusLists = new StatusLists();
    return async (now: Date) =>
      verifyAgentToken(await server.token(ENTRY.valid), { ...server.options, statusLists, now });
  }

  it('uses a list for its ttl and fetches it again after', async () => {
    const server = await statusServer();
    const verify = verifierOf(server);
    await verify(at(0));
    await verify(at(59));
    expect(server.fetches).toHaveLength(1);
    await verify(at(60));
    expect(server.fetches).toHaveLength(2);
  });

  it('uses a list no longer than its exp, even within its ttl', async () => {
    const server = await statusServer();
    server.list = { claims: { exp: T + 10, ttl: 3600 } };
    const verify = verifierOf(server);
    await verify(at(0));
    await verify(at(9));
    expect(server.fetches).toHaveLength(1);
    // Past exp (and its 5 s of tolerance), the list fetched again is the same expired one: refused.
    expect((await refusal(verify(at(20)))).code).toBe('status_unavailable');
    expect(server.fetches).toHaveLength(2);
  });

  it('sees a revocation once the cached list has expired', async () => {
    const server = await statusServer();
    const statusLists = new StatusLists();
    const token = await server.token(ENTRY.valid);
    await verifyAgentToken(token, { ...server.options, statusLists, now: at(0) });
    server.list = { claims: { status_list: await encodeStatusList(Uint8Array.of(STATUS.INVALID), 2) } };
    await verifyAgentToken(token, { ...server.options, statusLists, now: at(30) });
    const error = await refusal(verifyAgentToken(token, { ...server.options, statusLists, now: at(61) }));
    expect(error.code).toBe('revoked');
  });

  it('does not keep a failure: the next verification fetches again', async () => {
    const server = await statusServer();
    const statusLists = new StatusLists();
    server.answer = 'down';
    await refusal(verifyAgentToken(await server.token(ENTRY.valid), { ...server.options, statusLists }));
    server.answer = 'ok';
    await verifyAgentToken(await server.token(ENTRY.valid), { ...server.options, statusLists });
    expect(server.fetches).toHaveLength(2);
  });

  it('fetches a list once for concurrent verifications (single flight)', async () => {
    const server = await statusServer();
    const statusLists = new StatusLists();
    const tokens = await Promise.all([0, 1, 2, 0, 0, 2, 0, 1].map((idx) => server.token(idx)));
    const outcomes = await Promise.allSettled(
      tokens.map((token) => verifyAgentToken(token, { ...server.options, statusLists })),
    );
    expect(outcomes.map((outcome) => outcome.status)).toEqual([
      'fulfilled',
      'rejected',
      'rejected',
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
      'rejected',
    ]);
    expect(server.fetches).toHaveLength(1);
  });

  it('fetches the list for each verification without a StatusLists instance', async () => {
    const server = await statusServer();
    await verifyAgentToken(await server.token(ENTRY.valid), server.options);
    await verifyAgentToken(await server.token(ENTRY.valid), server.options);
    expect(server.fetches).toHaveLength(2);
  });
});

describe('requireAgent: status lists', () => {
  function ticketsApi(server: StatusServer, options: { statusLists?: StatusLists } = {}) {
    const app = new Hono<{ Variables: AgentVariables }>();
    const { issuer, fetch } = server.options;
    app.get('/tickets', requireAgent({ issuer, audience: TICKETS, fetch, ...options }), (c) =>
      c.json({ sub: c.get('agent').sub }),
    );
    return app;
  }
  const get = async (app: Hono<{ Variables: AgentVariables }>, token: string) =>
    app.request(`${TICKETS}/tickets`, { headers: { authorization: `Bearer ${token}` } });

  it('lets a VALID token through, and fetches the list once across requests', async () => {
    const server = await statusServer();
    const app = ticketsApi(server);
    expect((await get(app, await server.token(ENTRY.valid))).status).toBe(200);
    expect((await get(app, await server.token(ENTRY.valid))).status).toBe(200);
    expect(server.fetches).toHaveLength(1);
  });

  it('answers a revoked token 401 invalid_token with its challenge', async () => {
    const server = await statusServer();
    const response = await get(ticketsApi(server), await server.token(ENTRY.revoked));
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer realm="${TICKETS}", error="invalid_token", error_description="the token is no longer active"`,
    );
  });

  it('answers a suspended token 401 invalid_token', async () => {
    const server = await statusServer();
    const response = await get(ticketsApi(server), await server.token(ENTRY.suspended));
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ error: 'invalid_token', error_description: 'the token is suspended' });
  });

  it("answers 503 when the list cannot be had, and lets the token through with onUnavailable: 'accept'", async () => {
    const server = await statusServer();
    server.answer = 'down';
    const refused = await get(ticketsApi(server), await server.token(ENTRY.valid));
    expect(refused.status).toBe(503);
    expect(refused.headers.get('www-authenticate')).toBe(`Bearer realm="${TICKETS}"`);
    expect(((await refused.json()) as { error: string }).error).toBe('temporarily_unavailable');
    const accepting = ticketsApi(server, { statusLists: new StatusLists({ onUnavailable: 'accept' }) });
    expect((await get(accepting, await server.token(ENTRY.valid))).status).toBe(200);
  });
});
