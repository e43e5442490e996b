/**
 * Security failure cases of `POST /token`: every way an attestation or a request can be bad must be
 * refused with the spec's status and OAuth code, audited with its tagged reason, and issue no token.
 */
import {
  base64url,
  type CryptoKey,
  decodeJwt,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
} from 'jose';
import { afterEach, beforeAll, beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import type { AuditEvent } from '../../worker/audit/schema';
import { loadedPolicy } from '../../worker/policy/loaded';
import { evictAgentObject } from '../helpers/agent-object';
import { attestation, demoClaims, flipChar } from '../helpers/attestation';
import { auditRecords, lastAudit } from '../helpers/audit';
import { nowSeconds } from '../helpers/clock';
import { DEMO_AGENT, DEMO_KID, GRAPH, TICKETS } from '../helpers/demo';
import { exchange, exchangeFields, postJson, readError } from '../helpers/requests';

const { bundle } = loadedPolicy();
const { maxAge, clockSkew } = bundle.settings.attestations;

const GITHUB_ISS = 'https://token.actions.githubusercontent.com';
const GITHUB_JWKS = 'https://token.actions.githubusercontent.com/.well-known/jwks';
const SPIRE_ISS = 'https://spire.acme.example';
const SPIRE_JWKS = 'https://spire.acme.example/keys';

async function grantedCount(): Promise<number> {
  return (await auditRecords()).filter((record) => record.decision === 'granted').length;
}

interface Refusal {
  status: number;
  error: string;
  reason: string;
}

/**
 * Sends one request and checks it was refused as `expected`: the error body, no token, exactly one new
 * audit record (refused, with the code and the tagged reason), and no new granted record.
 */
async function expectRefused(send: () => Promise<Response>, expected: Refusal): Promise<AuditEvent> {
  const recordsBefore = (await auditRecords()).length;
  const grantedBefore = await grantedCount();
  const response = await send();
  expect(response.status, await response.clone().text()).toBe(expected.status);
  const body = await readError(response.clone());
  expect(body.error).toBe(expected.error);
  expect(body).not.toHaveProperty('access_token');
  expect(response.headers.get('cache-control')).toBe('no-store');

  expect((await auditRecords()).length).toBe(recordsBefore + 1);
  const audit = await lastAudit();
  expect(audit.decision).toBe('refused');
  expect(audit.errorCode).toBe(expected.error);
  expect(audit.reason).toBe(expected.reason);
  expect(audit.tokenJti).toBeNull();
  expect(audit.grantedActions).toBeNull();
  expect(await grantedCount()).toBe(grantedBefore);
  return audit;
}

const invalidGrant = (reason: string): Refusal => ({ status: 400, error: 'invalid_grant', reason });

interface TokenResponse {
  access_token: string;
  expires_in: number;
  scope: string;
}

/** Checks a request was granted and audited as such; returns the body. */
async function expectGranted(response: Response): Promise<TokenResponse> {
  const body = (await response.json()) as TokenResponse;
  expect(response.status, JSON.stringify(body)).toBe(200);
  expect(typeof body.access_token).toBe('string');
  const audit = await lastAudit();
  expect(audit.decision).toBe('granted');
  expect(audit.tokenJti).toBe(decodeJwt(body.access_token).jti);
  return body;
}

const encodeJson = (value: unknown) => base64url.encode(JSON.stringify(value));

/** The demo agent's registered public key, as anyone reading `policies/agents.yaml` has it. */
function demoPublicJwk(): JWK {
  const agent = bundle.agents[DEMO_AGENT];
  if (agent?.attestation.kind !== 'self_signed') throw new Error('demo-agent is not self-signed');
  const [jwk] = agent.attestation.jwks.keys;
  if (jwk === undefined) throw new Error('demo-agent has no key');
  return jwk as JWK;
}

describe('POST /token: attestation algorithm and signature (RFC 7515, RFC 8725 §3.1)', () => {
  it('rejects an unsigned attestation (alg none)', async () => {
    for (const alg of ['none', 'None', 'NONE']) {
      const unsigned = `${encodeJson({ alg, typ: 'JWT' })}.${encodeJson(demoClaims())}.`;
      await expectRefused(() => exchange({ subject_token: unsigned }), invalidGrant('alg_not_allowed'));
    }
  });

  it('rejects an HS256 attestation keyed with the agent public key (key confusion)', async () => {
    const publicJwk = demoPublicJwk();
    const pem = await exportSPKI((await importJWK(publicJwk, 'ES256', { extractable: true })) as CryptoKey);
    const secrets = [new TextEncoder().encode(pem), new TextEncoder().encode(JSON.stringify(publicJwk))];
    for (const key of secrets) {
      const subject_token = await attestation({ alg: 'HS256', key });
      await expectRefused(() => exchange({ subject_token }), invalidGrant('alg_not_allowed'));
    }
  });

  it('rejects an attestation signed with a kid the agent has not registered', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const subject_token = await attestation({ key: privateKey, header: { kid: `${DEMO_KID}-rotated` } });
    await expectRefused(() => exchange({ subject_token }), invalidGrant('unknown_kid'));
  });

  it('rejects an attestation whose signature was tampered with', async () => {
    const [header, payload, signature] = (await attestation()).split('.') as [string, string, string];
    const tampered = `${header}.${payload}.${flipChar(signature, Math.floor(signature.length / 2))}`;
    await expectRefused(() => exchange({ subject_token: tampered }), invalidGrant('bad_signature'));
  });

  it('rejects an attestation whose payload was changed after signing', async () => {
    const token = await attestation();
    const [header, , signature] = token.split('.') as [string, string, string];
    const claims = decodeJwt(token);
    const extended = encodeJson({ ...claims, exp: (claims.exp as number) + 3600 });
    await expectRefused(
      () => exchange({ subject_token: `${header}.${extended}.${signature}` }),
      invalidGrant('bad_signature'),
    );
  });
});

