/**
 * The one call `/token` makes to the agent's Durable Object, as data: what to admit, what was decided, and
 * the record so far; and what the object answers. Pure, shared by the object (which records the outcome)
 * and the worker (which answers it), so a refusal has one reason, one detail and one public answer.
 */
import { DPOP_CLOCK_TOLERANCE_SECONDS, type VerifiedDpopProof } from '@tessera/verify';
import type { PendingApprovalMessage } from '../approvals/webhook';
import type { AuditDraft } from '../audit/record';
import type { RateLimit } from '../policy/bundle';
import type { ApprovalRecord, ApprovalTerms, PollOutcome } from './approval';
import { type Reason, type RefusalOptions, refuse } from './errors';

/** A DPoP proof's id, to be accepted once (RFC 9449 §11.1), and how long it must be remembered. */
export interface ProofReplay {
  replayKey: string;
  /** Epoch seconds. */
  replayUntil: number;
}

/** The replay key of a verified proof: remembered for as long as the proof's `iat` would still be accepted. */
export function proofReplay(proof: VerifiedDpopProof, maxAge: number): ProofReplay {
  return {
    replayKey: `dpop:${proof.jkt}:${proof.jti}`,
    replayUntil: proof.iat + maxAge + DPOP_CLOCK_TOLERANCE_SECONDS,
  };
}

/** What the object checks before anything else: replay, DPoP, the task, the rate limit. */
export interface Admission {
  /** Issuer and `jti` of the attestation: accepted once. */
  replayKey: string;
  /** Epoch seconds until which the key must be remembered. */
  replayUntil: number;
  taskId: string;
  rateLimit: RateLimit;
  /** The request's DPoP proof: its id is accepted once; with `requireNonce`, its nonce must be the object's. */
  dpop?: ProofReplay & { nonce: string | undefined; requireNonce: boolean };
}

/** What a granted record adds to the draft: the token minted (signed already, or signed once collected). */
export interface Grant {
  tokenJti: string;
  /** Epoch seconds. */
  tokenExp: number;
  grantedActions: string;
  details: Record<string, unknown>;
  /** The token's entry in a status list, which the agent's object flips when the token dies. */
  status?: { list: string; idx: number };
}

/** What the worker decided, for the object to commit once it admits the request. */
export type ExchangeDecision =
  /** Policy granted: the token is signed and leaves once the object has recorded the grant. */
  | { kind: 'grant'; grant: Grant }
  /** A poll of a step-up approval that policy grants once approved: collected here, signed after. */
  | { kind: 'collect'; approvalId: string; terms: ApprovalTerms; grant: Grant }
  /** Policy needs approval: the object opens it (and queues its announcement). */
  | { kind: 'open'; approval: ApprovalRecord; message?: PendingApprovalMessage }
  /**
   * Policy refused: recorded, and the attestation counts as used. A poll of an approval is answered by the
   * approval first (asked for something else, denied, pending...), and by the policy only when it would
   * otherwise collect: the approval then stays approved.
   */
  | {
      kind: 'refuse';
      reason: Reason;
      details: Record<string, unknown>;
      approval?: { id: string; terms: ApprovalTerms };
    };

export interface ExchangeCall {
  draft: AuditDraft;
  admission: Admission;
  decision: ExchangeDecision;
  /** The caller takes the call's records to send (`records` in the result); else the object sends them. */
  handBack?: boolean;
}

/** Why the object refused: its own state, or the approval a poll asked about. */
export type ExchangeRefusal =
  | { reason: 'suspended' | 'replayed' | 'dpop_replayed' | 'task_finished' }
  | { reason: 'dpop_nonce'; dpopNonce: string }
  | { reason: 'rate_limited'; retryAfter: number }
  | {
      reason: 'approval';
      approvalId: string;
      poll: Exclude<PollOutcome, { status: 'approved' }> | { status: 'unknown' };
    };

export type ExchangeResult =
  /** Recorded as granted; for a collected approval, who approved it. */
  (
    | { outcome: 'granted'; approvedBy?: string[]; dpopNonce?: string }
    /** The worker's own refusal (`open`, `refuse`), recorded. */
    | { outcome: 'recorded'; dpopNonce?: string }
    /** The object refused, and recorded why. */
    | { outcome: 'refused'; refusal: ExchangeRefusal; dpopNonce?: string }
  ) & {
    /** The records the call committed, as committed (JSON): the worker sends them to the audit queue. */
    records?: string[];
  };

export interface RefusalSpec {
  reason: Reason;
  detail: Record<string, unknown>;
  options?: RefusalOptions;
}

/** An approval poll that did not collect: what the agent is told (OpenID CIBA §11), and why. */
function pollRefusal(approvalId: string, poll: Extract<ExchangeRefusal, { reason: 'approval' }>['poll']): RefusalSpec {
  const detail = { approvalId };
  switch (poll.status) {
    case 'pending':
      return {
        reason: 'approval_pending',
        detail,
        options: { body: { approval_id: approvalId, interval: poll.interval, expires_in: poll.expiresIn } },
      };
    case 'slow_down':
      return {
        reason: 'approval_poll_too_fast',
        detail,
        options: {
          body: { approval_id: approvalId, interval: poll.interval },
          headers: { 'Retry-After': String(poll.interval) },
        },
      };
    case 'denied':
      return { reason: 'approval_denied', detail };
    case 'expired':
      return { reason: 'approval_expired', detail };
    case 'used':
      return { reason: 'approval_used', detail };
    case 'mismatch':
      return {
        reason: 'approval_mismatch',
        detail: { ...detail, terms: poll.terms },
        options: {
          description: `the request differs from the one the approval is for in ${poll.terms.join(', ')}: repeat it exactly${poll.terms.includes('task.id') ? ', with task.id set to the task_id of the pending answer' : ''}`,
        },
      };
    case 'unknown':
      return { reason: 'approval_unknown', detail };
  }
}

/** The reason, audit detail and public answer of an object's refusal. */
export function exchangeRefusal(refusal: ExchangeRefusal, taskId: string): RefusalSpec {
  switch (refusal.reason) {
    case 'suspended':
      return { reason: 'agent_suspended', detail: {} };
    case 'replayed':
    case 'dpop_replayed':
      return { reason: refusal.reason, detail: {} };
    case 'task_finished':
      return { reason: 'task_finished', detail: { task: taskId } };
    case 'dpop_nonce':
      return { reason: 'dpop_nonce_required', detail: {}, options: { headers: { 'DPoP-Nonce': refusal.dpopNonce } } };
    case 'rate_limited':
      return {
        reason: 'rate_limited',
        detail: { retryAfter: refusal.retryAfter },
        options: { headers: { 'Retry-After': String(refusal.retryAfter) } },
      };
    case 'approval':
      return pollRefusal(refusal.approvalId, refusal.poll);
  }
}

/** The refusal to throw for an object's answer. */
export function refusalError(refusal: ExchangeRefusal, taskId: string) {
  const spec = exchangeRefusal(refusal, taskId);
  return refuse(spec.reason, spec.detail, spec.options);
}
