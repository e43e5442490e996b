/**
 * An agent's lifecycle dates (`review_by`, `expires` in `policies/agents.yaml`), the pure part: calendar days
 * in UTC, compared as `YYYY-MM-DD` strings, with the time passed in.
 */
import type { Agent } from '../policy/bundle';
import { type BrokerError, refuse } from './errors';

/** `YYYY-MM-DD`, UTC, of epoch milliseconds `ms`. */
export const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

/** The refusal of an agent on or after its `expires` date (UTC), or undefined while it may get tokens. */
export function expiredAgent(agent: Agent, nowMs: number): BrokerError | undefined {
  if (agent.expires === undefined || utcDay(nowMs) < agent.expires) return undefined;
  return refuse('agent_expired', { expires: agent.expires });
}

/** True once the agent's `review_by` date (UTC) has passed: the review is overdue. */
export const pastReview = (agent: Agent, nowMs: number): boolean =>
  agent.reviewBy !== undefined && utcDay(nowMs) > agent.reviewBy;
