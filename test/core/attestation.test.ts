import {
  base64url,
  type CryptoKey,
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  type JWTPayload,
  type JWTVerifyGetKey,
  SignJWT,
} from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { type KeyResolver, verifyAttestation } from '../../worker/core/attestation';
import { KeySourceError } from '../../worker/core/errors';
import type {
  Agent,
  AttestationAlgorithm,
  ClaimMatch,
  PolicyBundle,
  PublicJwk,
  TrustedIssuer,
} from '../../worker/policy/bundle';
import { loadedPolicy } from '../../worker/policy/loaded';
import { demoSigningKey } from '../helpers/attestation';
import { DEMO_AGENT, DEMO_KID } from '../helpers/demo';
import { rejectionOf } from './refusal';

const BROKER = 'https://broker.example';
/** The time every verification is given: a whole second, so that claims in epoch seconds meet it exactly. */
const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);
const T = NOW.getTime() / 1000;

const demo = loadedPolicy().bundle;
const { clockSkew, maxAge } = demo.settings.attestations;

interface Signer {
  alg: AttestationAlgorithm;
  kid: string;
  key: CryptoKey;
  jwk: PublicJwk;
}

async function newSigner(kid: string, alg: AttestationAlgorithm = 'ES256'): Promise<Signer> {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  const jwk = { ...(await exportJWK(publicKey)), kid, alg } as PublicJwk;
  return { alg, kid, key: privateKey, jwk };
}

function selfSignedAgent(id: string, signer: Signer): Agent {
  return {
    id,
    owner: `${id}-owner@example.com`,
    description: '',
    labels: [],
    demo: false,
    attestation: { kind: 'self_signed', jwks: { keys: [signer.jwk] } },
  };
}

function issuerAgent(id: string, issuer: string, subject: string, claims: Record<string, ClaimMatch> = {}): Agent {
  return {
    id,
    owner: `${id}-owner@example.com`,
    description: '',
    labels: [],
    demo: false,
    attestation: { kind: 'issuer', issuer, subject, claims },
  };
}

function trustedIssuer(id: string, signers: readonly Signer[], overrides: Partial<TrustedIssuer> = {}): TrustedIssuer {
  return {
    id,
    issuer: `https://${id}.example`,
    jwks: { keys: signers.map((signer) => signer.jwk) },
    algorithms: ['ES256', 'RS256'],
    subjectClaim: 'sub',
    claims: {},
    maxAge,
    ...overrides,
  };
}

/** The demo bundle (real settings and policies) with a synthetic inventory. */
function bundleWith(agents: readonly Agent[], issuers: readonly TrustedIssuer[] = []): PolicyBundle {
  return {
    ...demo,
    agents: Object.fromEntries(agents.map((agent) => [agent.id, agent])),
    issuers: Object.fromEntries(issuers.map((issuer) => [issuer.id, issuer])),
  };
}

/** Inline JWKS for issuers and agents: what the broker does for an issuer configured with `jwks`. */
const localKeys: KeyResolver = {
  forIssuer(issuer) {
    if (issuer.jwks === undefined) throw new Error(`test issuer ${issuer.id} has no inline JWKS`);
    return createLocalJWKSet(issuer.jwks);
  },
  forAgent(agent) {
    return createLocalJWKSet(agent.attestation.jwks);
  },
};

function sign(signer: Signer, claims: JWTPayload, options: { omit?: readonly string[] } = {}): Promise<string> {
  const payload: JWTPayload = { aud: BROKER, iat: T, exp: T + 120, jti: 'jti-1', ...claims };
  for (const claim of options.omit ?? []) delete payload[claim];
  return new SignJWT(payload).setProtectedHeader({ alg: signer.alg, kid: signer.kid }).sign(signer.key);
}

function verify(token: string, bundle: PolicyBundle, options: { now?: Date; keys?: KeyResolver } = {}) {
  return verifyAttestation(token, {
    now: options.now ?? NOW,
    brokerIssuer: BROKER,
    bundle,
    keys: options.keys ?? localKeys,
  });
}

let agentKey: Signer;
let otherKey: Signer;
let issuerKey: Signer;
let secondIssuerKey: Signer;
let rsaIssuerKey: Signer;

beforeAll(async () => {
  [agentKey, otherKey, issuerKey, secondIssuerKey, rsaIssuerKey] = await Promise.all([
    newSigner('agent-1'),
    newSigner('agent-1'),
    newSigner('issuer-1'),
    newSigner('issuer-2'),
    newSigner('issuer-rsa', 'RS256'),
  ]);
});

