/**
 * The durable-state gates, as the worker asks them: the agent's object and the agent's kill-switch shard,
 * in parallel, each bounded by a deadline. `/token` asks whether to admit a request; introspection asks
 * whether a token is still alive.
 */
import type { AdmitResult, TokenRef, TokenStatus } from '../agents/agent-state';
import { shardOf, shardStub } from '../control/kill-switch';
import type { ApprovalTerms, PollOutcome } from '../core/approval';
import { refuse } from '../core/errors';
import type { RateLimit } from '../policy/bundle';
import { callStore } from './store-call';

export function agentStub(env: Env, agentId: string) {
  return env.AGENT_STATE.get(env.AGENT_STATE.idFromName(agentId));
}

function killSwitchState(env: Env, agentId: string) {
  return callStore('kill_switch', () => shardStub(env, shardOf(agentId)).state());
}

export interface AdmissionRequest {
  agentId: string;
  replayKey: string;
  replayUntil: number;
  taskId: string;
  rateLimit: RateLimit;
  approval?: { id: string; terms: ApprovalTerms };
  dpop?: { replayKey: string; replayUntil: number; nonce: string | undefined; requireNonce: boolean };
}

export interface Admission {
  /** What polling the approval found, when the request polls one. */
  approval?: PollOutcome | { status: 'unknown' };
  /** The DPoP nonce to hand out for the agent's next proof, when nonces are required. */
  dpopNonce?: string;
}

/**
 * Admits a `/token` request or throws the refusal: kill switch engaged, agent suspended, attestation or
 * DPoP proof replayed, DPoP nonce missing or stale, task finished, rate limited; or 503 when either store
 * does not answer. When the request polls an approval, returns what the poll found.
 */
export async function admitExchange(env: Env, request: AdmissionRequest): Promise<Admission> {
  const { agentId, ...admit } = request;
  const [killSwitch, admission] = await Promise.allSettled([
    killSwitchState(env, agentId),
    callStore('agent_state', async (): Promise<AdmitResult> => await agentStub(env, agentId).admit(admit)),
  ]);
  const refusal =
    killSwitch.status === 'rejected'
      ? killSwitch.reason
      : killSwitch.value.engaged
        ? refuse('kill_switch_engaged', { version: killSwitch.value.version })
        : undefined;
  if (refusal !== undefined) {
    // This poll collected an approval that no token will come of: put it back for the next poll.
    if (
      admission.status === 'fulfilled' &&
      admission.value.admitted &&
      admission.value.approval?.status === 'approved'
    ) {
      await agentStub(env, agentId)
        .releaseApproval(request.approval?.id ?? '')
        .catch((error: unknown) => console.error('could not release approval', error));
    }
    throw refusal;
  }
  if (admission.status === 'rejected') throw admission.reason;
  const result = admission.value;
  if (result.admitted) {
    const { approval, dpopNonce } = result;
    return { ...(approval !== undefined && { approval }), ...(dpopNonce !== undefined && { dpopNonce }) };
  }
  switch (result.reason) {
    case 'suspended':
      throw refuse('agent_suspended');
    case 'replayed':
      throw refuse('replayed');
    case 'dpop_replayed':
      throw refuse('dpop_replayed');
    case 'dpop_nonce':
      throw refuse('dpop_nonce_required', {}, { headers: { 'DPoP-Nonce': result.dpopNonce } });
    case 'task_finished':
      throw refuse('task_finished', { task: request.taskId });
    case 'rate_limited':
      throw refuse(
        'rate_limited',
        { retryAfter: result.retryAfter },
        { headers: { 'Retry-After': String(result.retryAfter) } },
      );
  }
}

export type Liveness = { active: true } | { active: false; reason: string };

/** Whether a (verified, unexpired) token is alive: not killed by the kill switch, revocation or its task. */
export async function tokenLiveness(env: Env, agentId: string, token: TokenRef): Promise<Liveness> {
  const [killSwitch, status] = await Promise.all([
    killSwitchState(env, agentId),
    callStore('agent_state', async (): Promise<TokenStatus> => await agentStub(env, agentId).tokenStatus(token)),
  ]);
  if (killSwitch.engaged) return { active: false, reason: 'kill_switch_engaged' };
  return status;
}
