/**
 * DPoP at the token endpoint (RFC 9449 §5): the proof a `/token` request carries, checked with the same
 * code downstream verifiers use. Replay and nonce are checked by the agent's object.
 */
import { type VerifiedDpopProof, VerifyError, verifyDpopProof } from '@tessera/verify';
import { refuse } from '../core/errors';
import type { Settings } from '../policy/bundle';

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
  // Several DPoP headers arrive joined with ", "; a JWT has no comma.
  if (proof.includes(',')) throw refuse('invalid_dpop_proof', { check: 'one_proof' });
  try {
    return await verifyDpopProof(proof, { method: 'POST', url: tokenEndpoint, maxAge: settings.maxAge, now });
  } catch (error) {
    if (!(error instanceof VerifyError)) throw error;
    throw refuse('invalid_dpop_proof', { check: error.code, message: error.message }, { cause: error });
  }
}
