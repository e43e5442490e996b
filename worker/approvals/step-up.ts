/**
 * Step-up approval on the `/token` path (OpenID CIBA poll mode): opening a pending approval when policy
 * says an action needs one, and turning a poll's outcome into a refusal or a go-ahead.
 */
import { type ApprovalRecord, type ApprovalTerms, agentOfApproval, type PollOutcome } from '../core/approval';
import { refuse } from '../core/errors';
import type { ApprovalRequirement } from '../core/policy';
import type { Agent, PolicyBundle } from '../policy/bundle';
import { agentStub } from '../state/gates';
import { callStore } from '../state/store-call';
import type { PendingApprovalMessage } from './webhook';

export interface PendingRequest {
  /** A fresh {@link newApprovalId} for the agent. */
  id: string;
  agent: Agent;
  terms: ApprovalTerms;
  requirement: ApprovalRequirement;
  ttl: number;
  taskDescription: string;
  issuer: string;
  now: number;
}

/**
 * Records a pending approval in the agent's state (and queues its announcement), then refuses the request
 * with `authorization_pending` and what the agent needs to poll: `approval_id`, `interval`, `expires_in`.
 */
export async function openApproval(env: Env, bundle: PolicyBundle, pending: PendingRequest): Promise<never> {
  const { expiresIn, pollInterval, webhook } = bundle.settings.approvals;
  const { id } = pending;
  const record: ApprovalRecord = {
    id,
    agent: pending.agent.id,
    owner: pending.agent.owner,
    terms: pending.terms,
    taskDescription: pending.taskDescription,
    requirement: pending.requirement,
    ttl: pending.ttl,
    createdAt: pending.now,
    expiresAt: pending.now + expiresIn,
    interval: pollInterval,
    lastPolledAt: pending.now,
    decisions: [],
    status: 'pending',
  };
  const message: PendingApprovalMessage | undefined =
    webhook === undefined
      ? undefined
      : {
          type: 'approval.pending',
          approval: {
            id,
            agent: record.agent,
            owner: record.owner,
            audience: record.terms.audience,
            actions: record.terms.actions,
            needs_approval: record.requirement.actions,
            task: { id: record.terms.taskId, description: pending.taskDescription, hash: record.terms.taskHash },
            justification: record.terms.justification,
            ttl: record.ttl,
            expires_at: new Date(record.expiresAt * 1000).toISOString(),
            approvals_required: record.requirement.count,
            approver_groups: record.requirement.groups,
            four_eyes: record.requirement.fourEyes,
          },
          decide_url: `${pending.issuer}/admin/approvals/${id}`,
        };
  await callStore('agent_state', () => agentStub(env, pending.agent.id).createApproval(record, message));
  throw refuse(
    'approval_required',
    { approvalId: id, requirement: pending.requirement },
    { body: { approval_id: id, interval: pollInterval, expires_in: expiresIn, task_id: pending.terms.taskId } },
  );
}

/** The approval id must be one of this agent's; anything else is unknown to it. */
export function checkApprovalOwner(approvalId: string, agentId: string): void {
  if (agentOfApproval(approvalId) !== agentId) throw refuse('approval_unknown', { approvalId });
}

/**
 * Turns a poll into the approvers' ids (approved and collected), or the refusal the agent gets:
 * `authorization_pending`, `slow_down`, `access_denied`, `expired_token`, or `invalid_grant`.
 */
export function approvedBy(approvalId: string, outcome: PollOutcome | { status: 'unknown' } | undefined): string[] {
  const detail = { approvalId };
  switch (outcome?.status) {
    case 'approved':
      return outcome.by;
    case 'pending':
      throw refuse('approval_pending', detail, {
        body: { approval_id: approvalId, interval: outcome.interval, expires_in: outcome.expiresIn },
      });
    case 'slow_down':
      throw refuse('approval_poll_too_fast', detail, {
        body: { approval_id: approvalId, interval: outcome.interval },
        headers: { 'Retry-After': String(outcome.interval) },
      });
    case 'denied':
      throw refuse('approval_denied', detail);
    case 'expired':
      throw refuse('approval_expired', detail);
    case 'used':
      throw refuse('approval_used', detail);
    case 'mismatch':
      throw refuse('approval_mismatch', detail);
    default:
      throw refuse('approval_unknown', detail);
  }
}

/** Puts a collected approval back when no token came of it; a failure here is logged, not raised. */
export async function releaseApproval(env: Env, agentId: string, approvalId: string): Promise<void> {
  await agentStub(env, agentId)
    .releaseApproval(approvalId)
    .catch((error: unknown) => console.error('could not release approval', approvalId, error));
}
