/**
 * Step-up approval on the `/token` path (OpenID CIBA poll mode), the pure part: the pending approval a
 * request opens (and its announcement), and the answer that tells the agent to poll.
 */
import { type ApprovalRecord, type ApprovalTerms, agentOfApproval } from '../core/approval';
import { refuse } from '../core/errors';
import type { ApprovalRequirement } from '../core/policy';
import type { Agent, PolicyBundle } from '../policy/bundle';
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
  /** Epoch seconds. */
  now: number;
}

/** The approval a request opens, and, when a webhook is configured, its announcement to approvers. */
export function pendingApproval(
  bundle: PolicyBundle,
  pending: PendingRequest,
): { approval: ApprovalRecord; message?: PendingApprovalMessage } {
  const { expiresIn, pollInterval, webhook } = bundle.settings.approvals;
  const { id } = pending;
  const approval: ApprovalRecord = {
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
  if (webhook === undefined) return { approval };
  const message: PendingApprovalMessage = {
    type: 'approval.pending',
    approval: {
      id,
      agent: approval.agent,
      owner: approval.owner,
      audience: approval.terms.audience,
      actions: approval.terms.actions,
      needs_approval: approval.requirement.actions,
      task: { id: approval.terms.taskId, description: pending.taskDescription, hash: approval.terms.taskHash },
      justification: approval.terms.justification,
      ttl: approval.ttl,
      expires_at: new Date(approval.expiresAt * 1000).toISOString(),
      approvals_required: approval.requirement.count,
      approver_groups: approval.requirement.groups,
      four_eyes: approval.requirement.fourEyes,
      rollback: approval.requirement.rollback,
    },
    decide_url: `${pending.issuer}/admin/approvals/${id}`,
  };
  return { approval, message };
}

/** The answer to a request that opened `approval`: `authorization_pending` with what the agent polls with. */
export function approvalRequired(approval: ApprovalRecord) {
  return refuse(
    'approval_required',
    { approvalId: approval.id, requirement: approval.requirement },
    {
      body: {
        approval_id: approval.id,
        interval: approval.interval,
        expires_in: approval.expiresAt - approval.createdAt,
        task_id: approval.terms.taskId,
      },
    },
  );
}

/** The approval id must be one of this agent's; anything else is unknown to it. */
export function checkApprovalOwner(approvalId: string, agentId: string): void {
  if (agentOfApproval(approvalId) !== agentId) throw refuse('approval_unknown', { approvalId });
}