describe('verifyAttestation: self-signed assertions', () => {
  const self = (claims: JWTPayload = {}) => sign(agentKey, { iss: 'agent-a', sub: 'agent-a', ...claims });
  const bundle = () => bundleWith([selfSignedAgent('agent-a', agentKey), selfSignedAgent('agent-b', otherKey)]);

  it('binds an assertion signed with its registered key to the agent named by iss and sub', async () => {
    const verified = await verify(await self(), bundle());
    expect(verified.agent.id).toBe('agent-a');
    expect(verified.via).toBe('self');
    expect(verified.jti).toBe('jti-1');
  });

  it('binds the demo agent of the real bundle with its committed key', async () => {
    const demoSigner: Signer = { ...agentKey, kid: DEMO_KID, key: await demoSigningKey() };
    const verified = await verify(await sign(demoSigner, { iss: DEMO_AGENT, sub: DEMO_AGENT }), demo);
    expect(verified.agent.id).toBe(DEMO_AGENT);
    expect(verified.agent.owner).toBe('alice@example.com');
  });

  it("refuses the demo agent's kid with another key", async () => {
    const token = await sign({ ...agentKey, kid: DEMO_KID }, { iss: DEMO_AGENT, sub: DEMO_AGENT });
    const error = await rejectionOf(verify(token, demo));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'bad_signature']);
  });

  it('refuses an assertion whose sub is not its iss: it is not self-signed, and its issuer is not trusted', async () => {
    const error = await rejectionOf(verify(await self({ sub: 'agent-b' }), bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'untrusted_issuer']);
  });

  it("refuses an assertion signed with another agent's key under the registered kid", async () => {
    const token = await sign(otherKey, { iss: 'agent-a', sub: 'agent-a' });
    const error = await rejectionOf(verify(token, bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'bad_signature']);
  });

  it('refuses an assertion whose kid is not registered for the agent', async () => {
    const token = await sign({ ...agentKey, kid: 'agent-unknown' }, { iss: 'agent-a', sub: 'agent-a' });
    const error = await rejectionOf(verify(token, bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'unknown_kid']);
  });

  it('refuses a token from an issuer that is not trusted', async () => {
    const error = await rejectionOf(verify(await self({ iss: 'https://idp.attacker.example' }), bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'untrusted_issuer']);
  });

  it('refuses a self-signed assertion of an agent not in the inventory', async () => {
    const error = await rejectionOf(verify(await self({ iss: 'agent-z', sub: 'agent-z' }), bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'unknown_agent']);
  });

  it('refuses as unknown an agent id that names a property of Object.prototype', async () => {
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const error = await rejectionOf(verify(await self({ iss: name, sub: name }), bundle()));
      expect([error.code, error.reason, error.detail], name).toEqual([
        'invalid_grant',
        'unknown_agent',
        { agent: name },
      ]);
    }
  });

  it('refuses a self-signed assertion for an agent that attests through an issuer', async () => {
    const issuer = trustedIssuer('idp', [issuerKey]);
    const agents = [issuerAgent('agent-i', 'idp', 'workload-i')];
    const token = await sign(agentKey, { iss: 'agent-i', sub: 'agent-i' });
    const error = await rejectionOf(verify(token, bundleWith(agents, [issuer])));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'untrusted_issuer']);
  });

  it('refuses an assertion for another audience', async () => {
    const error = await rejectionOf(verify(await self({ aud: 'https://other.example' }), bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'wrong_audience']);
  });

  it('refuses an assertion without an audience', async () => {
    const token = await sign(agentKey, { iss: 'agent-a', sub: 'agent-a' }, { omit: ['aud'] });
    const error = await rejectionOf(verify(token, bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'wrong_audience']);
  });

  for (const claim of ['exp', 'iat', 'jti']) {
    it(`refuses an assertion without ${claim}`, async () => {
      const token = await sign(agentKey, { iss: 'agent-a', sub: 'agent-a' }, { omit: [claim] });
      const error = await rejectionOf(verify(token, bundle()));
      expect([error.code, error.reason]).toEqual(['invalid_grant', 'missing_claim']);
    });
  }

  it('refuses a jti that is not a non-empty string of at most 256 characters', async () => {
    for (const jti of ['', 'j'.repeat(257), 42]) {
      const error = await rejectionOf(verify(await self({ jti: jti as string }), bundle()));
      expect([error.code, error.reason], `jti ${JSON.stringify(jti)}`).toEqual(['invalid_grant', 'missing_claim']);
    }
    expect((await verify(await self({ jti: 'j'.repeat(256) }), bundle())).jti).toHaveLength(256);
  });

  it('refuses with jwks_unavailable when the resolver has no key source for the agent', async () => {
    const none: KeyResolver = {
      ...localKeys,
      forAgent: (agent) => {
        throw new KeySourceError(`agent ${agent.id} has no usable JWKS`);
      },
    };
    const error = await rejectionOf(verify(await self(), bundle(), { keys: none }));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'jwks_unavailable']);
  });

  it('refuses a token that is not a JWT', async () => {
    const error = await rejectionOf(verify('not.a.jwt', bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'malformed_attestation']);
  });

  it('refuses alg none and HMAC before looking up any key', async () => {
    const part = (value: object) => base64url.encode(JSON.stringify(value));
    const header = (alg: string) => part({ alg, kid: 'agent-1' });
    const body = part({ iss: 'agent-a', sub: 'agent-a', aud: BROKER, iat: T, exp: T + 60, jti: 'x' });
    const untouchable: KeyResolver = {
      forIssuer: () => {
        throw new Error('no key lookup expected');
      },
      forAgent: () => {
        throw new Error('no key lookup expected');
      },
    };
    for (const alg of ['none', 'HS256']) {
      const error = await rejectionOf(verify(`${header(alg)}.${body}.c2ln`, bundle(), { keys: untouchable }));
      expect([error.code, error.reason], alg).toEqual(['invalid_grant', 'alg_not_allowed']);
    }
  });
});

