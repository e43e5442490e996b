/**
 * `verifyAgentToken` (RFC 9068 §4) on tokens the broker would never issue: a fake broker with keys the test
 * controls signs them, and serves (and counts) its metadata and JWKS. Each refusal is a `VerifyError` with a
 * stable `code`; the clock is frozen at `NOW` through the `now` option, or by faking `Date` where jose's JWKS
 * cache reads it.
 */
import { type VerifyAgentTokenOptions, VerifyError, verifyAgentToken } from '@tessera/verify';
import { base64url, type JWTPayload, SignJWT } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { flipChar } from '../helpers/attestation';
import { TICKETS } from '../helpers/demo';
import {
  at,
  type FakeAnswers,
  fakeIssuer,
  NOW,
  optionsFor,
  refusal,
  signEs256,
  T,
  testKey,
  tokenClaims,
} from '../helpers/verify';

describe('verifyAgentToken: a valid token', () => {
  it('returns the claims of a token signed with a published key', async () => {
    const fake = await fakeIssuer();
    const jti = crypto.randomUUID();
    const claims = await verifyAgentToken(await fake.sign({ claims: { jti } }), optionsFor(fake));
    expect(claims).toEqual(tokenClaims(fake.issuer, { jti }));
  });

  it('accepts a token granting every required action', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    const claims = await verifyAgentToken(token, { ...optionsFor(fake), actions: ['tickets:comment', 'tickets:read'] });
    expect(claims.scope).toBe('tickets:read tickets:comment');
  });

  it('accepts an EdDSA-signed token by default', async () => {
    const fake = await fakeIssuer();
    const ed = await testKey('Ed25519');
    ed.publicJwk.alg = 'EdDSA';
    ed.alg = 'EdDSA';
    fake.published.push(ed);
    const claims = await verifyAgentToken(await fake.sign({ key: ed }), optionsFor(fake));
    expect(claims.iss).toBe(fake.issuer);
  });

  it('accepts `typ: application/at+jwt` (RFC 9068 §2.1)', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ header: { typ: 'application/at+jwt' } });
    await expect(verifyAgentToken(token, optionsFor(fake))).resolves.toMatchObject({ iss: fake.issuer });
  });

  it('discovers the issuer once and reuses its metadata and keys', async () => {
    const fake = await fakeIssuer();
    await verifyAgentToken(await fake.sign(), optionsFor(fake));
    await verifyAgentToken(await fake.sign(), optionsFor(fake));
    expect(fake.calls).toEqual({ metadata: 1, jwks: 1, introspection: 0 });
  });
});

describe('verifyAgentToken: issuer and audience (RFC 9068 §4 items 3 and 4)', () => {
  it('refuses a token from another issuer, even signed with the trusted key', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: { iss: 'https://evil.example' } });
    expect(await refusal(verifyAgentToken(token, optionsFor(fake)))).toMatchObject({
      code: 'wrong_issuer',
      status: 401,
      error: 'invalid_token',
    });
  });

  it('refuses a token for another audience', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: { aud: 'https://graph.example.com' } });
    expect(await refusal(verifyAgentToken(token, optionsFor(fake)))).toMatchObject({
      code: 'wrong_audience',
      status: 401,
      error: 'invalid_token',
    });
  });

  it('refuses a token for this audience verified by an API of another audience', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    const error = await refusal(
      verifyAgentToken(token, { ...optionsFor(fake), audience: 'https://graph.example.com' }),
    );
    expect(error.code).toBe('wrong_audience');
  });
});

describe('verifyAgentToken: actions', () => {
  it('refuses with 403 when a required action is not in scope', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: { scope: 'tickets:read' } });
    const error = await refusal(
      verifyAgentToken(token, { ...optionsFor(fake), actions: ['tickets:read', 'tickets:comment'] }),
    );
    expect(error).toMatchObject({ code: 'missing_action', status: 403, error: 'insufficient_scope' });
  });

  it('matches whole actions, not prefixes or substrings of the scope', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: { scope: 'tickets:commentary admin-tickets:comment' } });
    const error = await refusal(verifyAgentToken(token, { ...optionsFor(fake), actions: ['tickets:comment'] }));
    expect(error.code).toBe('missing_action');
  });
});

