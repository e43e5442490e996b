/**
 * The agents' Durable Objects (`AgentState`, one per agent), as the worker calls them: every call bounded by
 * a deadline and mapped to `store_unavailable` (503) when the object fails or does not answer. The only code
 * that names the `AGENT_STATE` binding.
 */
import type { AgentState, TokenRef, TokenStatus } from '../agents/agent-state';
import type { ExchangeCall, ExchangeResult } from '../core/exchange';
import { handOffEnabled, handOffRecords } from './audit-queue';
import { callStore } from './call';

function stub(env: Env, agentId: string): DurableObjectStub<AgentState> {
  return env.AGENT_STATE.get(env.AGENT_STATE.idFromName(agentId));
}

const call = <T>(work: () => Promise<T>, deadlineMs?: number) => callStore('agent_state', work, deadlineMs);

/** The object's calls the worker makes as they are, bounded by the store deadline. */
const BOUNDED = [
  'record',
  'releaseApproval',
  'status',
  'changeStatus',
  'revokeToken',
  'finishTask',
  'approval',
  'approvalsOf',
  'approvalCounts',
  'decideApproval',
  'pendingGrant',
  'asksForTask',
  'backlog',
  'heads',
] as const satisfies readonly (keyof AgentState)[];

/** An object's method as the worker calls it: the agent's id first, the answer as the object gives it. */
type PerAgent<M> = M extends (...args: infer A) => Promise<infer R>
  ? (agentId: string, ...args: A) => Promise<R>
  : never;

/** What the routes and the `/token` pipeline ask of an agent's object; see `AgentState` for each call. */
export type AgentStore = { [K in (typeof BOUNDED)[number]]: PerAgent<AgentState[K]> } & {
  /**
   * Admits a `/token` request and commits its decision and audit record (`AgentState.exchange`), within the
   * deadline the request's kill-switch lease leaves.
   */
  exchange(agentId: string, request: ExchangeCall, deadlineMs: number): Promise<ExchangeResult>;
  /** Whether a token is alive (`AgentState.tokenStatus`), within the deadline introspection leaves. */
  tokenStatus(agentId: string, token: TokenRef, deadlineMs?: number): Promise<TokenStatus>;
  /** Sends every waiting record to the audit queue now: given a minute, as it may send many. */
  flush(agentId: string): Promise<boolean>;
};

/**
 * The agents' objects for a request. `background` (the request's `waitUntil`) is what `/token` gives: an
 * exchange's records come back with its answer, and go on to the audit queue with the isolate's others.
 */
export function agentStore(env: Env, background?: (work: Promise<unknown>) => void): AgentStore {
  const methods = (agentId: string) =>
    stub(env, agentId) as unknown as Record<(typeof BOUNDED)[number], (...args: unknown[]) => Promise<unknown>>;
  const bounded = Object.fromEntries(
    BOUNDED.map((name) => [name, (agentId: string, ...args: unknown[]) => call(() => methods(agentId)[name](...args))]),
  ) as { [K in (typeof BOUNDED)[number]]: AgentStore[K] };
  return {
    ...bounded,
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
    tokenStatus: (agentId, token, deadlineMs) =>
      call(async (): Promise<TokenStatus> => await stub(env, agentId).tokenStatus(token), deadlineMs),
    flush: (agentId) => call(() => stub(env, agentId).flushAudit(), 60_000),
  };
}
