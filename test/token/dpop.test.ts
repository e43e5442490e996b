/**
 * DPoP at `POST /token` (RFC 9449): a request that carries a valid proof gets a token bound to the proof's
 * key (`token_type: DPoP`, `cnf.jkt`); a proof that fails a check of §4.3 or is replayed is refused with
 * `invalid_dpop_proof`; policy can require a proof per audience or per agent (`invalid_request`); with
 * nonces on, a proof must carry a nonce the broker issued (`use_dpop_nonce`, §8). Every refusal is audited
 * and issues nothing.
 *
 * Every test runs on a forward-only fake clock and starts with the demo agent's object evicted: a full
 * rate-limit bucket and no DPoP nonce in memory, the same durable storage.
 */
import { exports } from 'cloudflare:workers';
import { DPOP_CLOCK_TOLERANCE_SECONDS } from '@tessera/verify';
import { base64url, decodeJwt, exportJWK, generateKeyPair, type JWK } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AuditEvent } from '../../worker/audit/schema';
import { loadedPolicy } from '../../worker/policy/loaded';
import { evictAgentObject } from '../helpers/agent-object';
import { attestation } from '../helpers/attestation';
import { auditRecords, detailOf, lastAudit } from '../helpers/audit';
import { nowSeconds, useForwardClock } from '../helpers/clock';
import { DEMO_AGENT, GRAPH, ISSUER } from '../helpers/demo';
import { type DpopKey, dpopKey, dpopProof } from '../helpers/dpop';
import { type ExchangeFields, exchangeFields, readError } from '../helpers/requests';
import { introspect } from '../helpers/tokens';

const { settings } = loadedPolicy().bundle;
const TOKEN_ENDPOINT = `${ISSUER}/token`;
const PAYMENTS = 'https://payments.example.com';
/** A request the demo agent may make on the payments API, whose tokens policy wants DPoP-bound. */
const REFUND: ExchangeFields = {
  audience: PAYMENTS,
  scope: 'payments:refund',
  task: { description: 'Refund order O-5521, charged twice' },
};
/** How long a nonce is handed out before the agent's object rotates it (worker/agents/agent-state.ts). */
const NONCE_LIFETIME_SECONDS = 300;

const clock = useForwardClock();

beforeEach(async () => {
  await evictAgentObject();
});

// ---------------------------------------------------------------------------------------------------------
// Requests and what they must answer

/** POSTs an exchange to `/token` with each of `proofs` as a `DPoP` header (none when undefined). */
async function send(proofs: string | readonly string[] | undefined, overrides: ExchangeFields = {}) {
  const headers = new Headers({ 'content-type': 'application/json' });
  for (const proof of proofs === undefined ? [] : [proofs].flat()) headers.append('DPoP', proof);
  return exports.default.fetch(TOKEN_ENDPOINT, {
    method: 'POST',
    headers,
    body: JSON.stringify(await exchangeFields(overrides)),
  });
}

interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope: string;
}

interface Granted {
  body: TokenResponse;
  claims: ReturnType<typeof decodeJwt>;
  audit: AuditEvent;
}

/** Checks a 200 with a token of `tokenType`, audited as granted for that token; returns it. */
async function expectGranted(response: Response, tokenType: 'DPoP' | 'Bearer'): Promise<Granted> {
  const text = await response.clone().text();
  expect(response.status, text).toBe(200);
  expect(response.headers.get('cache-control')).toBe('no-store');
  const body = (await response.json()) as TokenResponse;
  expect(body.token_type).toBe(tokenType);
  const claims = decodeJwt(body.access_token);
  const audit = await lastAudit();
  expect(audit.decision).toBe('granted');
  expect(audit.tokenJti).toBe(claims.jti);
  return { body, claims, audit };
}

/** Checks a 200 with a token bound to `key`: `token_type: DPoP`, `cnf.jkt` in the token and its audit record. */
async function expectBound(response: Response, key: DpopKey): Promise<Granted> {
  const granted = await expectGranted(response, 'DPoP');
  expect(granted.claims.cnf).toEqual({ jkt: key.jkt });
  expect(detailOf(granted.audit).cnf).toEqual({ jkt: key.jkt });
  return granted;
}

