/**
 * What an admitted `/token` request's decision changes in its agent's object, a part over the object's
 * approvals and their notifications: a grant changes nothing here; collecting an approval marks it collected
 * by the poll that asks for its terms; opening one saves it and queues its notification; a refusal may be the
 * poll of an approval not approved yet, whose time the poll still moves on. Synchronous, so that it lands in
 * the exchange's storage transaction (`agent-state.ts` commits the rest: the attestation used up, the record).
 */
import type { AuditOutcome } from '../audit/record';
import type { ApprovalRecord } from '../core/approval';
import { type ExchangeDecision, type ExchangeResult, exchangeRefusal, type Grant } from '../core/exchange';
import type { Approvals, Polled } from './approvals';
import type { ApprovalNotifications } from './notifications';

/** An admitted request's decision: the answer, the record's outcome, and the token granted, if one. */
export interface Decided {
  result: ExchangeResult;
  outcome: AuditOutcome;
  grant?: Grant;
}

/** A grant's answer and outcome; `extra` adds to the record's details. */
const granted = (grant: Grant, extra: Record<string, unknown> = {}): Decided => ({
  result: { outcome: 'granted' },
  outcome: { decision: 'granted', details: { ...grant.details, ...extra } },
  grant,
});

/** The decisions of one agent's exchanges, over its approvals and their notifications. */
export class ExchangeDecisions {
  readonly #approvals: Approvals;
  readonly #notifications: ApprovalNotifications;

  constructor(approvals: Approvals, notifications: ApprovalNotifications) {
    this.#approvals = approvals;
    this.#notifications = notifications;
  }

  /**
   * What an admitted request's decision changes (its approval), the answer, and the record's outcome, at
   * `now` (epoch seconds).
   */
  decide(decision: ExchangeDecision, taskId: string, now: number): Decided {
    switch (decision.kind) {
      case 'grant':
        return granted(decision.grant);
      case 'collect': {
        const polled = this.#approvals.poll(decision.approvalId, decision.terms, now);
        if (polled.outcome.status !== 'approved') return this.#pollRefused(taskId, decision.approvalId, polled);
        this.#approvals.save(polled.record as ApprovalRecord);
        const { by } = polled.outcome;
        return {
          ...granted(decision.grant, { approval: { id: decision.approvalId, by } }),
          result: { outcome: 'granted', approvedBy: by },
        };
      }
      case 'open': {
        const { approval, message } = decision;
        this.#approvals.save(approval);
        if (message !== undefined) this.#notifications.queue(message, approval.createdAt, approval.expiresAt);
        const details = { approvalId: approval.id, requirement: approval.requirement };
        return {
          result: { outcome: 'recorded' },
          outcome: { decision: 'refused', reason: 'approval_required', details },
        };
      }
      case 'refuse': {
        const { approval } = decision;
        if (approval !== undefined) {
          const polled = this.#approvals.poll(approval.id, approval.terms, now);
          if (polled.outcome.status !== 'approved') return this.#pollRefused(taskId, approval.id, polled);
        }
        return {
          result: { outcome: 'recorded' },
          outcome: { decision: 'refused', reason: decision.reason, details: decision.details },
        };
      }
    }
  }

  /** A poll that did not collect: what the poll changed (its time) kept, and the refusal. */
  #pollRefused(taskId: string, approvalId: string, polled: Polled): Decided {
    const refusal = this.#approvals.refusePoll(approvalId, polled);
    const spec = exchangeRefusal(refusal, taskId);
    return {
      result: { outcome: 'refused', refusal },
      outcome: { decision: 'refused', reason: spec.reason, details: spec.detail },
    };
  }
}
