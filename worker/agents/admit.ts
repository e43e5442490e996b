/**
 * The worker's side of the agent's Durable Object on the `/token` path: one RPC, bounded in time.
 * A call that throws or does not answer in time is a broker fault, and the request is refused.
 */
import type { VerifiedAttestation } from '../core/attestation';
import { refuse } from '../core/errors';
import type { AdmitResult } from './agent-state';

/** How long `/token` waits for the agent's state before refusing with 503. */
export const AGENT_STATE_DEADLINE_MS = 3000;

function deadline(ms: number): { promise: Promise<never>; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

/**
 * Asks the agent's Durable Object to admit this attestation (replay protection).
 *
 * @throws {BrokerError} `store_unavailable` (503) when the object fails or does not answer in time.
 */
export async function admitAttestation(env: Env, attestation: VerifiedAttestation): Promise<AdmitResult> {
  const stub = env.AGENT_STATE.get(env.AGENT_STATE.idFromName(attestation.agent.id));
  const timeout = deadline(AGENT_STATE_DEADLINE_MS);
  try {
    return await Promise.race([
      stub.admit({ replayKey: attestation.replayKey, replayUntil: attestation.replayUntil }),
      timeout.promise,
    ]);
  } catch (error) {
    throw refuse('store_unavailable', { store: 'agent_state', message: String(error) }, { cause: error });
  } finally {
    timeout.cancel();
  }
}
