/**
 * Verification gate: turns a workload attestation (a JWT) into a known agent, or a tagged refusal.
 *
 * Pure: the clock, the broker issuer, the policy bundle and the key lookup are all passed in. Key lookup
 * may do I/O (a remote JWKS) behind the {@link KeyResolver}; its failures surface as `jwks_unavailable`.
 */
import { isCanonicalJwt } from '@tessera/verify';
import { decodeJwt, decodeProtectedHeader, errors, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose';
import {
  type Agent,
  ATTESTATION_ALGORITHMS,
  inventoryAgent,
  type PolicyBundle,
  type TrustedIssuer,
} from '../policy/bundle';
import { unmatchedClaims } from './claim-match';
import { BrokerError, KeySourceError, refuse } from './errors';
import { isWellFormedDeep } from './well-formed';

/** Finds verification keys: per trusted issuer (remote or inline JWKS) and per self-signing agent. */
export interface KeyResolver {
  forIssuer(issuer: TrustedIssuer): JWTVerifyGetKey;
  forAgent(agent: Agent & { attestation: { kind: 'self_signed' } }): JWTVerifyGetKey;
}

export interface AttestationContext {
  now: Date;
  /** The broker's issuer URL: every attestation's required `aud`. */
  brokerIssuer: string;
  bundle: PolicyBundle;
  keys: KeyResolver;
}

export interface VerifiedAttestation {
  agent: Agent;
  /** The trusted issuer's id, or `self` for a self-signed assertion. */
  via: string;
  jti: string;
  /** Unique key for replay protection: the same `jti` from two issuers is two attestations. */
  replayKey: string;
  /** Until when (epoch seconds) the `jti` must be remembered: after that the attestation is refused anyway. */
  replayUntil: number;
}

interface KeySource {
  via: string;
  getKey: JWTVerifyGetKey;
  algorithms: readonly string[];
  maxAge: number;
  bind(payload: JWTPayload): Agent;
}

/** Picks where the keys come from by the (still unverified) `iss`; binding to an agent waits for the signature. */
function keySourceFor(iss: unknown, sub: unknown, ctx: AttestationContext): KeySource {
  const { bundle } = ctx;
  if (typeof iss !== 'string') throw refuse('untrusted_issuer', { iss: iss ?? null });
  const trusted = Object.values(bundle.issuers).find((issuer) => issuer.issuer === iss);
  if (trusted !== undefined) {
    return {
      via: trusted.id,
      getKey: ctx.keys.forIssuer(trusted),
      algorithms: trusted.algorithms,
      maxAge: trusted.maxAge,
      bind: (payload) => bindIssuerToken(trusted, payload, bundle),
    };
  }
  // Not a trusted issuer: only a self-signed assertion (iss = sub = an agent id) remains.
  if (iss !== sub) throw refuse('untrusted_issuer', { iss, sub: sub ?? null });
  const agent = inventoryAgent(bundle, iss);
  if (agent === undefined) throw refuse('unknown_agent', { agent: iss });
  if (agent.attestation.kind !== 'self_signed') {
    throw refuse('untrusted_issuer', { iss, agent: agent.id, note: 'this agent attests through its issuer' });
  }
  const selfSigned = { ...agent, attestation: agent.attestation };
  return {
    via: 'self',
    getKey: ctx.keys.forAgent(selfSigned),
    algorithms: ATTESTATION_ALGORITHMS,
    maxAge: bundle.settings.attestations.maxAge,
    bind: () => agent,
  };
}

/** Binds a verified issuer token to exactly one agent through the agents' subject and claim constraints. */
function bindIssuerToken(issuer: TrustedIssuer, payload: JWTPayload, bundle: PolicyBundle): Agent {
  const issuerMismatch = unmatchedClaims(issuer.claims, payload);
  if (issuerMismatch.length > 0) throw refuse('claim_mismatch', { issuer: issuer.id, claims: issuerMismatch });
  const subject = payload[issuer.subjectClaim];
  const bound = Object.values(bundle.agents).filter(
    (agent) =>
      agent.attestation.kind === 'issuer' &&
      agent.attestation.issuer === issuer.id &&
      unmatchedClaims({ [issuer.subjectClaim]: agent.attestation.subject, ...agent.attestation.claims }, payload)
        .length === 0,
  );
  const [agent, ...others] = bound;
  if (agent === undefined) throw refuse('unknown_agent', { issuer: issuer.id, subject: subject ?? null });
  if (others.length > 0) {
    throw refuse('ambiguous_binding', { issuer: issuer.id, subject: subject ?? null, agents: bound.map((a) => a.id) });
  }
  return agent;
}

/** Maps what jose throws to the broker's tagged reasons; anything unrecognised is a bad signature at worst. */
function refusalFromJose(error: unknown, now: number) {
  if (error instanceof KeySourceError) return refuse('jwks_unavailable', { message: error.message }, { cause: error });
  if (error instanceof errors.JWTExpired) {
    const reason = error.claim === 'iat' ? 'too_old' : 'expired';
    return refuse(
      reason,
      { claim: error.claim, exp: error.payload.exp, iat: error.payload.iat, now },
      { cause: error },
    );
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    const detail = { claim: error.claim, check: error.reason, now };
    if (error.claim === 'aud') return refuse('wrong_audience', { ...detail, aud: error.payload.aud }, { cause: error });
    if (error.reason === 'missing') return refuse('missing_claim', detail, { cause: error });
    if (error.claim === 'iat')
      return refuse('issued_in_future', { ...detail, iat: error.payload.iat }, { cause: error });
    if (error.claim === 'nbf') return refuse('not_yet_valid', { ...detail, nbf: error.payload.nbf }, { cause: error });
    return refuse('claim_mismatch', detail, { cause: error });
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return refuse('alg_not_allowed', {}, { cause: error });
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return refuse('unknown_kid', {}, { cause: error });
  }
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) {
    return refuse('malformed_attestation', { message: error.message }, { cause: error });
  }
  return refuse('bad_signature', { error: error instanceof Error ? error.name : 'unknown' }, { cause: error });
}