describe('verifyAttestation: issuer tokens', () => {
  const workflow = 'acme/deployer/.github/workflows/release.yml@refs/heads/main';
  const issuer = () => trustedIssuer('ci', [issuerKey], { claims: { repository_owner: 'acme' } });
  const releaseBot = () =>
    issuerAgent('release-bot', 'ci', 'repo:acme/deployer:ref:*', {
      workflow_ref: 'acme/deployer/.github/workflows/release.yml@*',
    });
  const ciToken = (claims: JWTPayload = {}) =>
    sign(issuerKey, {
      iss: 'https://ci.example',
      sub: 'repo:acme/deployer:ref:refs/heads/main',
      repository_owner: 'acme',
      workflow_ref: workflow,
      ...claims,
    });

  it('binds through the subject glob, the agent claims and the issuer-wide claims', async () => {
    const verified = await verify(await ciToken(), bundleWith([releaseBot()], [issuer()]));
    expect(verified.agent.id).toBe('release-bot');
    expect(verified.via).toBe('ci');
  });

  it('binds on a subject claim other than sub when the issuer names one', async () => {
    const bundle = bundleWith(
      [issuerAgent('indexer', 'k8s', 'system:serviceaccount:agents:indexer')],
      [trustedIssuer('k8s', [issuerKey], { issuer: 'https://k8s.example', subjectClaim: 'service_account' })],
    );
    const token = await sign(issuerKey, {
      iss: 'https://k8s.example',
      sub: 'opaque-id',
      service_account: 'system:serviceaccount:agents:indexer',
    });
    expect((await verify(token, bundle)).agent.id).toBe('indexer');
  });

  it('refuses a token whose subject matches no agent', async () => {
    const error = await rejectionOf(
      verify(await ciToken({ sub: 'repo:acme/other:ref:refs/heads/main' }), bundleWith([releaseBot()], [issuer()])),
    );
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'unknown_agent']);
  });

  it("refuses a token whose subject matches but whose claims fail the agent's constraints", async () => {
    const token = await ciToken({ workflow_ref: 'acme/deployer/.github/workflows/evil.yml@refs/heads/main' });
    const error = await rejectionOf(verify(token, bundleWith([releaseBot()], [issuer()])));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'unknown_agent']);
  });

  it('does not bind an agent of another issuer with the same subject', async () => {
    const bundle = bundleWith(
      [issuerAgent('elsewhere', 'other', 'repo:acme/deployer:ref:refs/heads/main')],
      [issuer(), trustedIssuer('other', [secondIssuerKey])],
    );
    const error = await rejectionOf(verify(await ciToken(), bundle));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'unknown_agent']);
  });

  it('refuses a token that two agents would bind to', async () => {
    const bundle = bundleWith(
      [releaseBot(), issuerAgent('any-main', 'ci', 'repo:acme/*:ref:refs/heads/main')],
      [issuer()],
    );
    const error = await rejectionOf(verify(await ciToken(), bundle));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'ambiguous_binding']);
    expect(error.detail.agents).toEqual(['release-bot', 'any-main']);
  });

  it('refuses a token that fails an issuer-wide claim, even when an agent would bind', async () => {
    const error = await rejectionOf(
      verify(await ciToken({ repository_owner: 'evil' }), bundleWith([releaseBot()], [issuer()])),
    );
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'claim_mismatch']);
    expect(error.detail.claims).toEqual(['repository_owner']);
  });

  it('refuses a token that lacks an issuer-wide claim', async () => {
    const token = await sign(issuerKey, {
      iss: 'https://ci.example',
      sub: 'repo:acme/deployer:ref:refs/heads/main',
      workflow_ref: workflow,
    });
    const error = await rejectionOf(verify(token, bundleWith([releaseBot()], [issuer()])));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'claim_mismatch']);
  });

  it("refuses a token signed with another issuer's key", async () => {
    const token = await sign(
      { ...secondIssuerKey, kid: 'issuer-1' },
      {
        iss: 'https://ci.example',
        sub: 'repo:acme/deployer:ref:refs/heads/main',
        repository_owner: 'acme',
        workflow_ref: workflow,
      },
    );
    const error = await rejectionOf(verify(token, bundleWith([releaseBot()], [issuer()])));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'bad_signature']);
  });

  it("refuses an algorithm the broker allows but the issuer's narrower list does not", async () => {
    const rsaOnly = trustedIssuer('ci', [issuerKey, rsaIssuerKey], {
      claims: { repository_owner: 'acme' },
      algorithms: ['RS256'],
    });
    const bundle = bundleWith([releaseBot()], [rsaOnly]);
    const error = await rejectionOf(verify(await ciToken(), bundle));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'alg_not_allowed']);
    // The issuer's own algorithm passes.
    const rsaToken = await sign(rsaIssuerKey, {
      iss: 'https://ci.example',
      sub: 'repo:acme/deployer:ref:refs/heads/main',
      repository_owner: 'acme',
      workflow_ref: workflow,
    });
    expect((await verify(rsaToken, bundle)).agent.id).toBe('release-bot');
  });

  it('refuses with jwks_unavailable when the key source fails', async () => {
    const failing: KeyResolver = {
      ...localKeys,
      forIssuer: (): JWTVerifyGetKey => async () => {
        throw new KeySourceError('https://ci.example/jwks: TypeError: fetch failed');
      },
    };
    const error = await rejectionOf(verify(await ciToken(), bundleWith([releaseBot()], [issuer()]), { keys: failing }));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'jwks_unavailable']);
    expect(error.cause).toBeInstanceOf(KeySourceError);
  });

  it('refuses with jwks_unavailable when the resolver has no key source for the issuer', async () => {
    // The broker's own resolver throws KeySourceError from forIssuer for an issuer with neither jwks nor jwks_uri.
    const none: KeyResolver = {
      ...localKeys,
      forIssuer: (trusted) => {
        throw new KeySourceError(`issuer ${trusted.id} has no JWKS`);
      },
    };
    const error = await rejectionOf(verify(await ciToken(), bundleWith([releaseBot()], [issuer()]), { keys: none }));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'jwks_unavailable']);
  });
});