describe('verifyAgentToken: lifetime (RFC 7519 §4.1.4, §4.1.5)', () => {
  it('refuses an expired token', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: { iat: T - 400, nbf: T - 400, exp: T - 100 } });
    expect(await refusal(verifyAgentToken(token, optionsFor(fake)))).toMatchObject({
      code: 'expired',
      status: 401,
      error: 'invalid_token',
    });
  });

  it('tolerates 5 seconds of clock skew on exp by default, and no more', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: { iat: T - 300, nbf: T - 300, exp: T } });
    await expect(verifyAgentToken(token, { ...optionsFor(fake), now: at(4) })).resolves.toMatchObject({ exp: T });
    expect((await refusal(verifyAgentToken(token, { ...optionsFor(fake), now: at(5) }))).code).toBe('expired');
  });

  it('accepts an expired token within clockTolerance and refuses it beyond', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: { iat: T - 300, nbf: T - 300, exp: T - 25 } });
    await expect(verifyAgentToken(token, { ...optionsFor(fake), clockTolerance: 30 })).resolves.toMatchObject({
      exp: T - 25,
    });
    const error = await refusal(verifyAgentToken(token, { ...optionsFor(fake), clockTolerance: 20 }));
    expect(error.code).toBe('expired');
  });

  it('refuses a token whose nbf is in the future', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: { iat: T, nbf: T + 60, exp: T + 300 } });
    expect(await refusal(verifyAgentToken(token, optionsFor(fake)))).toMatchObject({
      code: 'not_yet_valid',
      status: 401,
      error: 'invalid_token',
    });
  });

  it('accepts an nbf within the clock tolerance', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: { nbf: T + 3 } });
    await expect(verifyAgentToken(token, optionsFor(fake))).resolves.toMatchObject({ nbf: T + 3 });
    const error = await refusal(verifyAgentToken(token, { ...optionsFor(fake), clockTolerance: 2 }));
    expect(error.code).toBe('not_yet_valid');
  });
});

describe('verifyAgentToken: header (RFC 9068 §2.1, §4 items 5 and 6)', () => {
  it.each([
    ['JWT', 'JWT'],
    ['dpop+jwt', 'dpop+jwt'],
    ['no', undefined],
  ])('refuses typ %s', async (_, typ) => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ header: { typ } });
    expect(await refusal(verifyAgentToken(token, optionsFor(fake)))).toMatchObject({
      code: 'wrong_type',
      status: 401,
      error: 'invalid_token',
    });
  });

  it.each(['ES384', 'RS256', 'PS256'])('refuses a token signed with %s, even under a published key', async (alg) => {
    const fake = await fakeIssuer();
    const other = await testKey(alg);
    fake.published.push(other);
    const token = await fake.sign({ key: other });
    expect(await refusal(verifyAgentToken(token, optionsFor(fake)))).toMatchObject({
      code: 'algorithm_not_allowed',
      status: 401,
      error: 'invalid_token',
    });
  });

  it('refuses an HS256 token (a symmetric key the broker never uses)', async () => {
    const fake = await fakeIssuer();
    const secret = new TextEncoder().encode(JSON.stringify(fake.key.publicJwk));
    const token = await new SignJWT(tokenClaims(fake.issuer))
      .setProtectedHeader({ alg: 'HS256', kid: fake.key.kid, typ: 'at+jwt' })
      .sign(secret);
    expect((await refusal(verifyAgentToken(token, optionsFor(fake)))).code).toBe('algorithm_not_allowed');
  });

  it('refuses an unsigned token (alg none)', async () => {
    const fake = await fakeIssuer();
    const header = base64url.encode(JSON.stringify({ alg: 'none', kid: fake.key.kid, typ: 'at+jwt' }));
    const payload = base64url.encode(JSON.stringify(tokenClaims(fake.issuer)));
    const error = await refusal(verifyAgentToken(`${header}.${payload}.`, optionsFor(fake)));
    expect(error.code).toBe('algorithm_not_allowed');
  });

  it('refuses an algorithm the caller did not pin, even one allowed by default', async () => {
    const fake = await fakeIssuer();
    const ed = await testKey('Ed25519');
    ed.publicJwk.alg = 'EdDSA';
    ed.alg = 'EdDSA';
    fake.published.push(ed);
    const token = await fake.sign({ key: ed });
    const error = await refusal(verifyAgentToken(token, { ...optionsFor(fake), algorithms: ['ES256'] }));
    expect(error.code).toBe('algorithm_not_allowed');
  });

  it('refuses a token whose kid is not published', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ key: await testKey('ES256', 'never-published') });
    expect(await refusal(verifyAgentToken(token, optionsFor(fake)))).toMatchObject({
      code: 'unknown_key',
      status: 401,
      error: 'invalid_token',
    });
  });

  it('refuses a token with an unsupported critical header parameter as a bad token, not an outage', async () => {
    const fake = await fakeIssuer();
    const header = { alg: 'ES256', kid: fake.key.kid, typ: 'at+jwt', crit: ['urn:example:unknown'] };
    const token = await signEs256({ ...header, 'urn:example:unknown': true }, tokenClaims(fake.issuer), fake.key);
    expect(await refusal(verifyAgentToken(token, optionsFor(fake)))).toMatchObject({
      code: 'malformed',
      status: 401,
      error: 'invalid_token',
    });
  });
});

