/**
 * Sampling of records that repeat, shared by every object that keeps a chain: the intake (refusals of callers
 * not known yet, the admin reads a console polls), an agent's state (replayed attestations, repeated revokes
 * of one token) and the kill switch (its polled read). Per window and key, the first records are committed in
 * full and the rest only counted; when the window is over, one summary record says how many more there were,
 * when, from which addresses and user agents, and, from the key, who did it to what.
 *
 * The key is the record's `event` and `reason` and the fields its kind names as "who" (an agent and its
 * attestation, a token, an admin and the target): what they hold is the same for every record counted under
 * it, so the summary can state it. A first occurrence in a window is always recorded in full. Counting is
 * durable, in the object's SQLite storage, in the same transaction as the records; the summary is chained in
 * that object like any other record.
 */
import { loadedPolicy } from '../policy/loaded';
import type { AuditOutbox } from './outbox';
import { type AuditOutcome, type DecidedRecord, decideRecord } from './record';

export type SampledKind = 'unverified' | 'replay' | 'repeat_revoke' | 'admin_read';

export interface SamplingRule {
  /** The window, in ms; windows are aligned on the epoch (a minute starts at :00). */
  windowMs: number;
  /** Records committed in full per window and key. */
  sample: number;
  /** The fields that say who did what: part of the key, and repeated in the summary. */
  who: readonly (keyof DecidedRecord)[];
}

/**
 * The rules. Refusals of unknown callers: 20 a minute per (event, reason), nothing about who (their claims
 * are not verified). A replayed attestation: 3 a minute per attestation, so every attestation replayed is
 * named in full at least once a minute, and an agent's replays in a minute are bounded by the attestations it
 * used in their short lifetime (which the rate limit bounds). A repeated revoke: 3 a minute per token (the
 * first revoke is a change, never sampled). A polled admin read: 2 per 10 minutes per admin and target, so
 * an open console tab costs a few records an hour, and its summary still says who was looking, from where,
 * and between when and when.
 */
export const SAMPLING: Readonly<Record<SampledKind, SamplingRule>> = {
  unverified: { windowMs: 60_000, sample: 20, who: [] },
  replay: { windowMs: 60_000, sample: 3, who: ['agent', 'owner', 'attestationVia', 'attestationJti'] },
  repeat_revoke: {
    windowMs: 60_000,
    sample: 3,
    who: ['agent', 'owner', 'audience', 'taskId', 'tokenJti', 'tokenExp'],
  },
  admin_read: { windowMs: 600_000, sample: 2, who: ['actor', 'actorRole', 'target', 'agent'] },
};

/** Distinct addresses and user agents a summary names; the rest are counted as `others`. */
const SUMMARY_TOP = 10;

export const SAMPLES_TABLE = `CREATE TABLE IF NOT EXISTS audit_samples (
  kind TEXT NOT NULL, subject TEXT NOT NULL, event TEXT NOT NULL, reason TEXT NOT NULL,
  window_start INTEGER NOT NULL, window_end INTEGER NOT NULL,
  recorded INTEGER NOT NULL, counted INTEGER NOT NULL, first_at INTEGER, last_at INTEGER,
  sources TEXT NOT NULL, draft TEXT NOT NULL,
  PRIMARY KEY (kind, subject, event, reason, window_start));
  CREATE INDEX IF NOT EXISTS audit_samples_end ON audit_samples (window_end)`;

interface Sources {
  ips: Record<string, number>;
  userAgents: Record<string, number>;
}

/** What a summary repeats of the first record of its window: the key's fields and the decision. */
type SampleDraft = Partial<DecidedRecord> & Pick<DecidedRecord, 'event' | 'decision' | 'reason'>;

/**
 * `counts` with one more for `key`, a bounded tally: past {@link SUMMARY_TOP} names, into `others`. The names
 * are the caller's (an address, a user agent), so the tally is a `Map`: `__proto__` or `constructor` is
 * counted like any other name.
 */
function tally(counts: Readonly<Record<string, number>>, key: string | null | undefined): Record<string, number> {
  const tallied = new Map(Object.entries(counts));
  const name = key ?? 'unknown';
  const slot = tallied.has(name) || tallied.size < SUMMARY_TOP ? name : 'others';
  tallied.set(slot, (tallied.get(slot) ?? 0) + 1);
  return Object.fromEntries(tallied);
}

/** The summary's outcome: the sample's decision, with its reason when refused. */
function sampleOutcome(draft: SampleDraft): AuditOutcome {
  return draft.decision === 'refused'
    ? { decision: 'refused', reason: draft.reason as Extract<AuditOutcome, { decision: 'refused' }>['reason'] }
    : { decision: 'granted' };
}