describe('verifyAttestation: the demo inventory of trusted issuers', () => {
  /** The real issuers and agents, with every issuer's remote JWKS replaced by one test key of its algorithm. */
  const demoKeys = (): KeyResolver => ({
    ...localKeys,
    forIssuer: (trusted) =>
      createLocalJWKSet({ keys: [trusted.algorithms.includes('ES256') ? issuerKey.jwk : rsaIssuerKey.jwk] }),
  });
  const github = 'https://token.actions.githubusercontent.com';
  const releaseClaims = {
    iss: github,
    sub: 'repo:acme/deployer:ref:refs/heads/main',
    repository_owner: 'acme',
    workflow_ref: 'acme/deployer/.github/workflows/release.yml@refs/heads/main',
  };

  it('binds a GitHub Actions token of the release workflow to release-bot', async () => {
    const verified = await verify(await sign(rsaIssuerKey, releaseClaims), demo, { keys: demoKeys() });
    expect([verified.agent.id, verified.via]).toEqual(['release-bot', 'github-actions']);
  });

  it('refuses a GitHub Actions token signed with ES256', async () => {
    const error = await rejectionOf(verify(await sign(issuerKey, releaseClaims), demo, { keys: demoKeys() }));
    expect(error.reason).toBe('alg_not_allowed');
  });

  it('refuses a GitHub Actions token from another organisation', async () => {
    const token = await sign(rsaIssuerKey, { ...releaseClaims, repository_owner: 'evil' });
    const error = await rejectionOf(verify(token, demo, { keys: demoKeys() }));
    expect(error.reason).toBe('claim_mismatch');
  });

  it('refuses a GitHub Actions token from another workflow of the repository', async () => {
    const token = await sign(rsaIssuerKey, {
      ...releaseClaims,
      workflow_ref: 'acme/deployer/.github/workflows/ci.yml@refs/heads/main',
    });
    const error = await rejectionOf(verify(token, demo, { keys: demoKeys() }));
    expect(error.reason).toBe('unknown_agent');
  });

  it('binds a SPIFFE SVID of the trust domain to its agent', async () => {
    const token = await sign(issuerKey, {
      iss: 'https://spire.acme.example',
      sub: 'spiffe://acme.example/agents/attack-path-scanner',
    });
    const verified = await verify(token, demo, { keys: demoKeys() });
    expect([verified.agent.id, verified.via]).toEqual(['attack-path-scanner', 'spire']);
  });

  it('refuses a SPIFFE SVID from another trust domain', async () => {
    const token = await sign(issuerKey, {
      iss: 'https://spire.acme.example',
      sub: 'spiffe://evil.example/agents/attack-path-scanner',
    });
    const error = await rejectionOf(verify(token, demo, { keys: demoKeys() }));
    expect(error.reason).toBe('claim_mismatch');
  });

  it("accepts a Kubernetes token up to the issuer's 600-second max age", async () => {
    const token = await sign(issuerKey, {
      iss: 'https://kubernetes.default.svc.cluster.local',
      sub: 'system:serviceaccount:agents:graph-indexer',
      iat: T - 600 - clockSkew,
      exp: T + 60,
    });
    expect((await verify(token, demo, { keys: demoKeys() })).agent.id).toBe('graph-indexer');
  });
});

