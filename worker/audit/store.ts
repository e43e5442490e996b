/**
 * Writes audit records to D1. A write resolves only once D1 has committed it, which is what lets `/token`
 * promise that no token leaves the broker without its record.
 */
import { drizzle } from 'drizzle-orm/d1';
import { auditEvents, type NewAuditEvent } from './schema';

/** An audit record being filled in as a request makes its way through the gates. */
export type AuditDraft = Omit<NewAuditEvent, 'seq' | 'id' | 'decision' | 'policyVersion'> & {
  detail?: never;
  details: Record<string, unknown>;
};

export interface AuditOutcome {
  decision: 'granted' | 'refused';
  policyVersion: string;
  errorCode?: string;
  reason?: string;
}

/** Inserts one record and waits for D1 to commit it. */
export async function writeAudit(db: D1Database, draft: AuditDraft, outcome: AuditOutcome): Promise<void> {
  const { details, ...fields } = draft;
  await drizzle(db)
    .insert(auditEvents)
    .values({
      ...fields,
      ...outcome,
      id: crypto.randomUUID(),
      detail: Object.keys(details).length === 0 ? null : JSON.stringify(details),
    });
}
