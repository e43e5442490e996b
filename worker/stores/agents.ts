/**
 * The agents' Durable Objects (`AgentState`, one per agent), as the worker calls them: every call bounded by
 * a deadline and mapped to `store_unavailable` (503) when the object fails or does not answer. The only code
 * that names the `AGENT_STATE` binding.
 */
import type { AgentState, AgentStatus, ProvenChange, StatusAction, TokenRef, TokenStatus } from '../agents/agent-state';
import type { Backlog } from '../audit/outbox';
import type { AuditDraft, AuditOutcome, ChainHead } from '../audit/record';
import type { ApprovalRecord, Approver, DecideOutcome } from '../core/approval';
import type { ExchangeCall, ExchangeResult, ProofReplay } from '../core/exchange';
import { handOffEnabled, handOffRecords } from './audit-queue';
import { callStore } from './call';

function stub(env: Env, agentId: string): DurableObjectStub<AgentState> {
  return env.AGENT_STATE.get(env.AGENT_STATE.idFromName(agentId));
}

const call = <T>(work: () => Promise<T>, deadlineMs?: number) => callStore('agent_state', work, deadlineMs);

/** What the routes and the `/token` pipeline ask of an agent's object. */
export interface AgentStore {
  /** Admits a `/token` request and commits its decision and audit record; see `AgentState.exchange`. */
  exchange(agentId: string, request: ExchangeCall, deadlineMs: number): Promise<ExchangeResult>;
  /** Records a decision that used nothing up (a refusal before admission). */
  record(agentId: string, draft: AuditDraft, outcome: AuditOutcome): Promise<void>;
  /** Puts back an approval collected for a token that did not leave, recording why. */
  releaseApproval(agentId: string, approvalId: string, draft: AuditDraft, outcome: AuditOutcome): Promise<void>;
  tokenStatus(agentId: string, token: TokenRef, deadlineMs?: number): Promise<TokenStatus>;
  status(agentId: string, draft?: AuditDraft): Promise<AgentStatus>;
  changeStatus(
    agentId: string,
    action: StatusAction,
    by: string,
    reason: string,
    draft: AuditDraft,
  ): Promise<AgentStatus>;
  /** With `proof` (a DPoP-bound token's), only if that proof was not used before. */
  revokeToken(agentId: string, jti: string, exp: number, draft: AuditDraft, proof?: ProofReplay): Promise<ProvenChange>;
  /** With `proof` (a DPoP-bound token's), only if that proof was not used before. */
  finishTask(agentId: string, taskId: string, draft?: AuditDraft, proof?: ProofReplay): Promise<ProvenChange>;
  approval(agentId: string, id: string, draft?: AuditDraft): Promise<ApprovalRecord | undefined>;
  decideApproval(
    agentId: string,
    id: string,
    input: { approver: Approver; decision: 'approve' | 'deny'; reason: string },
    draft: AuditDraft,
  ): Promise<{ outcome: DecideOutcome | { decided: false; reason: 'unknown' }; record?: ApprovalRecord }>;
  pendingGrants(
    agentId: string,
    filter: { jti?: string; taskId?: string },
  ): Promise<{ jti: string; exp: number; taskId: string | null }[]>;
  backlog(agentId: string): Promise<Backlog>;
  heads(agentId: string): Promise<{ head: ChainHead; acked: ChainHead }>;
  flush(agentId: string): Promise<boolean>;
}

/**
 * The agents' objects for a request. `background` (the request's `waitUntil`) is what `/token` gives: an
 * exchange's records come back with its answer, and go on to the audit queue with the isolate's others.
 */
export function agentStore(env: Env, background?: (work: Promise<unknown>) => void): AgentStore {
  return {
    exchange: (agentId, request, deadlineMs) => {
      if (background === undefined) throw new TypeError('an exchange needs the request’s background work');
      return call(async (): Promise<ExchangeResult> => {
        const handBack = handOffEnabled(env);
        const { records = [], ...result } = await stub(env, agentId).exchange({ ...request, handBack });
        // Records of an answer that came too late stay in the object, which sends them a minute later.
        handOffRecords(env, background, records);
        return result;
      }, deadlineMs);
    },
    record: (agentId, draft, outcome) => call(() => stub(env, agentId).record(draft, outcome)),
    releaseApproval: (agentId, approvalId, draft, outcome) =>
      call(() => stub(env, agentId).releaseApproval(approvalId, draft, outcome)),
    tokenStatus: (agentId, token, deadlineMs) =>
      call(async (): Promise<TokenStatus> => await stub(env, agentId).tokenStatus(token), deadlineMs),
    status: (agentId, draft) => call(() => stub(env, agentId).status(draft)),
    changeStatus: (agentId, action, by, reason, draft) =>
      call(() => stub(env, agentId).changeStatus(action, by, reason, draft)),
    revokeToken: (agentId, jti, exp, draft, proof) =>
      call(() => stub(env, agentId).revokeToken(jti, exp, draft, proof)),
    finishTask: (agentId, taskId, draft, proof) => call(() => stub(env, agentId).finishTask(taskId, draft, proof)),
    approval: (agentId, id, draft) => call(() => stub(env, agentId).approval(id, draft)),
    decideApproval: (agentId, id, input, draft) => call(() => stub(env, agentId).decideApproval(id, input, draft)),
    pendingGrants: (agentId, filter) => call(() => stub(env, agentId).pendingGrants(filter)),
    backlog: (agentId) => call(() => stub(env, agentId).backlog()),
    heads: (agentId) => call(() => stub(env, agentId).heads()),
    flush: (agentId) => call(() => stub(env, agentId).flushAudit(), 60_000),
  };
}
