/**
 * `AuditIntake` objects (`intake-0` … `intake-3`): the chains of records that name no single agent (admin
 * reads and listings, a task revoked across agents) and of refusals of callers not known yet (a body that does
 * not parse, an attestation that does not verify, a credential that does not match).
 *
 * Refusals of unknown callers are sampled, so that a flood of garbage cannot become a flood of records: per
 * shard, per minute and per (event, reason), the first {@link UNVERIFIED_SAMPLE} are recorded one by one and
 * the rest are counted; when the minute is over, one summary record says how many more there were, when, and
 * from which addresses and user agents. The admin reads a console polls are sampled the same way, per admin
 * (`audit/sampler.ts` has the rules). Counting is durable, in this object's storage, like the records.
 */
import { AlarmSchedule } from '../durable/alarm';
import { MeteredObject } from '../durable/meter';
import { migrate } from '../durable/sql-schema';
import { AuditOutbox, type Backlog } from './outbox';
import { auditTransport } from './queue-transport';
import type { ChainHead, DecidedRecord } from './record';
import { AuditSampler, SAMPLES_TABLE, SAMPLING } from './sampler';

/** Intake shards: records spread over them at random, each shard a chain of its own. */
export const INTAKE_SHARDS = 4;

/** The stub of intake shard `shard` (0 … {@link INTAKE_SHARDS} - 1). */
export function intakeStub(env: Env, shard: number): DurableObjectStub<AuditIntake> {
  return env.AUDIT_INTAKE.get(env.AUDIT_INTAKE.idFromName(`intake-${shard}`));
}

/** A shard picked at random, for a record no sender's sample ties to one: no shard sits on every call. */
export const anyIntakeShard = (): number => Math.floor(Math.random() * INTAKE_SHARDS);

/** Refusals of unknown callers recorded in full per shard, minute and (event, reason). */
export const UNVERIFIED_SAMPLE = SAMPLING.unverified.sample;

/**
 * Schema steps. The first is the table the sampling counted in before it was shared with the other chains'
 * objects; the second moves its open minutes into the shared table, so no count is lost to the change.
 */
const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS unverified (
     window_start INTEGER NOT NULL, event TEXT NOT NULL, reason TEXT NOT NULL,
     recorded INTEGER NOT NULL, counted INTEGER NOT NULL, first_at INTEGER, last_at INTEGER,
     sources TEXT NOT NULL, draft TEXT NOT NULL, PRIMARY KEY (window_start, event, reason))`,
  `${SAMPLES_TABLE};
   INSERT INTO audit_samples (kind, subject, event, reason, window_start, window_end, recorded, counted,
     first_at, last_at, sources, draft)
   SELECT 'unverified', '[]', event, reason, window_start, window_start + ${SAMPLING.unverified.windowMs}, recorded,
     counted, first_at, last_at, sources, draft FROM unverified;
   DROP TABLE unverified`,
];

export class AuditIntake extends MeteredObject {
  readonly #outbox: AuditOutbox;
  readonly #sampler: AuditSampler;
  readonly #alarm: AlarmSchedule;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const name = this.ctx.id.name;
    if (name === undefined) throw new Error('AuditIntake objects are addressed by name (intake-<n>)');
    this.#outbox = new AuditOutbox(this.ctx.storage.sql, name.replace('-', ':'), auditTransport(this.env));
    migrate(this.ctx.storage.sql, SCHEMA);
    this.#sampler = new AuditSampler(this.ctx.storage.sql, this.#outbox);
    this.#alarm = new AlarmSchedule(this.ctx.storage);
  }

  /** The alarm is due when the next batch should leave, or the oldest open minute closes. */
  #schedule(): Promise<void> {
    return this.#alarm.noLaterThan(this.#outbox.flushAt(), this.#sampler.dueAt());
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
    this.#sampler.take('unverified', record);
    await this.#schedule();
  }

  /**
   * An admin's read that a console polls (`admin.whoami`, `admin.approval.list`): recorded in full while the
   * window's sample lasts for this admin, counted after. The worker sends one admin's reads to one shard.
   */
  async read(record: DecidedRecord): Promise<void> {
    this.#sampler.take('admin_read', record);
    await this.#schedule();
  }

  override async alarm(): Promise<void> {
    this.#alarm.fired();
    this.#sampler.summarise(Date.now());
    await this.#outbox.flushDue();
    await this.#schedule();
  }

  /**
   * Forwards everything waiting to D1 now; with `closeWindows`, first closes every open minute into its
   * summary. For tests, which wait for records without sleeping.
   */
  async flushAudit(closeWindows = false): Promise<boolean> {
    if (closeWindows) this.#sampler.summarise(Number.POSITIVE_INFINITY);
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
