/**
 * Writes audit records to D1. A write resolves only once D1 has committed it, which is what lets `/token`
 * promise that no token leaves the broker without its record.
 */
import { getTableColumns, getTableName } from 'drizzle-orm';
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

/**
 * The insert, built once from the drizzle schema: on `/token`'s path, building the statement per request
 * through the query builder was a visible share of its CPU in the profile (docs/benchmarks.md).
 */
const COLUMNS = Object.entries(getTableColumns(auditEvents)).filter(([, column]) => !column.primary) as [
  keyof NewAuditEvent,
  { name: string },
][];
const INSERT = `INSERT INTO ${getTableName(auditEvents)} (${COLUMNS.map(([, column]) => column.name).join(', ')}) VALUES (${COLUMNS.map(() => '?').join(', ')})`;

function rowOf(draft: AuditDraft, outcome: AuditOutcome): (string | number | null)[] {
  const { details, ...fields } = draft;
  const record: NewAuditEvent = {
    ...fields,
    ...outcome,
    id: crypto.randomUUID(),
    detail: Object.keys(details).length === 0 ? null : JSON.stringify(details),
  };
  return COLUMNS.map(([key]) => record[key] ?? null);
}

/**
 * Inserts one record and waits for D1 to commit it. One write per request: workerd ties every I/O to the
 * request that started it, so requests in one isolate cannot share a D1 batch (docs/benchmarks.md).
 */
export async function writeAudit(db: D1Database, draft: AuditDraft, outcome: AuditOutcome): Promise<void> {
  await db
    .prepare(INSERT)
    .bind(...rowOf(draft, outcome))
    .run();
}
