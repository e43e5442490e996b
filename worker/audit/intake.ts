/**
 * `AuditIntake` objects (`intake-0` … `intake-3`): the chains of records that name no single agent (admin
 * reads and listings, a task revoked across agents) and of refusals of callers not known yet (a body that does
 * not parse, an attestation that does not verify, a credential that does not match).
 *
 * Refusals of unknown callers are sampled, so that a flood of garbage cannot become a flood of records: per
 * shard, per minute and per (event, reason), the first {@link UNVERIFIED_SAMPLE} are recorded one by one and
 * the rest are counted; when the minute is over, one summary record says how many more there were, when, and
 * from which addresses and user agents. Counting is durable, in this object's storage, like the records.
 */
import { AlarmSchedule } from '../durable/alarm';
import { MeteredObject } from '../durable/meter';
import { loadedPolicy } from '../policy/loaded';
import { auditTransport } from '../stores/audit-queue';
import { AuditOutbox, type Backlog } from './outbox';
import { type ChainHead, type DecidedRecord, decideRecord } from './record';

/** Intake shards: records spread over them at random, each shard a chain of its own. */
export const INTAKE_SHARDS = 4;
/** Refusals of unknown callers recorded in full per shard, minute and (event, reason). */
export const UNVERIFIED_SAMPLE = 20;
const WINDOW_MS = 60_000;
/** Distinct addresses and user agents a summary names; the rest are counted as `others`. */
const SUMMARY_TOP = 10;

const TABLE = `CREATE TABLE IF NOT EXISTS unverified (
  window_start INTEGER NOT NULL, event TEXT NOT NULL, reason TEXT NOT NULL,
  recorded INTEGER NOT NULL, counted INTEGER NOT NULL, first_at INTEGER, last_at INTEGER,
  sources TEXT NOT NULL, draft TEXT NOT NULL, PRIMARY KEY (window_start, event, reason))`;

interface Sources {
  ips: Record<string, number>;
  userAgents: Record<string, number>;
}

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

export class AuditIntake extends MeteredObject {
  readonly #outbox: AuditOutbox;
  readonly #alarm: AlarmSchedule;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const name = this.ctx.id.name;
    if (name === undefined) throw new Error('AuditIntake objects are addressed by name (intake-<n>)');
    this.#outbox = new AuditOutbox(this.ctx.storage.sql, name.replace('-', ':'), auditTransport(this.env));
    this.#alarm = new AlarmSchedule(this.ctx.storage);
    this.ctx.storage.sql.exec(TABLE);
  }

  /** The alarm is due when the next batch should leave, or the oldest open minute closes. */
  #schedule(): Promise<void> {
    return this.#alarm.noLaterThan(this.#outbox.flushAt(), this.#summaryAt());
  }

  /** Commits a decided record to this shard's chain. */
  async record(record: DecidedRecord): Promise<void> {
    this.#outbox.append(record);
    await this.#schedule();
  }

  /**
   * A refusal of a caller not known yet: recorded in full while the minute's sample lasts, counted after.
   * `record` is the refusal as it would be recorded in full.
   */
  async refused(record: DecidedRecord): Promise<void> {
    const start = Math.floor(record.at / WINDOW_MS) * WINDOW_MS;
    const key = [start, record.event, record.reason ?? ''] as const;
    const row = this.ctx.storage.sql
      .exec<{ recorded: number; sources: string }>(
        'SELECT recorded, sources FROM unverified WHERE window_start = ? AND event = ? AND reason = ?',
        ...key,
      )
      .toArray()[0];
    if (row === undefined || row.recorded < UNVERIFIED_SAMPLE) {
      this.#outbox.append(record);
      this.ctx.storage.sql.exec(
        `INSERT INTO unverified (window_start, event, reason, recorded, counted, sources, draft)
         VALUES (?, ?, ?, 1, 0, '{"ips":{},"userAgents":{}}', ?)
         ON CONFLICT DO UPDATE SET recorded = recorded + 1`,
        ...key,
        JSON.stringify(record),
      );
    } else {
      const counted = JSON.parse(row.sources) as Sources;
      const sources: Sources = {
        ips: tally(counted.ips, record.ip),
        userAgents: tally(counted.userAgents, record.userAgent),
      };
      this.ctx.storage.sql.exec(
        `UPDATE unverified SET counted = counted + 1, first_at = COALESCE(first_at, ?), last_at = ?, sources = ?
         WHERE window_start = ? AND event = ? AND reason = ?`,
        record.at,
        record.at,
        JSON.stringify(sources),
        ...key,
      );
    }
    await this.#schedule();
  }

  /** When the oldest open minute closes: its summary is due then. */
  #summaryAt(): number | null {
    const start = this.ctx.storage.sql
      .exec<{ start: number | null }>('SELECT MIN(window_start) AS start FROM unverified')
      .one().start;
    return start === null ? null : start + WINDOW_MS;
  }

  /** Records one summary per closed minute that counted refusals beyond its sample, and forgets closed minutes. */
  #summarise(now: number): void {
    const closed = this.ctx.storage.sql
      .exec<{
        window_start: number;
        counted: number;
        first_at: number | null;
        last_at: number | null;
        sources: string;
        draft: string;
      }>('SELECT * FROM unverified WHERE window_start + ? <= ? ORDER BY window_start', WINDOW_MS, now)
      .toArray();
    const { version } = loadedPolicy().bundle;
    for (const window of closed) {
      if (window.counted === 0) continue;
      const sample = JSON.parse(window.draft) as DecidedRecord;
      const sources = JSON.parse(window.sources) as Sources;
      const summary = decideRecord(
        {
          at: window.window_start + WINDOW_MS,
          event: sample.event,
          details: {
            summary: {
              count: window.counted,
              sampled: UNVERIFIED_SAMPLE,
              window: { from: window.window_start, to: window.window_start + WINDOW_MS },
              first_at: window.first_at,
              last_at: window.last_at,
              ips: sources.ips,
              user_agents: sources.userAgents,
            },
          },
        },
        { decision: 'refused', reason: sample.reason as never },
        version,
      );
      this.#outbox.append(summary);
    }
    this.ctx.storage.sql.exec('DELETE FROM unverified WHERE window_start + ? <= ?', WINDOW_MS, now);
  }

  override async alarm(): Promise<void> {
    this.#alarm.fired();
    this.#summarise(Date.now());
    await this.#outbox.flushDue();
    await this.#schedule();
  }

  /**
   * Forwards everything waiting to D1 now; with `closeWindows`, first closes every open minute into its
   * summary. For tests, which wait for records without sleeping.
   */
  async flushAudit(closeWindows = false): Promise<boolean> {
    if (closeWindows) this.#summarise(Number.POSITIVE_INFINITY);
    const done = await this.#outbox.flush();
    await this.#schedule();
    return done;
  }

  async backlog(): Promise<Backlog> {
    return this.#outbox.backlog();
  }

  async heads(): Promise<{ head: ChainHead; acked: ChainHead }> {
    return this.#outbox.heads();
  }
}
