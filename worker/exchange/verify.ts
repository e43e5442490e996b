/**
 * The `/token` pipeline's parse and verify stages: the body read and parsed (RFC 8693 §2.1); the attestation
 * and the DPoP proof (RFC 9449 §4.3) verified at once, then the proof the policy requires and the approval
 * polled. Each returns what it established, or a refusal for
 * the pipeline to record.
 */
import type { VerifiedDpopProof } from '@tessera/verify';
import { checkApprovalOwner } from '../approvals/step-up';
import { taskHash } from '../core/access-token';
import { type VerifiedAttestation, verifyAttestation } from '../core/attestation';
import { type BrokerError, refuse } from '../core/errors';
import { expiredAgent } from '../core/lifecycle';
import { parseTokenRequest } from '../core/token-request';
import type { PolicyBundle } from '../policy/bundle';
import { caught, type Exchange, type ExchangeInput, type Parsed, type Refused, refused, type Verified } from './stage';

/** Parse: reads and parses the body (RFC 8693 §2.1). */
export async function parse(input: ExchangeInput): Promise<Parsed | Refused> {
  try {
    const request = parseTokenRequest(await input.readFields());
    return {
      kind: 'parsed',
      request,
      taskId: request.task.id ?? crypto.randomUUID(),
      taskHash: await taskHash(request.task.description),
    };
  } catch (error) {
    return caught(error, {});
  }
}

/** Verify: the attestation and the DPoP proof, verified at once; then what the caller may ask for. */
export async function verify({ input, deps }: Exchange, parsed: Parsed): Promise<Verified | Refused> {
  const { request } = parsed;
  const [attested, proven] = await Promise.allSettled([
    verifyAttestation(request.subjectToken, {
      now: input.now,
      brokerIssuer: deps.issuer,
      bundle: deps.bundle,
      keys: deps.keys,
    }),
    deps.verifyProof(input.dpop, input.now),
  ]);
  if (attested.status === 'rejected') return caught(attested.reason, { parsed });
  const caller = attested.value;
  // An expired agent is refused whatever else its request holds; its record names it.
  const expired = expiredAgent(caller.agent, input.now.getTime());
  if (expired !== undefined) return refused(expired, { parsed, caller });
  // Refused after the agent is known, so the refusal's record names it.
  if (proven.status === 'rejected') return caught(proven.reason, { parsed, caller });
  const proof = proven.value;
  const unproven = missingProof(caller, request.audience, proof, deps.bundle);
  if (unproven !== undefined) return refused(unproven, { parsed, caller });
  const { approvalId } = request;
  if (approvalId === undefined) return { kind: 'verified', parsed, caller, proof, approvalId };
  const verified: Verified = { kind: 'verified', parsed, caller, proof, approvalId, target: `approval:${approvalId}` };
  try {
    checkApprovalOwner(approvalId, caller.agent.id);
  } catch (error) {
    return caught(error, verified);
  }
  return verified;
}

/** A proof required by the agent, or by the audience, that the request did not send. */
function missingProof(
  caller: VerifiedAttestation,
  audience: string,
  proof: VerifiedDpopProof | undefined,
  bundle: PolicyBundle,
): BrokerError | undefined {
  if (proof !== undefined) return undefined;
  if (caller.agent.requireDpop) return refuse('dpop_required', { requiredBy: 'agent' });
  if (bundle.settings.dpop.requiredAudiences.includes(audience))
    return refuse('dpop_required', { requiredBy: 'audience' });
  return undefined;
}