describe('verifyAttestation: replay bookkeeping', () => {
  const agents = () => [
    selfSignedAgent('agent-a', agentKey),
    issuerAgent('workload', 'one', 'w'),
    issuerAgent('workload-2', 'two', 'w'),
  ];
  const issuers = () => [trustedIssuer('one', [issuerKey], { maxAge: 600 }), trustedIssuer('two', [secondIssuerKey])];

  it('remembers the jti until exp plus the clock skew when exp comes first', async () => {
    const token = await sign(agentKey, { iss: 'agent-a', sub: 'agent-a', iat: T - 10, exp: T + 60 });
    expect((await verify(token, bundleWith(agents()))).replayUntil).toBe(T + 60 + clockSkew);
  });

  it("remembers the jti until iat plus the issuer's max age plus the clock skew when that comes first", async () => {
    const token = await sign(issuerKey, { iss: 'https://one.example', sub: 'w', iat: T - 10, exp: T + 3600 });
    const verified = await verify(token, bundleWith(agents(), issuers()));
    expect(verified.replayUntil).toBe(T - 10 + 600 + clockSkew);
  });

  it('uses the broker-wide max age for self-signed assertions', async () => {
    const token = await sign(agentKey, { iss: 'agent-a', sub: 'agent-a', iat: T, exp: T + 3600 });
    expect((await verify(token, bundleWith(agents()))).replayUntil).toBe(T + maxAge + clockSkew);
  });

  it('keys replay on the issuer and the jti, so one jti from two issuers is two attestations', async () => {
    const bundle = bundleWith(agents(), issuers());
    const one = await verify(await sign(issuerKey, { iss: 'https://one.example', sub: 'w', jti: 'same' }), bundle);
    const two = await verify(
      await sign(secondIssuerKey, { iss: 'https://two.example', sub: 'w', jti: 'same' }),
      bundle,
    );
    const again = await verify(await sign(issuerKey, { iss: 'https://one.example', sub: 'w', jti: 'same' }), bundle);
    expect(one.replayKey).not.toBe(two.replayKey);
    expect(again.replayKey).toBe(one.replayKey);
  });

  // `replayUntil` is the last second the jti must be remembered: any later, the attestation is refused anyway.
  for (const [bound, claims, reason] of [
    ['exp', { iat: T, exp: T + 60 }, 'expired'],
    ['the max age', { iat: T, exp: T + 3600 }, 'too_old'],
  ] as const) {
    it(`refuses the attestation after replayUntil when ${bound} is the bound`, async () => {
      const token = await sign(agentKey, { iss: 'agent-a', sub: 'agent-a', ...claims });
      const bundle = bundleWith(agents());
      const { replayUntil } = await verify(token, bundle);
      await expect(verify(token, bundle, { now: new Date((replayUntil - 1) * 1000) })).resolves.toBeDefined();
      const error = await rejectionOf(verify(token, bundle, { now: new Date((replayUntil + 1) * 1000) }));
      expect([error.code, error.reason]).toEqual(['invalid_grant', reason]);
    });
  }
});