describe('POST /token: attestation claims (RFC 7519 §4.1)', () => {
  it('rejects an attestation for another audience', async () => {
    const subject_token = await attestation({ claims: { aud: TICKETS } });
    await expectRefused(() => exchange({ subject_token }), invalidGrant('wrong_audience'));
  });

  it('rejects an expired attestation', async () => {
    const now = nowSeconds();
    const subject_token = await attestation({ claims: { iat: now - 120, exp: now - clockSkew - 30 } });
    await expectRefused(() => exchange({ subject_token }), invalidGrant('expired'));
  });

  it('rejects an attestation issued in the future beyond the clock skew', async () => {
    const now = nowSeconds();
    const subject_token = await attestation({ claims: { iat: now + clockSkew + 60, exp: now + clockSkew + 180 } });
    await expectRefused(() => exchange({ subject_token }), invalidGrant('issued_in_future'));
  });

  it('rejects an attestation older than the maximum age even if it has not expired', async () => {
    const now = nowSeconds();
    const subject_token = await attestation({ claims: { iat: now - maxAge - clockSkew - 60, exp: now + 60 } });
    await expectRefused(() => exchange({ subject_token }), invalidGrant('too_old'));
  });

  it('rejects an attestation without a jti', async () => {
    const missing = await attestation({ omit: ['jti'] });
    await expectRefused(() => exchange({ subject_token: missing }), invalidGrant('missing_claim'));
    const empty = await attestation({ claims: { jti: '' } });
    await expectRefused(() => exchange({ subject_token: empty }), invalidGrant('missing_claim'));
  });
});

describe('POST /token: attestation replay (jti)', () => {
  it('rejects a replayed attestation', async () => {
    const subject_token = await attestation();
    await expectGranted(await exchange({ subject_token }));
    const audit = await expectRefused(() => exchange({ subject_token }), invalidGrant('replayed'));
    expect(audit.agent).toBe(DEMO_AGENT);
    expect(audit.attestationJti).toBe(decodeJwt(subject_token).jti);
  });

  it('rejects a replayed attestation after the agent state object is evicted', async () => {
    const subject_token = await attestation();
    await expectGranted(await exchange({ subject_token }));

    await evictAgentObject();

    await expectRefused(() => exchange({ subject_token }), invalidGrant('replayed'));
  });
});