/**
 * Verifies an attestation JWT and binds it to an agent of the inventory.
 *
 * Always enforced: the canonical compact form ({@link isCanonicalJwt}), well-formed strings in its header
 * and claims, an algorithm allow-list (never `none` or HS*), the signature, `aud` = the broker issuer, `exp`,
 * `iat` not in the future beyond the clock skew, a maximum age, and a `jti` (replay is checked by the caller
 * against the agent's durable state, using {@link VerifiedAttestation.replayKey}).
 *
 * @throws {BrokerError} `invalid_grant` with the tagged reason.
 */
export async function verifyAttestation(token: string, ctx: AttestationContext): Promise<VerifiedAttestation> {
  const now = Math.floor(ctx.now.getTime() / 1000);
  // One attestation, one spelling: jose would accept copies with padding or whitespace in the signature.
  if (!isCanonicalJwt(token)) throw refuse('malformed_attestation', { check: 'not_canonical' });
  let header: ReturnType<typeof decodeProtectedHeader>;
  let unverified: JWTPayload;
  try {
    header = decodeProtectedHeader(token);
    unverified = decodeJwt(token);
  } catch (error) {
    throw refuse('malformed_attestation', {}, { cause: error });
  }
  // Its claims reach the policy and the audit log: a lone surrogate (JSON's "\ud800") is no text at all.
  if (!isWellFormedDeep(header) || !isWellFormedDeep(unverified)) {
    throw refuse('malformed_attestation', { check: 'lone_surrogate' });
  }
  if (typeof header.alg !== 'string' || !(ATTESTATION_ALGORITHMS as readonly string[]).includes(header.alg)) {
    throw refuse('alg_not_allowed', { alg: header.alg ?? null });
  }
  let source: KeySource;
  try {
    source = keySourceFor(unverified.iss, unverified.sub, ctx);
  } catch (error) {
    // A refusal passes through; a key resolver that fails to build a key set is a key-source failure.
    throw error instanceof BrokerError ? error : refusalFromJose(error, now);
  }
  const { clockSkew } = ctx.bundle.settings.attestations;
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, source.getKey, {
      algorithms: [...source.algorithms],
      audience: ctx.brokerIssuer,
      currentDate: ctx.now,
      clockTolerance: clockSkew,
      maxTokenAge: source.maxAge,
      requiredClaims: ['exp', 'iat', 'jti'],
    }));
  } catch (error) {
    throw refusalFromJose(error, now);
  }
  if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 256) {
    throw refuse('missing_claim', { claim: 'jti' });
  }
  const agent = source.bind(payload);
  // jwtVerify guarantees numeric `exp` and `iat` here.
  const replayUntil = Math.min(payload.exp as number, (payload.iat as number) + source.maxAge) + clockSkew;
  return {
    agent,
    via: source.via,
    jti: payload.jti,
    replayKey: `${payload.iss}\n${payload.jti}`,
    replayUntil,
  };
}