describe('verifyAgentToken: signature', () => {
  it('refuses a token whose signature was altered', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign();
    const signatureStart = token.lastIndexOf('.') + 1;
    const error = await refusal(verifyAgentToken(flipChar(token, signatureStart + 10), optionsFor(fake)));
    expect(error).toMatchObject({ code: 'bad_signature', status: 401, error: 'invalid_token' });
  });

  it('refuses a token whose claims were altered after signing', async () => {
    const fake = await fakeIssuer();
    const [header, , signature] = (await fake.sign({ claims: { scope: 'tickets:read' } })).split('.');
    const payload = base64url.encode(
      JSON.stringify(tokenClaims(fake.issuer, { scope: 'tickets:read tickets:delete' })),
    );
    const error = await refusal(verifyAgentToken(`${header}.${payload}.${signature}`, optionsFor(fake)));
    expect(error.code).toBe('bad_signature');
  });

  it('refuses a token signed by another key under the published kid', async () => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ key: await testKey('ES256', fake.key.kid) });
    expect((await refusal(verifyAgentToken(token, optionsFor(fake)))).code).toBe('bad_signature');
  });
});

describe('verifyAgentToken: malformed tokens and missing claims', () => {
  const encode = (value: unknown) => base64url.encode(typeof value === 'string' ? value : JSON.stringify(value));

  it.each([
    ['an empty string', ''],
    ['not a JWT', 'not-a-jwt'],
    ['two segments', 'eyJhbGciOiJFUzI1NiJ9.e30'],
    ['a JWE (five segments)', 'a.b.c.d.e'],
    ['a header that is not JSON', `${encode('not json')}.${encode({})}.c2ln`],
  ])('refuses %s', async (_, token) => {
    const fake = await fakeIssuer();
    expect(await refusal(verifyAgentToken(token, optionsFor(fake)))).toMatchObject({
      code: 'malformed',
      status: 401,
      error: 'invalid_token',
    });
  });

  it('refuses a signed token whose payload is not a JSON object', async () => {
    const fake = await fakeIssuer();
    const token = await signEs256({ alg: 'ES256', kid: fake.key.kid, typ: 'at+jwt' }, '[1,2,3]', fake.key);
    expect((await refusal(verifyAgentToken(token, optionsFor(fake)))).code).toBe('malformed');
  });

  it.each(['sub', 'client_id', 'jti', 'scope', 'owner', 'policy', 'task', 'exp', 'iat'])(
    'refuses a signed token without %s',
    async (claim) => {
      const fake = await fakeIssuer();
      const token = await fake.sign({ omit: [claim] });
      expect(await refusal(verifyAgentToken(token, optionsFor(fake)))).toMatchObject({
        code: 'malformed',
        status: 401,
        error: 'invalid_token',
      });
    },
  );

  it.each<[string, Record<string, unknown>]>([
    ['a task without a hash', { task: { id: 'task-1' } }],
    ['a scope that is not a string', { scope: ['tickets:read'] }],
    ['a cnf without jkt', { cnf: { 'x5t#S256': 'abc' } }],
    ['an exp that is not a number', { exp: String(T + 300) }],
  ])('refuses a signed token with %s', async (_, claims) => {
    const fake = await fakeIssuer();
    const token = await fake.sign({ claims: claims as JWTPayload });
    expect((await refusal(verifyAgentToken(token, optionsFor(fake)))).code).toBe('malformed');
  });
});