describe('POST /token: attestation issuer and agent binding', () => {
  it('rejects a well-signed attestation from an untrusted issuer', async () => {
    const subject_token = await attestation({ claims: { iss: 'https://idp.attacker.example' } });
    await expectRefused(() => exchange({ subject_token }), invalidGrant('untrusted_issuer'));
  });

  it('rejects a self-signed attestation of an agent not in the inventory', async () => {
    const subject_token = await attestation({ claims: { iss: 'ghost-agent', sub: 'ghost-agent' } });
    const audit = await expectRefused(() => exchange({ subject_token }), invalidGrant('unknown_agent'));
    expect(audit.agent).toBeNull();
  });

  it('rejects a self-signed attestation whose sub is not its iss', async () => {
    const subject_token = await attestation({ claims: { sub: 'release-bot' } });
    const audit = await expectRefused(() => exchange({ subject_token }), invalidGrant('untrusted_issuer'));
    expect(audit.agent).toBeNull();
  });

  it('rejects a self-signed attestation of an agent that must attest through its issuer', async () => {
    const subject_token = await attestation({ claims: { iss: 'release-bot', sub: 'release-bot' } });
    await expectRefused(() => exchange({ subject_token, scope: 'tickets:comment' }), invalidGrant('untrusted_issuer'));
  });
});

describe('POST /token: authorization gate (RFC 8707, RFC 6749 §5.2)', () => {
  it('rejects an audience not granted to the agent', async () => {
    await expectRefused(() => exchange({ audience: 'https://payroll.example.com', scope: 'tickets:read' }), {
      status: 400,
      error: 'invalid_target',
      reason: 'audience_not_granted',
    });
  });

  it('rejects an action not granted to the agent', async () => {
    await expectRefused(() => exchange({ scope: 'tickets:delete' }), {
      status: 400,
      error: 'invalid_scope',
      reason: 'action_not_granted',
    });
  });

  it('refuses the whole request when one of several actions is not granted', async () => {
    for (const scope of ['tickets:read tickets:delete', 'tickets:read graph:read']) {
      const audit = await expectRefused(() => exchange({ scope }), {
        status: 400,
        error: 'invalid_scope',
        reason: 'action_not_granted',
      });
      expect(audit.requestedActions).toBe(scope);
    }
  });

  it('rejects an action that needs a justification when none is given', async () => {
    await expectRefused(() => exchange({ audience: GRAPH, scope: 'graph:attack-path' }), {
      status: 400,
      error: 'invalid_scope',
      reason: 'justification_required',
    });
  });

  it('grants an action that needs a justification when one is given, capped by its grant', async () => {
    const body = await expectGranted(
      await exchange({
        audience: GRAPH,
        scope: 'graph:attack-path',
        task: {
          description: 'Find attack paths to the billing database',
          justification: 'Security review SR-42, requested by the security team',
        },
      }),
    );
    expect(body.expires_in).toBe(120);
    const claims = decodeJwt(body.access_token);
    expect((claims.exp as number) - (claims.iat as number)).toBe(120);
  });

  it('caps a requested TTL above the grant cap instead of refusing', async () => {
    const body = await expectGranted(await exchange({ requested_ttl: 3000 }));
    expect(body.expires_in).toBe(600);
    const claims = decodeJwt(body.access_token);
    expect((claims.exp as number) - (claims.iat as number)).toBe(600);
    const audit = await lastAudit();
    expect(audit.requestedTtl).toBe(3000);
    expect(JSON.parse(audit.detail ?? '{}')).toMatchObject({ ttl: 600, ttlCapped: true });
  });
});

