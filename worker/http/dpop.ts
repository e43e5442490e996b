/**
 * DPoP at the broker (RFC 9449), checked with the code downstream verifiers use: the proof a `/token`
 * request carries (§5), and the proof a request carries when it presents a DPoP-bound token as its
 * credential (§7.1: `/tasks/{id}/complete`, `/revoke`). Proof ids are accepted once by the agent's object
 * (and at `/token`, the nonce is checked there too).
 */
import { type DpopProofCheck, type VerifiedDpopProof, VerifyError, verifyDpopProof } from '@tessera/verify';
import type { AccessTokenClaims } from '../core/access-token';
import { refuse } from '../core/errors';
import { type ProofReplay, proofReplay } from '../core/exchange';
import type { Settings } from '../policy/bundle';
import { dpopChallenge, TOKEN_REALM } from './bearer';

/** Verifies the one proof of a `DPoP` header; a failure is refused with `reason`, with `headers`. */
async function verifiedProof(
  proof: string,
  check: DpopProofCheck,
  reason: 'invalid_dpop_proof' | 'dpop_proof_refused',
  headers?: Record<string, string>,
): Promise<VerifiedDpopProof> {
  // Several DPoP headers arrive joined with ", "; a JWT has no comma.
  if (proof.includes(',')) throw refuse(reason, { check: 'one_proof' }, { ...(headers && { headers }) });
  try {
    return await verifyDpopProof(proof, check);
  } catch (error) {
    if (!(error instanceof VerifyError)) throw error;
    throw refuse(reason, { check: error.code, message: error.message }, { cause: error, ...(headers && { headers }) });
  }
}

/**
 * The verified DPoP proof of a request to `POST {tokenEndpoint}` (its `DPoP` header), or undefined when it
 * sent none.
 *
 * @throws {BrokerError} `invalid_dpop_proof` for more than one proof or a proof that fails RFC 9449 §4.3.
 */
export async function tokenRequestProof(
  proof: string | null,
  tokenEndpoint: string,
  settings: Settings['dpop'],
  now: Date,
): Promise<VerifiedDpopProof | undefined> {
  if (proof === null) return undefined;
  return verifiedProof(
    proof,
    { method: 'POST', url: tokenEndpoint, maxAge: settings.maxAge, now },
    'invalid_dpop_proof',
  );
}

/** One of the broker's own tokens presented as a request's credential, and the request it came with. */
export interface TokenPresentation {
  /**
   * How the token came: `Authorization: Bearer` or `DPoP`, or as the `token` parameter of `/revoke`
   * (RFC 7009 §2.1), where the proof alone shows possession.
   */
  scheme: 'Bearer' | 'DPoP' | 'parameter';
  token: string;
  claims: AccessTokenClaims;
  /** The `DPoP` header, if any. */
  proof: string | null;
  method: string;
  /** The URL the request was sent to (`htu`). */
  url: string;
}

/**
 * RFC 9449 §7.1 and §7.2 where the broker takes its own token as the caller's credential: a DPoP-bound
 * token (`cnf.jkt`) only with a proof of this request (method, URL, `ath` of this token, signed by the
 * bound key, fresh), never as a bearer token; a token that is not bound, never with the `DPoP` scheme.
 *
 * @returns the proof's replay key, for the agent's object to accept once; undefined for a bearer token.
 * @throws {BrokerError} 401 with a `DPoP` challenge: `dpop_bound_token` or `dpop_unbound_token`
 *   (`invalid_token`), `dpop_proof_refused` (`invalid_dpop_proof`).
 */
export async function proofOfPossession(
  presented: TokenPresentation,
  settings: Settings['dpop'],
  now: Date,
): Promise<ProofReplay | undefined> {
  const jkt = presented.claims.cnf?.jkt;
  if (jkt === undefined) {
    if (presented.scheme === 'DPoP')
      throw refuse('dpop_unbound_token', {}, { headers: dpopChallenge(TOKEN_REALM, 'invalid_token') });
    return undefined;
  }
  if (presented.scheme === 'Bearer' || presented.proof === null) {
    throw refuse(
      'dpop_bound_token',
      { scheme: presented.scheme, proof: presented.proof !== null },
      { headers: dpopChallenge(TOKEN_REALM, 'invalid_token') },
    );
  }
  const check = {
    method: presented.method,
    url: presented.url,
    accessToken: presented.token,
    boundTo: jkt,
    maxAge: settings.maxAge,
    now,
  };
  const headers = dpopChallenge(TOKEN_REALM, 'invalid_dpop_proof');
  return proofReplay(await verifiedProof(presented.proof, check, 'dpop_proof_refused', headers), settings.maxAge);
}