const grantedCount = async () => (await auditRecords()).filter((record) => record.decision === 'granted').length;

interface Refusal {
  status: number;
  error: string;
  /** The audited reason. */
  reason: string;
  /** For `invalid_dpop_proof`: which check of the proof failed (the audit record's `detail.check`). */
  check?: string;
}

const badProof = (check: string): Refusal => ({
  status: 400,
  error: 'invalid_dpop_proof',
  reason: 'invalid_dpop_proof',
  check,
});
const REPLAYED: Refusal = { status: 400, error: 'invalid_dpop_proof', reason: 'dpop_replayed' };
const NONCE_NEEDED: Refusal = { status: 400, error: 'use_dpop_nonce', reason: 'dpop_nonce_required' };
const DPOP_REQUIRED: Refusal = { status: 400, error: 'invalid_request', reason: 'dpop_required' };

/**
 * Sends one request and checks it was refused as `expected`: the error body and status, not cached, no
 * token, exactly one new audit record (refused, with the code and reason) and no new granted one.
 */
async function expectRefused(request: () => Promise<Response>, expected: Refusal): Promise<[Response, AuditEvent]> {
  const recordsBefore = (await auditRecords()).length;
  const grantedBefore = await grantedCount();
  const response = await request();
  expect(response.status, await response.clone().text()).toBe(expected.status);
  expect(response.headers.get('cache-control')).toBe('no-store');
  const body = await readError(response.clone());
  expect(body.error).toBe(expected.error);
  expect(body).not.toHaveProperty('access_token');

  expect((await auditRecords()).length).toBe(recordsBefore + 1);
  const audit = await lastAudit();
  expect(audit.decision).toBe('refused');
  expect(audit.errorCode).toBe(expected.error);
  expect(audit.reason).toBe(expected.reason);
  expect(audit.tokenJti).toBeNull();
  if (expected.check !== undefined) expect(detailOf(audit).check).toBe(expected.check);
  expect(await grantedCount()).toBe(grantedBefore);
  return [response, audit];
}

const encodeJson = (value: unknown) => base64url.encode(JSON.stringify(value));

// ---------------------------------------------------------------------------------------------------------

describe('POST /token: a DPoP proof binds the token to its key (RFC 9449 §5, §6)', () => {
  it('issues a DPoP token whose cnf.jkt is the RFC 7638 thumbprint of the proof key', async () => {
    const key = await dpopKey();
    // expectBound checks token_type, and cnf.jkt in the token and in its audit record.
    const { body, audit } = await expectBound(await send(await dpopProof(key)), key);
    expect(body.scope).toBe('tickets:read tickets:comment');
    expect(audit.agent).toBe(DEMO_AGENT);

    const introspection = await introspect(body.access_token);
    expect(introspection.active).toBe(true);
    expect(introspection.cnf).toEqual({ jkt: key.jkt });
  });

  it('issues a Bearer token without cnf to a request without a proof', async () => {
    const { body, claims, audit } = await expectGranted(await send(undefined), 'Bearer');
    expect(claims).not.toHaveProperty('cnf');
    expect(detailOf(audit)).not.toHaveProperty('cnf');
    expect(await introspect(body.access_token)).not.toHaveProperty('cnf');
  });

  it('binds the token on a form-encoded request too', async () => {
    const key = await dpopKey();
    const form = new URLSearchParams();
    for (const [name, value] of Object.entries(await exchangeFields())) {
      form.append(name, typeof value === 'string' ? value : JSON.stringify(value));
    }
    const response = await exports.default.fetch(TOKEN_ENDPOINT, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', DPoP: await dpopProof(key) },
      body: form.toString(),
    });
    await expectBound(response, key);
  });

  it('accepts EdDSA, RS256 and PS256 proof keys as well as ES256', async () => {
    for (const alg of ['EdDSA', 'RS256', 'PS256', 'ES256']) {
      const key = await dpopKey(alg);
      await expectBound(await send(await dpopProof(key)), key);
    }
  });

  it('binds each token to the key of its own proof', async () => {
    const first = await dpopKey();
    const second = await dpopKey();
    const a = await expectBound(await send(await dpopProof(first)), first);
    const b = await expectBound(await send(await dpopProof(second)), second);
    expect(a.claims.cnf).not.toEqual(b.claims.cnf);
  });
});