describe('verifyAgentToken: the JWKS (refetched on an unknown kid, at most once per cooldown)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('does not refetch the JWKS for an unknown kid within 30 s of fetching it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(NOW);
    const fake = await fakeIssuer();
    const stranger = await fake.sign({ key: await testKey('ES256', 'stranger') });
    expect((await refusal(verifyAgentToken(stranger, optionsFor(fake)))).code).toBe('unknown_key');
    vi.setSystemTime(at(29));
    expect((await refusal(verifyAgentToken(stranger, optionsFor(fake)))).code).toBe('unknown_key');
    expect(fake.calls.jwks).toBe(1);
  });

  it('refetches the JWKS once for an unknown kid after the cooldown, then not again within it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(NOW);
    const fake = await fakeIssuer();
    await verifyAgentToken(await fake.sign(), optionsFor(fake));
    expect(fake.calls.jwks).toBe(1);
    vi.setSystemTime(at(31));
    const stranger = await fake.sign({ key: await testKey('ES256', 'stranger') });
    expect((await refusal(verifyAgentToken(stranger, optionsFor(fake)))).code).toBe('unknown_key');
    expect(fake.calls.jwks).toBe(2);
    for (const _ of [1, 2, 3]) {
      expect((await refusal(verifyAgentToken(stranger, optionsFor(fake)))).code).toBe('unknown_key');
    }
    expect(fake.calls.jwks).toBe(2);
  });

  it('finds a key published since the last fetch, by refetching once', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(NOW);
    const fake = await fakeIssuer();
    await verifyAgentToken(await fake.sign(), optionsFor(fake));
    const next = await testKey('ES256', 'next');
    fake.published.push(next);
    vi.setSystemTime(at(31));
    const claims = await verifyAgentToken(await fake.sign({ key: next }), optionsFor(fake));
    expect(claims.iss).toBe(fake.issuer);
    expect(fake.calls.jwks).toBe(2);
  });

  it('uses fetched keys for five minutes, then fetches them again', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(NOW);
    const fake = await fakeIssuer();
    await verifyAgentToken(await fake.sign(), optionsFor(fake));
    vi.setSystemTime(at(299));
    await verifyAgentToken(await fake.sign(), optionsFor(fake));
    expect(fake.calls.jwks).toBe(1);
    vi.setSystemTime(at(301));
    await verifyAgentToken(await fake.sign(), optionsFor(fake));
    expect(fake.calls.jwks).toBe(2);
  });

  it('refuses with 503 when the JWKS cannot be fetched, and fetches it again on the next call', async () => {
    const fake = await fakeIssuer();
    fake.answers.jwks = 'down';
    expect(await refusal(verifyAgentToken(await fake.sign(), optionsFor(fake)))).toMatchObject({
      code: 'jwks_unavailable',
      status: 503,
      error: undefined,
    });
    fake.answers.jwks = 'ok';
    await expect(verifyAgentToken(await fake.sign(), optionsFor(fake))).resolves.toMatchObject({ iss: fake.issuer });
    expect(fake.calls.jwks).toBe(2);
  });
});

