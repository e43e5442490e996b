/**
 * The agent's outbox of approval notifications: delivered by the agent object's alarm, retried with
 * backoff until delivered, six attempts, or the approval's expiry. Delivery never blocks or loses the
 * approval itself, and every attempt is audited in the agent's own chain.
 */
import { deliverWebhook, type PendingApprovalMessage } from '../approvals/webhook';
import { type AuditOutcome, type DecidedRecord, decideRecord } from '../audit/record';
import { Earliest } from '../durable/earliest';
import { loadedPolicy } from '../policy/loaded';

const MAX_ATTEMPTS = 6;
/** Seconds before retry n (1-based): 5, 20, 80, 320, 1280. */
const backoff = (attempt: number) => 5 * 4 ** (attempt - 1);

/** The table, created by the agent's first schema step (`./schema.ts`). */
export const NOTIFICATIONS_TABLE = `CREATE TABLE IF NOT EXISTS notifications (
  approval_id TEXT PRIMARY KEY, message TEXT NOT NULL, attempts INTEGER NOT NULL,
  next_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)`;

function queueNotification(sql: SqlStorage, message: PendingApprovalMessage, now: number, expiresAt: number) {
  sql.exec(
    'INSERT OR REPLACE INTO notifications (approval_id, message, attempts, next_at, expires_at) VALUES (?, ?, 0, ?, ?)',
    message.approval.id,
    JSON.stringify(message),
    now,
    expiresAt,
  );
}

/** The record of one delivery attempt (or of a notification that could not be sent). */
function attemptRecord(
  message: PendingApprovalMessage,
  outcome: AuditOutcome,
  details: Record<string, unknown>,
): DecidedRecord {
  return decideRecord(
    {
      at: Date.now(),
      event: 'approval.notify',
      agent: message.approval.agent,
      owner: message.approval.owner,
      audience: message.approval.audience,
      taskId: message.approval.task.id,
      target: `approval:${message.approval.id}`,
      details,
    },
    outcome,
    loadedPolicy().bundle.version,
  );
}

/**
 * Delivers every notification due at `now` whose approval is still pending; reschedules or drops the ones
 * that fail. An approval decided meanwhile needs no announcement any more.
 */
export async function deliverDue(
  sql: SqlStorage,
  env: Env,
  now: number,
  stillPending: (approvalId: string) => boolean,
  record: (attempt: DecidedRecord) => void,
): Promise<void> {
  const due = sql
    .exec<{ approval_id: string; message: string; attempts: number; expires_at: number }>(
      'SELECT approval_id, message, attempts, expires_at FROM notifications WHERE next_at <= ?',
      now,
    )
    .toArray();
  const url = loadedPolicy().bundle.settings.approvals.webhook;
  for (const row of due) {
    const message = JSON.parse(row.message) as PendingApprovalMessage;
    if (!stillPending(row.approval_id)) {
      sql.exec('DELETE FROM notifications WHERE approval_id = ?', row.approval_id);
      continue;
    }
    const attempt = row.attempts + 1;
    if (url === undefined || !env.APPROVAL_WEBHOOK_SECRET) {
      sql.exec('DELETE FROM notifications WHERE approval_id = ?', row.approval_id);
      record(
        attemptRecord(
          message,
          { decision: 'refused', reason: 'webhook_not_configured' },
          { secret: Boolean(env.APPROVAL_WEBHOOK_SECRET) },
        ),
      );
      continue;
    }
    const delivery = await deliverWebhook(url, env.APPROVAL_WEBHOOK_SECRET, message, now);
    const giveUp = !delivery.delivered && (attempt >= MAX_ATTEMPTS || now + backoff(attempt) >= row.expires_at);
    if (delivery.delivered || giveUp) sql.exec('DELETE FROM notifications WHERE approval_id = ?', row.approval_id);
    else {
      sql.exec(
        'UPDATE notifications SET attempts = ?, next_at = ? WHERE approval_id = ?',
        attempt,
        now + backoff(attempt),
        row.approval_id,
      );
    }
    const outcome: AuditOutcome = delivery.delivered
      ? { decision: 'granted' }
      : { decision: 'refused', reason: giveUp ? 'webhook_gave_up' : 'webhook_failed' };
    record(attemptRecord(message, outcome, { url, attempt, ...delivery }));
  }
}

/** The notifications of one agent's object, and when the next is due, kept with the table so scheduling reads no row. */
export class ApprovalNotifications {
  readonly #sql: SqlStorage;
  /** When the next notification is due (epoch seconds). */
  readonly #next: Earliest;

  constructor(sql: SqlStorage) {
    this.#sql = sql;
    this.#next = new Earliest(
      () => sql.exec<{ at: number | null }>('SELECT MIN(next_at) AS at FROM notifications').one().at,
    );
  }

  /** Queues the announcement of a pending approval, due at `now` (epoch seconds) and given up at `expiresAt`. */
  queue(message: PendingApprovalMessage, now: number, expiresAt: number): void {
    queueNotification(this.#sql, message, now, expiresAt);
    this.#next.reread();
  }

  /** When the next notification is due (epoch ms), null for none. */
  dueAt(): number | null {
    const { at } = this.#next;
    return at === null ? null : at * 1000;
  }

  /** Delivers what is due at `now` (epoch seconds), as {@link deliverDue} does; reads nothing when none is. */
  async deliver(
    env: Env,
    now: number,
    stillPending: (approvalId: string) => boolean,
    record: (attempt: DecidedRecord) => void,
  ): Promise<void> {
    const { at } = this.#next;
    if (at === null || at > now) return;
    await deliverDue(this.#sql, env, now, stillPending, record);
    this.#next.reread();
  }
}