describe('POST /token: a proof that fails RFC 9449 §4.3 is refused with invalid_dpop_proof', () => {
  let key: DpopKey;

  beforeAll(async () => {
    key = await dpopKey();
  });

  it('refuses a proof whose typ is not dpop+jwt', async () => {
    for (const typ of ['JWT', 'at+jwt', undefined]) {
      const proof = await dpopProof(key, { header: { typ } });
      await expectRefused(() => send(proof), badProof('dpop_invalid'));
    }
  });

  it('refuses an unsigned proof (alg none)', async () => {
    const header = { typ: 'dpop+jwt', alg: 'none', jwk: key.jwk };
    const payload = { jti: crypto.randomUUID(), htm: 'POST', htu: TOKEN_ENDPOINT, iat: nowSeconds() };
    const unsigned = `${encodeJson(header)}.${encodeJson(payload)}.`;
    await expectRefused(() => send(unsigned), badProof('dpop_invalid'));
  });

  it('refuses a proof signed with a symmetric algorithm (HS256)', async () => {
    // Keyed with the public key it names, or with a secret it hands over in its own jwk.
    const publicKeyAsSecret = new TextEncoder().encode(JSON.stringify(key.jwk));
    const secret = crypto.getRandomValues(new Uint8Array(32));
    const octJwk: JWK = { kty: 'oct', k: base64url.encode(secret) };
    for (const [signWith, jwk] of [
      [publicKeyAsSecret, key.jwk],
      [secret, octJwk],
    ] as const) {
      const proof = await dpopProof(key, { alg: 'HS256', signWith, header: { jwk } });
      await expectRefused(() => send(proof), badProof('dpop_invalid'));
    }
  });

  it('refuses a proof whose jwk carries the private key', async () => {
    const privateJwk: JWK = await exportJWK(key.privateKey);
    expect(privateJwk.d).toBeTypeOf('string');
    const proof = await dpopProof(key, { header: { jwk: privateJwk } });
    await expectRefused(() => send(proof), badProof('dpop_invalid'));
  });

  it('refuses a proof without a jwk', async () => {
    const proof = await dpopProof(key, { header: { jwk: undefined } });
    await expectRefused(() => send(proof), badProof('dpop_invalid'));
  });

  it('refuses a proof signed by another key than its jwk', async () => {
    const other = await dpopKey();
    const proof = await dpopProof(key, { signWith: other.privateKey });
    await expectRefused(() => send(proof), badProof('dpop_invalid'));
  });

  it('refuses a proof for another method than POST', async () => {
    for (const htm of ['GET', 'post']) {
      const proof = await dpopProof(key, { htm });
      await expectRefused(() => send(proof), badProof('dpop_wrong_method'));
    }
  });

  it('refuses a proof for another URL than the token endpoint', async () => {
    const port = new URL(ISSUER).port;
    for (const htu of [
      `${ISSUER}/introspect`,
      `${ISSUER}/token/extra`,
      `http://tessera.attacker.example:${port}/token`,
      TOKEN_ENDPOINT.replace(/^http:/, 'https:'),
      '/token',
    ]) {
      const proof = await dpopProof(key, { htu });
      await expectRefused(() => send(proof), badProof('dpop_wrong_url'));
    }
  });

  it('accepts a proof whose htu carries a query or a fragment (§4.3 item 9)', async () => {
    for (const htu of [`${TOKEN_ENDPOINT}?client=agent`, `${TOKEN_ENDPOINT}#part`]) {
      await expectBound(await send(await dpopProof(key, { htu })), key);
    }
  });

  it('refuses a proof older than the policy proof max age, past the clock tolerance', async () => {
    const maxAge = settings.dpop.maxAge;
    expect(maxAge).toBe(60);
    const proof = await dpopProof(key, { iat: nowSeconds() - maxAge - DPOP_CLOCK_TOLERANCE_SECONDS - 1 });
    await expectRefused(() => send(proof), badProof('dpop_stale'));
  });

  it('refuses a proof that was fresh when made but has aged past the max age before it was sent', async () => {
    const proof = await dpopProof(key);
    clock.advance(settings.dpop.maxAge + DPOP_CLOCK_TOLERANCE_SECONDS + 1);
    await expectRefused(() => send(proof), badProof('dpop_stale'));
  });

  it('accepts a proof as old as the max age', async () => {
    await expectBound(await send(await dpopProof(key, { iat: nowSeconds() - settings.dpop.maxAge })), key);
  });

  it('takes the max age from the policy', async () => {
    const maxAge = settings.dpop.maxAge;
    settings.dpop.maxAge = 10;
    try {
      const proof = await dpopProof(key, { iat: nowSeconds() - 30 });
      await expectRefused(() => send(proof), badProof('dpop_stale'));
    } finally {
      settings.dpop.maxAge = maxAge;
    }
  });

  it('refuses a proof issued in the future beyond the clock tolerance, and accepts one within it', async () => {
    const ahead = await dpopProof(key, { iat: nowSeconds() + DPOP_CLOCK_TOLERANCE_SECONDS + 30 });
    await expectRefused(() => send(ahead), badProof('dpop_stale'));
    const slightlyAhead = await dpopProof(key, { iat: nowSeconds() + DPOP_CLOCK_TOLERANCE_SECONDS - 2 });
    await expectBound(await send(slightlyAhead), key);
  });

  it('refuses a proof without jti, htm, htu or iat', async () => {
    for (const claim of ['jti', 'htm', 'htu', 'iat']) {
      const proof = await dpopProof(key, { omit: [claim] });
      await expectRefused(() => send(proof), badProof('dpop_invalid'));
    }
    const emptyJti = await dpopProof(key, { jti: '' });
    await expectRefused(() => send(emptyJti), badProof('dpop_invalid'));
  });

  it('refuses a request with more than one DPoP header', async () => {
    const proofs = [await dpopProof(key), await dpopProof(key)];
    await expectRefused(() => send(proofs), badProof('one_proof'));
    await expectRefused(() => send(proofs.join(',')), badProof('one_proof'));
  });

  it('refuses a DPoP header that is not a JWT', async () => {
    for (const proof of ['not-a-jwt', 'a.b.c', '']) {
      await expectRefused(() => send(proof), badProof('dpop_invalid'));
    }
  });

  it('does not use up the attestation of a request whose proof is refused', async () => {
    const subject_token = await attestation();
    await expectRefused(
      async () => send(await dpopProof(key, { htm: 'GET' }), { subject_token }),
      badProof('dpop_wrong_method'),
    );
    await expectBound(await send(await dpopProof(key), { subject_token }), key);
  });

  it('audits a refused proof with the agent its attestation proved', async () => {
    const [, audit] = await expectRefused(
      async () => send(await dpopProof(key, { htm: 'GET' })),
      badProof('dpop_wrong_method'),
    );
    expect(audit.agent).toBe(DEMO_AGENT);
  });
});

