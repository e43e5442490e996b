/**
 * An agent's step-up approvals (`approvals`), as its object keeps them: opened by an exchange, decided by
 * approvers, polled and collected by the agent, and readable for a day past their expiry. The rules are
 * `core/approval.ts`'s; this part stores what they decide and says how each decision is recorded.
 */
import type { AuditOutcome } from '../audit/record';
import {
  type ApprovalRecord,
  type ApprovalStatus,
  type ApprovalTerms,
  type Approver,
  approvalStatus,
  type DecideOutcome,
  decideApproval,
  type PollOutcome,
  pollApproval,
} from '../core/approval';
import type { ExchangeRefusal } from '../core/exchange';
import type { ExpiringRows } from './expiry';

/** How long a decided or expired approval stays readable after its expiry. */
const APPROVAL_RETENTION_SECONDS = 24 * 3600;

/** What polling an approval finds, and the record as the poll leaves it (saved only by the caller). */
export interface Polled {
  outcome: PollOutcome | { status: 'unknown' };
  record?: ApprovalRecord;
}

/** An approver's decision, the record after it, and how the decision is recorded. */
export interface ApproverDecision {
  outcome: DecideOutcome | { decided: false; reason: 'unknown' };
  record?: ApprovalRecord;
  audit: AuditOutcome;
}

/** The approvals of one agent's object, over its SQLite storage. */
export class Approvals {
  readonly #rows: ExpiringRows;

  constructor(rows: ExpiringRows) {
    this.#rows = rows;
  }

  /** The approval `id`, if the object keeps it. */
  get(id: string): ApprovalRecord | undefined {
    const row = this.#rows.sql.exec<{ record: string }>('SELECT record FROM approvals WHERE id = ?', id).toArray()[0];
    if (row === undefined) return undefined;
    const record = JSON.parse(row.record) as ApprovalRecord;
    // Stored before grants declared their rollback path: it declares none.
    record.requirement.rollback ??= [];
    return record;
  }

  /** How many of the kept approvals are in each status at `now` (epoch seconds). */
  counts(now: number): Record<ApprovalStatus, number> {
    const counts = { pending: 0, approved: 0, denied: 0, expired: 0, collected: 0 };
    for (const { record } of this.#rows.sql.exec<{ record: string }>('SELECT record FROM approvals')) {
      counts[approvalStatus(JSON.parse(record) as ApprovalRecord, now)] += 1;
    }
    return counts;
  }

  /** Stores `record`, kept until a day past its expiry. */
  save(record: ApprovalRecord): void {
    const expiresAt = record.expiresAt + APPROVAL_RETENTION_SECONDS;
    this.#rows.sql.exec(
      'INSERT OR REPLACE INTO approvals (id, record, expires_at) VALUES (?, ?, ?)',
      record.id,
      JSON.stringify(record),
      expiresAt,
    );
    this.#rows.expiry.note(expiresAt);
  }

  /** Whether approval `id` still waits for approvers at `now` (epoch seconds). */
  pending(id: string, now: number): boolean {
    const record = this.get(id);
    return record !== undefined && approvalStatus(record, now) === 'pending';
  }

  /** What polling approval `id` with `terms` finds at `now` (epoch seconds); nothing is saved. */
  poll(id: string, terms: ApprovalTerms, now: number): Polled {
    const record = this.get(id);
    if (record === undefined) return { outcome: { status: 'unknown' } };
    return pollApproval(record, terms, now);
  }

  /** A poll that did not collect: keeps what the poll changed (its time), and says the refusal. */
  refusePoll(id: string, polled: Polled): ExchangeRefusal {
    const { outcome } = polled;
    if (outcome.status === 'approved') throw new Error('an approved poll collects');
    if (polled.record !== undefined) this.save(polled.record);
    return { reason: 'approval', approvalId: id, poll: outcome };
  }

  /** An approver's decision at `now` (epoch seconds), saved if it counts: granted, or refused and why. */
  decide(
    id: string,
    input: { approver: Approver; decision: 'approve' | 'deny'; reason: string },
    now: number,
  ): ApproverDecision {
    const record = this.get(id);
    if (record === undefined) {
      return {
        outcome: { decided: false, reason: 'unknown' },
        audit: { decision: 'refused', reason: 'unknown_target', details: { approval: id } },
      };
    }
    const decided = decideApproval(record, input, now);
    if (decided.outcome.decided) {
      this.save(decided.record);
      const status = approvalStatus(decided.record, now);
      // The record of the decision keeps what the approver was shown would undo it.
      const details = { decision: input.decision, status, rollback: record.requirement.rollback };
      return { ...decided, audit: { decision: 'granted', details } };
    }
    if (decided.outcome.reason === 'not_pending') {
      const details = { status: approvalStatus(record, now) };
      return { ...decided, audit: { decision: 'refused', reason: 'approval_not_pending', details } };
    }
    const details = { rule: decided.outcome.reason, requirement: record.requirement };
    return { ...decided, audit: { decision: 'refused', reason: 'approver_not_allowed', details } };
  }

  /** Puts a collected approval back to approved: no token came of the collection. */
  release(id: string): void {
    const record = this.get(id);
    if (record?.status === 'collected') this.save({ ...record, status: 'approved' });
  }
}