export class AuditSampler {
  readonly #sql: SqlStorage;
  readonly #outbox: AuditOutbox;
  /** When the oldest open window closes (epoch ms), kept with the table so a busy object reads no row for it. */
  #dueAt: number | null;

  /** The object's outbox, whose chain the sampled records and summaries go to; creates the table. */
  constructor(sql: SqlStorage, outbox: AuditOutbox) {
    this.#sql = sql;
    this.#outbox = outbox;
    sql.exec(SAMPLES_TABLE);
    this.#dueAt = this.#oldestEnd();
  }

  #oldestEnd(): number | null {
    return this.#sql.exec<{ at: number | null }>('SELECT MIN(window_end) AS at FROM audit_samples').one().at;
  }

  /**
   * Commits `record` in full while its window's sample lasts, else counts it. Synchronous, so it lands in the
   * caller's storage transaction.
   *
   * @returns whether the record was committed in full.
   */
  take(kind: SampledKind, record: DecidedRecord): boolean {
    const rule = SAMPLING[kind];
    const start = Math.floor(record.at / rule.windowMs) * rule.windowMs;
    const subject = JSON.stringify(rule.who.map((field) => record[field] ?? null));
    const key = [kind, subject, record.event, record.reason ?? '', start] as const;
    const where = 'kind = ? AND subject = ? AND event = ? AND reason = ? AND window_start = ?';
    const row = this.#sql
      .exec<{ recorded: number; sources: string }>(`SELECT recorded, sources FROM audit_samples WHERE ${where}`, ...key)
      .toArray()[0];
    if (row === undefined || row.recorded < rule.sample) {
      this.#outbox.append(record);
      const draft: SampleDraft = { event: record.event, decision: record.decision, reason: record.reason };
      for (const field of rule.who) Object.assign(draft, { [field]: record[field] });
      this.#sql.exec(
        `INSERT INTO audit_samples (kind, subject, event, reason, window_start, window_end, recorded, counted, sources, draft)
         VALUES (?, ?, ?, ?, ?, ?, 1, 0, '{"ips":{},"userAgents":{}}', ?)
         ON CONFLICT DO UPDATE SET recorded = recorded + 1`,
        ...key,
        start + rule.windowMs,
        JSON.stringify(draft),
      );
      const end = start + rule.windowMs;
      if (this.#dueAt === null || end < this.#dueAt) this.#dueAt = end;
      return true;
    }
    const counted = JSON.parse(row.sources) as Sources;
    const sources: Sources = {
      ips: tally(counted.ips, record.ip),
      userAgents: tally(counted.userAgents, record.userAgent),
    };
    this.#sql.exec(
      `UPDATE audit_samples SET counted = counted + 1, first_at = COALESCE(first_at, ?), last_at = ?, sources = ?
       WHERE ${where}`,
      record.at,
      record.at,
      JSON.stringify(sources),
      ...key,
    );
    return false;
  }

  /** When the oldest open window closes (epoch ms): its summary is due then. */
  dueAt(): number | null {
    return this.#dueAt;
  }

  /** Commits one summary per window closed by `now` that counted records beyond its sample; forgets closed windows. */
  summarise(now: number): void {
    if (this.#dueAt === null || this.#dueAt > now) return;
    const closed = this.#sql
      .exec<{
        kind: SampledKind;
        window_start: number;
        window_end: number;
        recorded: number;
        counted: number;
        first_at: number | null;
        last_at: number | null;
        sources: string;
        draft: string;
      }>('SELECT * FROM audit_samples WHERE window_end <= ? ORDER BY window_end, window_start', now)
      .toArray();
    const { version } = loadedPolicy().bundle;
    for (const window of closed) {
      if (window.counted === 0) continue;
      const draft = JSON.parse(window.draft) as SampleDraft;
      const who = Object.fromEntries(SAMPLING[window.kind].who.map((field) => [field, draft[field] ?? null]));
      const sources = JSON.parse(window.sources) as Sources;
      const summary = decideRecord(
        {
          ...who,
          event: draft.event,
          at: window.window_end,
          details: {
            summary: {
              kind: window.kind,
              count: window.counted,
              recorded: window.recorded,
              sampled: SAMPLING[window.kind].sample,
              window: { from: window.window_start, to: window.window_end },
              first_at: window.first_at,
              last_at: window.last_at,
              ips: sources.ips,
              user_agents: sources.userAgents,
            },
          },
        },
        sampleOutcome(draft),
        version,
      );
      this.#outbox.append(summary);
    }
    this.#sql.exec('DELETE FROM audit_samples WHERE window_end <= ?', now);
    this.#dueAt = this.#oldestEnd();
  }
}
