/**
 * Support for the verifier's tests: a fake broker whose keys, metadata, JWKS and introspection answers the
 * test controls and counts, tokens it signs however the test likes, the real broker in this isolate as a
 * `fetch`, DPoP-bound tokens it issues and the proofs that go with them, and a way to catch a refusal.
 *
 * The verifier caches discovery per issuer URL for the whole isolate, so every fake has an issuer URL of its
 * own: create one per scenario.
 */
import { exports } from 'cloudflare:workers';
import { accessTokenHash, type IntrospectionOptions, VerifyError } from '@tessera/verify';
import { base64url, type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import { expect } from 'vitest';
import { nowSeconds } from './clock';
import { ISSUER, TICKETS } from './demo';
import { exchangeFields, postJson } from './requests';

/**
 * The frozen clock of tests on the fake broker's tokens: the real time when the file loads, in whole seconds
 * as JWT times are, so that no test depends on a calendar date.
 */
export const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);
/** {@link NOW} in epoch seconds. */
export const T = NOW.getTime() / 1000;
/** The Date `seconds` after {@link NOW} (before it when negative). */
export const at = (seconds: number): Date => new Date((T + seconds) * 1000);

/** The real broker running in this isolate, as the verifier's `fetch`. */
export const brokerFetch: typeof fetch = (input, init) => exports.default.fetch(new Request(input, init));

/** A key pair the fake signs with, and the public JWK it may publish. */
export interface TestKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

/** A fresh key pair for `alg`, published (when published) under `kid`. */
export async function testKey(alg = 'ES256', kid: string = `key-${crypto.randomUUID()}`): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

/** The claims of a valid Tessera access token of `issuer` for the tickets API at {@link T}. */
export function tokenClaims(issuer: string, overrides: JWTPayload = {}): JWTPayload {
  return {
    iss: issuer,
    sub: 'demo-agent',
    client_id: 'demo-agent',
    aud: TICKETS,
    iat: T,
    nbf: T,
    exp: T + 300,
    jti: crypto.randomUUID(),
    scope: 'tickets:read tickets:comment',
    task: { id: 'task-1', hash: 'n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg' },
    owner: 'alice@example.com',
    policy: 'v1',
    ...overrides,
  };
}

export interface SignOptions {
  /** Claims over {@link tokenClaims}. */
  claims?: JWTPayload;
  /** Claims to leave out, e.g. `['jti']`. */
  omit?: readonly string[];
  /** Header parameters over `{ alg, kid, typ: 'at+jwt' }`; a parameter set to undefined is left out. */
  header?: Record<string, unknown>;
  /** The key to sign with; default the fake's first key. */
  key?: TestKey;
}

/**
 * A compact JWS of `payload` (a string is taken as is) under `header`, signed with an ES256 `key` by hand:
 * for tokens jose refuses to produce (an unknown `crit` parameter, a payload that is not an object).
 */
export async function signEs256(header: Record<string, unknown>, payload: unknown, key: TestKey): Promise<string> {
  const encode = (value: unknown) => base64url.encode(typeof value === 'string' ? value : JSON.stringify(value));
  const input = `${encode(header)}.${encode(payload)}`;
  const signature = await crypto.subtle.sign(
    { name: 'ECDSA', hash: 'SHA-256' },
    key.privateKey,
    new TextEncoder().encode(input),
  );
  return `${input}.${base64url.encode(new Uint8Array(signature))}`;
}

/** The introspection credential the fake broker accepts from the tickets API. */
export const FAKE_INTROSPECTION_CREDENTIAL = 'tessera_introspection.fake-credential-of-the-tickets-api-0000000';

/** Introspection as the tickets API, with the credential the fake accepts, and `options`. */
export const introspectionWith = (options: Omit<IntrospectionOptions, 'credential'> = {}): IntrospectionOptions => ({
  credential: FAKE_INTROSPECTION_CREDENTIAL,
  ...options,
});