describe('POST /token: a DPoP proof is accepted once (RFC 9449 §11.1)', () => {
  it('refuses a proof used before, even with a fresh attestation, without using up that attestation', async () => {
    const key = await dpopKey();
    const proof = await dpopProof(key);
    await expectBound(await send(proof), key);

    const subject_token = await attestation();
    await expectRefused(() => send(proof, { subject_token }), REPLAYED);
    await expectBound(await send(await dpopProof(key), { subject_token }), key);
  });

  it('refuses a replayed proof after the agent object is evicted', async () => {
    const key = await dpopKey();
    const proof = await dpopProof(key);
    await expectBound(await send(proof), key);

    await evictAgentObject();

    await expectRefused(() => send(proof), REPLAYED);
  });

  it('uses up the proof of a request refused by policy: the state gate runs alongside the decision', async () => {
    const key = await dpopKey();
    const proof = await dpopProof(key);
    await expectRefused(() => send(proof, { scope: 'tickets:delete' }), {
      status: 400,
      error: 'invalid_scope',
      reason: 'action_not_granted',
    });
    await expectRefused(() => send(proof), REPLAYED);
  });
});

describe('POST /token: policy that requires DPoP-bound tokens', () => {
  it('refuses a token for an audience that requires DPoP to a request without a proof', async () => {
    expect(settings.dpop.requiredAudiences).toContain(PAYMENTS);
    const [, audit] = await expectRefused(() => send(undefined, REFUND), DPOP_REQUIRED);
    expect(detailOf(audit).requiredBy).toBe('audience');
    expect(audit.agent).toBe(DEMO_AGENT);
    expect(audit.audience).toBe(PAYMENTS);
  });

  it('issues a DPoP-bound token for that audience to a request with a proof', async () => {
    const key = await dpopKey();
    const { body, claims } = await expectBound(await send(await dpopProof(key), REFUND), key);
    expect(body.scope).toBe('payments:refund');
    expect(claims.aud).toBe(PAYMENTS);
  });

  it('does not use up the attestation of a request refused for lacking a proof', async () => {
    const subject_token = await attestation();
    await expectRefused(() => send(undefined, { ...REFUND, subject_token }), DPOP_REQUIRED);
    const key = await dpopKey();
    await expectBound(await send(await dpopProof(key), { ...REFUND, subject_token }), key);
  });

  describe('for an agent that requires DPoP (attack-path-scanner, attesting through SPIRE)', () => {
    const SPIRE_ISS = 'https://spire.acme.example';
    const SPIRE_JWKS = 'https://spire.acme.example/keys';
    const SPIRE_KID = 'spire-dpop-key-1';
    const SCANNER = 'attack-path-scanner';
    let spireKey: CryptoKey;
    let spireJwks: { keys: JWK[] };

    const urlOf = (input: RequestInfo | URL) => (input instanceof Request ? input.url : String(input));

    /** The scanner reading the security graph, with a fresh JWT-SVID from SPIRE. */
    async function scannerRead(proof: string | undefined): Promise<Response> {
      const subject_token = await attestation({
        claims: { iss: SPIRE_ISS, sub: `spiffe://acme.example/agents/${SCANNER}` },
        key: spireKey,
        header: { kid: SPIRE_KID },
      });
      return send(proof, {
        subject_token,
        audience: GRAPH,
        scope: 'graph:read',
        task: { description: 'Map the paths from the internet to the billing database' },
      });
    }

    beforeAll(async () => {
      const pair = await generateKeyPair('ES256', { extractable: true });
      spireKey = pair.privateKey;
      spireJwks = { keys: [{ ...(await exportJWK(pair.publicKey)), kid: SPIRE_KID, alg: 'ES256', use: 'sig' }] };
    });

    beforeEach(() => {
      vi.spyOn(globalThis, 'fetch').mockImplementation(async (input) => {
        const url = urlOf(input);
        if (url === SPIRE_JWKS) return Response.json(spireJwks);
        throw new Error(`unexpected fetch of ${url}`);
      });
    });

    afterEach(() => {
      vi.restoreAllMocks();
    });

    it('refuses the agent a token without a proof, even for an audience that does not require one', async () => {
      expect(loadedPolicy().bundle.agents[SCANNER]?.requireDpop).toBe(true);
      expect(settings.dpop.requiredAudiences).not.toContain(GRAPH);
      const [, audit] = await expectRefused(() => scannerRead(undefined), DPOP_REQUIRED);
      expect(detailOf(audit).requiredBy).toBe('agent');
      expect(audit.agent).toBe(SCANNER);
    });

    it('issues the agent a DPoP-bound token with a proof', async () => {
      const key = await dpopKey();
      const { audit, body } = await expectBound(await scannerRead(await dpopProof(key)), key);
      expect(audit.agent).toBe(SCANNER);
      expect(audit.attestationVia).toBe('spire');
      expect(body.scope).toBe('graph:read');
    });
  });
});