describe('verifyAttestation: clock boundaries', () => {
  const bundle = () => bundleWith([selfSignedAgent('agent-a', agentKey)]);
  const at = (seconds: number) => new Date(seconds * 1000);
  const token = (claims: JWTPayload) => sign(agentKey, { iss: 'agent-a', sub: 'agent-a', ...claims });

  it('accepts an attestation up to the second before exp plus the clock skew', async () => {
    const exp = T - clockSkew + 1;
    await expect(verify(await token({ iat: T - 60, exp }), bundle())).resolves.toMatchObject({ jti: 'jti-1' });
  });

  it('refuses as expired from exp plus the clock skew', async () => {
    const error = await rejectionOf(verify(await token({ iat: T - 60, exp: T - clockSkew }), bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'expired']);
  });

  it('accepts an iat up to the clock skew in the future', async () => {
    await expect(verify(await token({ iat: T + clockSkew, exp: T + 120 }), bundle())).resolves.toMatchObject({
      jti: 'jti-1',
    });
  });

  it('refuses an iat one second further in the future', async () => {
    const error = await rejectionOf(verify(await token({ iat: T + clockSkew + 1, exp: T + 120 }), bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'issued_in_future']);
  });

  it('accepts an attestation as old as the max age plus the clock skew', async () => {
    const iat = T - maxAge - clockSkew;
    await expect(verify(await token({ iat, exp: T + 120 }), bundle())).resolves.toMatchObject({ jti: 'jti-1' });
  });

  it('refuses as too old one second past the max age plus the clock skew', async () => {
    const error = await rejectionOf(verify(await token({ iat: T - maxAge - clockSkew - 1, exp: T + 120 }), bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'too_old']);
  });

  it("applies the issuer's own max age to its tokens", async () => {
    const issuers = [trustedIssuer('k8s', [issuerKey], { maxAge: 600 })];
    const agents = [issuerAgent('indexer', 'k8s', 'sa')];
    const iss = 'https://k8s.example';
    const edge = await sign(issuerKey, { iss, sub: 'sa', iat: T - 600 - clockSkew, exp: T + 120 });
    expect((await verify(edge, bundleWith(agents, issuers))).agent.id).toBe('indexer');
    const past = await sign(issuerKey, { iss, sub: 'sa', iat: T - 600 - clockSkew - 1, exp: T + 120 });
    const error = await rejectionOf(verify(past, bundleWith(agents, issuers)));
    expect(error.reason).toBe('too_old');
  });

  it('accepts an nbf up to the clock skew in the future and refuses one second later', async () => {
    await expect(verify(await token({ nbf: T + clockSkew }), bundle())).resolves.toMatchObject({ jti: 'jti-1' });
    const error = await rejectionOf(verify(await token({ nbf: T + clockSkew + 1 }), bundle()));
    expect([error.code, error.reason]).toEqual(['invalid_grant', 'not_yet_valid']);
  });

  it('uses the clock it is given, not the wall clock', async () => {
    const old = await token({ iat: T, exp: T + 60 });
    await expect(verify(old, bundle(), { now: at(T + 30) })).resolves.toMatchObject({ jti: 'jti-1' });
    const error = await rejectionOf(verify(old, bundle(), { now: at(T + 60 + clockSkew) }));
    expect(error.reason).toBe('expired');
  });
});