/** The client id and password of an `Authorization: Basic` header, each form-decoded (RFC 6749 §2.3.1). */
function basicClient(header: string | null): { clientId: string; password: string } | undefined {
  const encoded = /^Basic (.+)$/.exec(header ?? '')?.[1];
  if (encoded === undefined) return undefined;
  const decoded = atob(encoded);
  const colon = decoded.indexOf(':');
  const form = (value: string) => decodeURIComponent(value.replaceAll('+', ' '));
  return { clientId: form(decoded.slice(0, colon)), password: form(decoded.slice(colon + 1)) };
}

/** What the fake answers; tests change it between calls. */
export interface FakeAnswers {
  /** `ok`, an HTTP 500, or a network failure. */
  metadata: 'ok' | 'down' | 'unreachable';
  /** The `issuer` the metadata names; default the fake's own. */
  metadataIssuer: string | undefined;
  /** Whether the metadata has a `jwks_uri`. */
  jwksUri: boolean;
  /** Whether the metadata has an `introspection_endpoint`. */
  introspectionEndpoint: boolean;
  jwks: 'ok' | 'down';
  /** `active: true`, `active: false`, an HTTP 500, a network failure, or a 200 without `active`. */
  introspection: 'active' | 'inactive' | 'down' | 'unreachable' | 'no_active';
}

export interface FakeIssuer {
  readonly issuer: string;
  /** The key it signs with by default, published in its JWKS. */
  readonly key: TestKey;
  /** Keys in its JWKS; push to rotate. */
  readonly published: TestKey[];
  readonly answers: FakeAnswers;
  /** Requests it answered (or failed), by endpoint. */
  readonly calls: { metadata: number; jwks: number; introspection: number };
  /** The `token` parameter of each introspection request, in order. */
  readonly introspected: string[];
  /** The client each introspection request authenticated as (HTTP Basic), in order. */
  readonly introspectedBy: ({ clientId: string; password: string } | undefined)[];
  readonly fetch: typeof fetch;
  /** A token signed by its key (or `options.key`): by default a valid Tessera token for the tickets API. */
  sign(options?: SignOptions): Promise<string>;
}

/** A fake broker at a fresh issuer URL, with one ES256 key published. */
export async function fakeIssuer(): Promise<FakeIssuer> {
  const issuer = `https://issuer-${crypto.randomUUID()}.example`;
  const key = await testKey();
  const published = [key];
  const answers: FakeAnswers = {
    metadata: 'ok',
    metadataIssuer: undefined,
    jwksUri: true,
    introspectionEndpoint: true,
    jwks: 'ok',
    introspection: 'active',
  };
  const calls = { metadata: 0, jwks: 0, introspection: 0 };
  const introspected: string[] = [];
  const introspectedBy: FakeIssuer['introspectedBy'] = [];

  const fakeFetch: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.origin !== issuer) throw new TypeError(`the fake broker does not serve ${url.href}`);
    switch (url.pathname) {
      case '/.well-known/oauth-authorization-server':
        calls.metadata += 1;
        if (answers.metadata === 'unreachable') throw new TypeError('network connection lost');
        if (answers.metadata === 'down') return new Response('unavailable', { status: 500 });
        return Response.json({
          issuer: answers.metadataIssuer ?? issuer,
          ...(answers.jwksUri && { jwks_uri: `${issuer}/keys` }),
          ...(answers.introspectionEndpoint && { introspection_endpoint: `${issuer}/introspect` }),
        });
      case '/keys':
        calls.jwks += 1;
        if (answers.jwks === 'down') return new Response('unavailable', { status: 500 });
        return Response.json({ keys: published.map((published) => published.publicJwk) });
      case '/introspect': {
        calls.introspection += 1;
        introspected.push(new URLSearchParams(String(init?.body)).get('token') ?? '');
        const client = basicClient(new Headers(init?.headers).get('authorization'));
        introspectedBy.push(client);
        // RFC 7662 §2.1: only the tickets API, with its credential.
        if (client?.clientId !== TICKETS || client.password !== FAKE_INTROSPECTION_CREDENTIAL)
          return Response.json({ error: 'invalid_client' }, { status: 401 });
        if (answers.introspection === 'unreachable') throw new TypeError('network connection lost');
        if (answers.introspection === 'down') return new Response('unavailable', { status: 500 });
        if (answers.introspection === 'no_active') return Response.json({ status: 'fine' });
        return Response.json({ active: answers.introspection === 'active' });
      }
      default:
        return new Response('not found', { status: 404 });
    }
  };

  async function sign(options: SignOptions = {}): Promise<string> {
    const signer = options.key ?? key;
    const payload = tokenClaims(issuer, options.claims);
    for (const claim of options.omit ?? []) delete payload[claim];
    const header = Object.fromEntries(
      Object.entries({ alg: signer.alg, kid: signer.kid, typ: 'at+jwt', ...options.header }).filter(
        ([, value]) => value !== undefined,
      ),
    );
    return new SignJWT(payload).setProtectedHeader(header as { alg: string }).sign(signer.privateKey);
  }

  return { issuer, key, published, answers, calls, introspected, introspectedBy, fetch: fakeFetch, sign };
}

