/**
 * Step-up approval, the pure part: approval ids, the exact terms an approval holds, and who may decide it.
 */
import type { ApprovalRequirement } from './policy';

/** An approval id names its agent, so a decision reaches the agent's state without a lookup. */
export function newApprovalId(agentId: string): string {
  return `${crypto.randomUUID()}.${agentId}`;
}

/** The agent an approval id belongs to, or undefined if it is not an approval id. */
export function agentOfApproval(id: string): string | undefined {
  const match = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.([a-z0-9][a-z0-9._-]{0,63})$/.exec(id);
  return match?.[1];
}

/** What was asked for, exactly: a collection must ask for the same, or it is refused. */
export interface ApprovalTerms {
  audience: string;
  /** Sorted. */
  actions: string[];
  requestedTtl: number | null;
  taskId: string;
  taskHash: string;
  justification: string | null;
}

export function approvalTerms(request: {
  audience: string;
  actions: readonly string[];
  requestedTtl: number | undefined;
  taskId: string;
  taskHash: string;
  justification: string | undefined;
}): ApprovalTerms {
  return {
    audience: request.audience,
    actions: [...request.actions].sort(),
    requestedTtl: request.requestedTtl ?? null,
    taskId: request.taskId,
    taskHash: request.taskHash,
    justification: request.justification ?? null,
  };
}

/** A term of an approval, as the agent's request names it. */
export type ApprovalTerm =
  | 'task.id'
  | 'audience'
  | 'scope'
  | 'requested_ttl'
  | 'task.description'
  | 'task.justification';

/** The terms in which a request differs from the one an approval is for (none: the same request). */
export function differingTerms(approved: ApprovalTerms, asked: ApprovalTerms): ApprovalTerm[] {
  const differ: ApprovalTerm[] = [];
  if (approved.taskId !== asked.taskId) differ.push('task.id');
  if (approved.audience !== asked.audience) differ.push('audience');
  if (
    approved.actions.length !== asked.actions.length ||
    !approved.actions.every((action, i) => action === asked.actions[i])
  )
    differ.push('scope');
  if (approved.requestedTtl !== asked.requestedTtl) differ.push('requested_ttl');
  if (approved.taskHash !== asked.taskHash) differ.push('task.description');
  if (approved.justification !== asked.justification) differ.push('task.justification');
  return differ;
}

export interface Approver {
  id: string;
  groups: readonly string[];
}

export type ApproverRefusal = 'self_approval' | 'four_eyes' | 'not_in_group' | 'already_approved';

/**
 * Whether `approver` may add an approval: in every required group, not the agent's owner when four-eyes
 * applies (identities compare as strings: an Access email against the owner's email), and not approving
 * twice (each approval of a multi-approval must come from someone else).
 */
export function approverRefusal(
  requirement: ApprovalRequirement,
  approver: Approver,
  owner: string,
  approvedBy: readonly string[],
): ApproverRefusal | undefined {
  if (requirement.fourEyes && approver.id.toLowerCase() === owner.toLowerCase()) return 'four_eyes';
  if (!requirement.groups.every((group) => approver.groups.includes(group))) return 'not_in_group';
  if (approvedBy.some((by) => by.toLowerCase() === approver.id.toLowerCase())) return 'already_approved';
  return undefined;
}

/** An approval as the agent's state stores it. */
export interface ApprovalRecord {
  id: string;
  agent: string;
  owner: string;
  terms: ApprovalTerms;
  /** What the approvers read: the task's description (the terms hold only its hash). */
  taskDescription: string;
  requirement: ApprovalRequirement;
  /** Lifetime of the token the approval allows, decided when it was asked for. */
  ttl: number;
  /** Epoch seconds. */
  createdAt: number;
  expiresAt: number;
  /** Seconds an agent must wait between polls. */
  interval: number;
  lastPolledAt: number;
  decisions: { by: string; decision: 'approve' | 'deny'; reason: string; at: number }[];
  status: 'pending' | 'approved' | 'denied' | 'collected';
}

export type ApprovalStatus = ApprovalRecord['status'] | 'expired';

/** The status now: an undecided or uncollected approval past its expiry has expired. */
export function approvalStatus(record: ApprovalRecord, now: number): ApprovalStatus {
  if ((record.status === 'pending' || record.status === 'approved') && now >= record.expiresAt) return 'expired';
  return record.status;
}

export type PollOutcome =
  | { status: 'pending'; interval: number; expiresIn: number }
  | { status: 'slow_down'; interval: number }
  | { status: 'approved'; by: string[] }
  | { status: 'mismatch'; terms: ApprovalTerm[] }
  | { status: 'denied' | 'expired' | 'used' };

/**
 * An agent polls with the same terms (CIBA poll mode). An approved approval is collected by the first
 * poll that finds it so (single use); a poll sooner than `interval` after the last is told to slow down.
 */
export function pollApproval(
  record: ApprovalRecord,
  terms: ApprovalTerms,
  now: number,
): { outcome: PollOutcome; record: ApprovalRecord } {
  const differ = differingTerms(record.terms, terms);
  if (differ.length > 0) return { outcome: { status: 'mismatch', terms: differ }, record };
  const status = approvalStatus(record, now);
  if (status === 'collected') return { outcome: { status: 'used' }, record };
  if (status === 'denied' || status === 'expired') return { outcome: { status }, record };
  if (now - record.lastPolledAt < record.interval) {
    return { outcome: { status: 'slow_down', interval: record.interval }, record };
  }
  if (status === 'approved') {
    const by = record.decisions.filter((d) => d.decision === 'approve').map((d) => d.by);
    return { outcome: { status: 'approved', by }, record: { ...record, status: 'collected', lastPolledAt: now } };
  }
  return {
    outcome: { status: 'pending', interval: record.interval, expiresIn: record.expiresAt - now },
    record: { ...record, lastPolledAt: now },
  };
}

export type DecideOutcome = { decided: true } | { decided: false; reason: 'not_pending' | ApproverRefusal };

/** An approver decides: a denial ends it; approvals count until the requirement is met. */
export function decideApproval(
  record: ApprovalRecord,
  input: { approver: Approver; decision: 'approve' | 'deny'; reason: string },
  now: number,
): { outcome: DecideOutcome; record: ApprovalRecord } {
  if (approvalStatus(record, now) !== 'pending') return { outcome: { decided: false, reason: 'not_pending' }, record };
  // Approvers are never the agent itself (spec: Step-up approval), whatever the policy says.
  if (input.approver.id.toLowerCase() === record.agent.toLowerCase()) {
    return { outcome: { decided: false, reason: 'self_approval' }, record };
  }
  const approvedBy = record.decisions.filter((d) => d.decision === 'approve').map((d) => d.by);
  const refusal = approverRefusal(record.requirement, input.approver, record.owner, approvedBy);
  if (refusal !== undefined) return { outcome: { decided: false, reason: refusal }, record };
  const decisions = [
    ...record.decisions,
    { by: input.approver.id, decision: input.decision, reason: input.reason, at: now },
  ];
  let status: ApprovalRecord['status'] = 'pending';
  if (input.decision === 'deny') status = 'denied';
  else if (approvedBy.length + 1 >= record.requirement.count) status = 'approved';
  return { outcome: { decided: true }, record: { ...record, decisions, status } };
}