describe('POST /token: trusted issuers with a remote JWKS', () => {
  const GITHUB_KID = 'gh-key-1';
  let githubKey: CryptoKey;
  let githubJwk: JWK;
  let fetchSpy: MockInstance<typeof fetch>;
  let spireResponse: () => Promise<Response>;

  const urlOf = (input: RequestInfo | URL) => (input instanceof Request ? input.url : String(input));
  const fetchesOf = (url: string) => fetchSpy.mock.calls.filter(([input]) => urlOf(input) === url).length;

  /** A GitHub Actions OIDC token of release-bot's workflow, signed with the issuer's key. */
  function githubToken(claims: JWTPayload = {}, options: { key?: CryptoKey; kid?: string; omit?: string[] } = {}) {
    return attestation({
      claims: {
        iss: GITHUB_ISS,
        sub: 'repo:acme/deployer:ref:refs/heads/main',
        repository: 'acme/deployer',
        repository_owner: 'acme',
        ref: 'refs/heads/main',
        workflow_ref: 'acme/deployer/.github/workflows/release.yml@refs/heads/main',
        ...claims,
      },
      alg: 'RS256',
      key: options.key ?? githubKey,
      header: { kid: options.kid ?? GITHUB_KID },
      omit: options.omit ?? [],
    });
  }

  async function releaseNotes(subject_token: string): Promise<Response> {
    return postJson(
      await exchangeFields({
        subject_token,
        audience: TICKETS,
        scope: 'tickets:comment',
        task: { description: 'Post the release notes of v1.4.0 on the release ticket' },
      }),
    );
  }

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    githubKey = pair.privateKey;
    githubJwk = { ...(await exportJWK(pair.publicKey)), kid: GITHUB_KID, alg: 'RS256', use: 'sig' };
  });

  beforeEach(() => {
    spireResponse = () => Promise.reject(new Error('spire JWKS not set up by this test'));
    fetchSpy = vi.spyOn(globalThis, 'fetch').mockImplementation(async (input) => {
      const url = urlOf(input);
      if (url === GITHUB_JWKS) return Response.json({ keys: [githubJwk] });
      if (url === SPIRE_JWKS) return spireResponse();
      throw new Error(`unexpected fetch of ${url}`);
    });
  });

  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it('accepts a GitHub Actions token for release-bot signed with a key of the issuer JWKS', async () => {
    await expectGranted(await releaseNotes(await githubToken()));
    const audit = await lastAudit();
    expect(audit.agent).toBe('release-bot');
    expect(audit.attestationVia).toBe('github-actions');
  });

  it('refetches the JWKS once for an unknown kid, then refuses it, and not again within the interval', async () => {
    // Make sure the JWKS is cached, then step past the refetch interval so an unknown kid may refetch.
    await expectGranted(await releaseNotes(await githubToken()));
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + (bundle.settings.jwks.refetchInterval + 1) * 1000);
    fetchSpy.mockClear();

    const { privateKey } = await generateKeyPair('RS256');
    const unknownKid = () => githubToken({}, { key: privateKey, kid: 'gh-key-unpublished' });
    await expectRefused(async () => releaseNotes(await unknownKid()), invalidGrant('unknown_kid'));
    expect(fetchesOf(GITHUB_JWKS)).toBe(1);

    await expectRefused(async () => releaseNotes(await unknownKid()), invalidGrant('unknown_kid'));
    expect(fetchesOf(GITHUB_JWKS)).toBe(1);
  });

  it('rejects a GitHub Actions token without the issuer-wide required claim', async () => {
    const subject_token = await githubToken({}, { omit: ['repository_owner'] });
    await expectRefused(() => releaseNotes(subject_token), invalidGrant('claim_mismatch'));
  });

  it('rejects a GitHub Actions token of another organisation', async () => {
    const subject_token = await githubToken({ repository_owner: 'evil-corp' });
    await expectRefused(() => releaseNotes(subject_token), invalidGrant('claim_mismatch'));
  });

  it('rejects a trusted issuer token whose subject matches no agent', async () => {
    const subject_token = await githubToken({ sub: 'repo:acme/website:ref:refs/heads/main' });
    const audit = await expectRefused(() => releaseNotes(subject_token), invalidGrant('unknown_agent'));
    expect(audit.agent).toBeNull();
  });

  it('rejects a release-bot token from a workflow other than the bound one', async () => {
    const subject_token = await githubToken({
      workflow_ref: 'acme/deployer/.github/workflows/untrusted.yml@refs/heads/main',
    });
    await expectRefused(() => releaseNotes(subject_token), invalidGrant('unknown_agent'));
  });

  // The spire issuer is used by no earlier test, so nothing is cached and each request must fetch.
  async function spireToken(): Promise<string> {
    const { privateKey } = await generateKeyPair('ES256');
    return attestation({
      claims: { iss: SPIRE_ISS, sub: 'spiffe://acme.example/agents/attack-path-scanner' },
      key: privateKey,
      header: { kid: 'spire-key-1' },
    });
  }

  it('rejects when the issuer JWKS cannot be fetched', async () => {
    spireResponse = () => Promise.reject(new TypeError('Network connection lost.'));
    const subject_token = await spireToken();
    await expectRefused(
      () => exchange({ subject_token, audience: GRAPH, scope: 'graph:read' }),
      invalidGrant('jwks_unavailable'),
    );
    expect(fetchesOf(SPIRE_JWKS)).toBe(1);
  });

  it('rejects when the issuer JWKS endpoint answers 500', async () => {
    spireResponse = async () => new Response('upstream error', { status: 500 });
    const subject_token = await spireToken();
    await expectRefused(
      () => exchange({ subject_token, audience: GRAPH, scope: 'graph:read' }),
      invalidGrant('jwks_unavailable'),
    );
    expect(fetchesOf(SPIRE_JWKS)).toBe(1);
  });
});