/** The verifier options for the tickets API on `fake`, at {@link NOW}. */
export const optionsFor = (fake: FakeIssuer) => ({
  issuer: fake.issuer,
  audience: TICKETS,
  fetch: fake.fetch,
  now: NOW,
});

/** Awaits `promise`, expects it to reject with a {@link VerifyError}, and returns the error. */
export async function refusal(promise: Promise<unknown>): Promise<VerifyError> {
  const outcome = await promise.then(
    (value) => ({ settled: 'resolved' as const, value }),
    (error: unknown) => ({ settled: 'rejected' as const, error }),
  );
  expect(outcome).toMatchObject({ settled: 'rejected' });
  const { error } = outcome as { error: unknown };
  expect(error).toBeInstanceOf(VerifyError);
  return error as VerifyError;
}

// ---------------------------------------------------------------------------------------------------------
// DPoP (RFC 9449): tokens the real broker binds to a client key, and proofs of that key

/** The URL of the resource request the DPoP tests make, a `POST` to the tickets API. */
export const RESOURCE = `${TICKETS}/tickets/T-1234/comments`;

/** A client's DPoP key pair, the `alg` its proofs name, and its public JWK. */
export interface ClientKey {
  alg: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

/** A fresh client key for `alg` (ES256 by default). */
export async function clientKey(alg = 'ES256'): Promise<ClientKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  return { alg, privateKey, jwk: await exportJWK(publicKey) };
}

/** A DPoP proof by `key` (its `jwk` in the header): a fresh `jti` and `iat` now, with `claims` over them. */
export function signProof(key: ClientKey, claims: JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ jti: crypto.randomUUID(), iat: nowSeconds(), ...claims })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: key.alg, jwk: key.jwk, ...header })
    .sign(key.privateKey);
}

/** A token the real broker bound to `key`, asked for with a proof of it at `/token` (RFC 9449 §5). */
export async function issueBound(key: ClientKey): Promise<string> {
  const response = await postJson(await exchangeFields(), {
    DPoP: await signProof(key, { htm: 'POST', htu: `${ISSUER}/token` }),
  });
  expect(response.status, await response.clone().text()).toBe(200);
  const body = (await response.json()) as { access_token: string; token_type: string };
  expect(body.token_type).toBe('DPoP');
  return body.access_token;
}

/** The proof of a `POST` to {@link RESOURCE} with `token`, by `key`, with `claims` over the right ones. */
export async function resourceProof(token: string, key: ClientKey, claims: JWTPayload = {}): Promise<string> {
  return signProof(key, { htm: 'POST', htu: RESOURCE, ath: await accessTokenHash(token), ...claims });
}