describe('verifyAgentToken: issuer metadata (RFC 8414 §3)', () => {
  it.each<[string, Partial<FakeAnswers>]>([
    ['has no jwks_uri', { jwksUri: false }],
    ['answers 500', { metadata: 'down' }],
    ['cannot be reached', { metadata: 'unreachable' }],
  ])('refuses with 503 (fail closed) when the metadata %s', async (_, answers) => {
    const fake = await fakeIssuer();
    Object.assign(fake.answers, answers);
    expect(await refusal(verifyAgentToken(await fake.sign(), optionsFor(fake)))).toMatchObject({
      code: 'jwks_unavailable',
      status: 503,
      error: undefined,
    });
    expect(fake.calls.jwks).toBe(0);
  });

  it.each<[string, (issuer: string) => string]>([
    ['another issuer', () => 'https://evil.example'],
    ['the issuer with a trailing slash', (issuer) => `${issuer}/`],
  ])('throws a TypeError (a misconfiguration, not an outage) when the metadata names %s', async (_, named) => {
    const fake = await fakeIssuer();
    fake.answers.metadataIssuer = named(fake.issuer);
    const error = await verifyAgentToken(await fake.sign(), optionsFor(fake)).catch((error: unknown) => error);
    expect(error).toBeInstanceOf(TypeError);
    expect(error).not.toBeInstanceOf(VerifyError);
    expect(fake.calls).toMatchObject({ metadata: 1, jwks: 0 });
  });

  it('does not cache a failed discovery: the next call discovers again', async () => {
    const fake = await fakeIssuer();
    fake.answers.metadata = 'down';
    expect((await refusal(verifyAgentToken(await fake.sign(), optionsFor(fake)))).code).toBe('jwks_unavailable');
    fake.answers.metadata = 'ok';
    await expect(verifyAgentToken(await fake.sign(), optionsFor(fake))).resolves.toMatchObject({ iss: fake.issuer });
    expect(fake.calls.metadata).toBe(2);
  });

  it('does not trust metadata naming another issuer on a later call either, and finds it once fixed', async () => {
    const fake = await fakeIssuer();
    fake.answers.metadataIssuer = 'https://evil.example';
    for (const _ of [1, 2]) {
      await expect(verifyAgentToken(await fake.sign(), optionsFor(fake))).rejects.toBeInstanceOf(TypeError);
    }
    expect(fake.calls).toMatchObject({ metadata: 2, jwks: 0 });
    fake.answers.metadataIssuer = undefined;
    await expect(verifyAgentToken(await fake.sign(), optionsFor(fake))).resolves.toMatchObject({ iss: fake.issuer });
  });

  it('refuses with 503 when the metadata is JSON but not an object', async () => {
    const fake = await fakeIssuer();
    const metadataAnswer = (input: RequestInfo | URL, init?: RequestInit) =>
      String(input).endsWith('/.well-known/oauth-authorization-server')
        ? Promise.resolve(Response.json(null))
        : fake.fetch(input, init);
    const error = await refusal(verifyAgentToken(await fake.sign(), { ...optionsFor(fake), fetch: metadataAnswer }));
    expect(error).toMatchObject({ code: 'jwks_unavailable', status: 503 });
  });
});

describe('verifyAgentToken: options', () => {
  it.each([
    ['no issuer', { audience: TICKETS }],
    ['an empty issuer', { issuer: '', audience: TICKETS }],
    ['no audience', { issuer: 'https://issuer.example' }],
    ['an empty audience', { issuer: 'https://issuer.example', audience: '' }],
  ])('throws a TypeError, before any fetch, with %s', async (_, options) => {
    const fake = await fakeIssuer();
    const error = await verifyAgentToken(await fake.sign(), {
      ...options,
      fetch: fake.fetch,
    } as VerifyAgentTokenOptions).catch((error: unknown) => error);
    expect(error).toBeInstanceOf(TypeError);
    expect(fake.calls.metadata).toBe(0);
  });
});