describe('POST /token: DPoP nonces (RFC 9449 §8)', () => {
  const nonceSetting = settings.dpop.nonce;

  beforeAll(() => {
    settings.dpop.nonce = true;
  });

  afterAll(() => {
    settings.dpop.nonce = nonceSetting;
  });

  /** Sends a proof without a nonce and returns the nonce the broker asks for. */
  async function askNonce(key: DpopKey, overrides: ExchangeFields = {}): Promise<string> {
    const [response] = await expectRefused(async () => send(await dpopProof(key), overrides), NONCE_NEEDED);
    const nonce = response.headers.get('dpop-nonce');
    expect(nonce).toBeTypeOf('string');
    expect(nonce).not.toBe('');
    return nonce as string;
  }

  it('asks for a nonce (use_dpop_nonce, DPoP-Nonce) without using up the attestation', async () => {
    const key = await dpopKey();
    const subject_token = await attestation();
    const nonce = await askNonce(key, { subject_token });

    const response = await send(await dpopProof(key, { nonce }), { subject_token });
    await expectBound(response, key);
    expect(response.headers.get('dpop-nonce')).toBe(nonce);
  });

  it('refuses a proof with a nonce the broker did not issue, and says which to use', async () => {
    const key = await dpopKey();
    const nonce = await askNonce(key);
    const [response] = await expectRefused(
      async () => send(await dpopProof(key, { nonce: crypto.randomUUID() })),
      NONCE_NEEDED,
    );
    expect(response.headers.get('dpop-nonce')).toBe(nonce);
  });

  it('accepts the previous nonce after one rotation, but not after two', async () => {
    const key = await dpopKey();
    const first = await askNonce(key);

    clock.advance(NONCE_LIFETIME_SECONDS);
    const rotated = await send(await dpopProof(key, { nonce: first }));
    await expectBound(rotated, key);
    const second = rotated.headers.get('dpop-nonce');
    expect(second).toBeTypeOf('string');
    expect(second).not.toBe(first);

    clock.advance(NONCE_LIFETIME_SECONDS);
    const [refused] = await expectRefused(async () => send(await dpopProof(key, { nonce: first })), NONCE_NEEDED);
    const third = refused.headers.get('dpop-nonce');
    expect([first, second]).not.toContain(third);
    await expectBound(await send(await dpopProof(key, { nonce: second as string })), key);
  });

  it('refuses a nonce older than twice its lifetime, even when no request rotated it in between', async () => {
    const key = await dpopKey();
    const first = await askNonce(key);
    clock.advance(2 * NONCE_LIFETIME_SECONDS + 1);
    await expectRefused(async () => send(await dpopProof(key, { nonce: first })), NONCE_NEEDED);
  });

  it('asks no nonce of a request without a proof', async () => {
    const response = await send(undefined);
    await expectGranted(response, 'Bearer');
    expect(response.headers.get('dpop-nonce')).toBeNull();
  });
});

describe('POST /token: DPoP nonces off (policies/tessera.yaml)', () => {
  it('accepts a proof that carries a nonce, and hands out none', async () => {
    expect(settings.dpop.nonce).toBe(false);
    const key = await dpopKey();
    const response = await send(await dpopProof(key, { nonce: 'client-chosen' }));
    await expectBound(response, key);
    expect(response.headers.get('dpop-nonce')).toBeNull();
  });
});

describe('GET /.well-known/oauth-authorization-server: DPoP (RFC 9449 §5.1)', () => {
  it('lists the asymmetric proof algorithms it accepts, and no symmetric or none', async () => {
    const response = await exports.default.fetch(`${ISSUER}/.well-known/oauth-authorization-server`);
    expect(response.status).toBe(200);
    const { dpop_signing_alg_values_supported: algs } = (await response.json()) as {
      dpop_signing_alg_values_supported: string[];
    };
    expect(algs).toEqual(expect.arrayContaining(['ES256', 'EdDSA', 'RS256', 'PS256']));
    for (const alg of algs) expect(alg).not.toMatch(/^(none|HS\d+)$/i);
  });
});
