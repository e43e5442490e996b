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
import { AuditedObject } from './audited-object';
import type { DecidedRecord } from './record';
import { SAMPLES_TABLE, SAMPLING } from './sampler';

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

/** One intake shard: its chain, and the sampling of what repeats (`audit/audited-object.ts` has the rest). */
export class AuditIntake extends AuditedObject {
  constructor(ctx: DurableObjectState, env: Env) {
    const name = ctx.id.name;
    if (name === undefined) throw new Error('AuditIntake objects are addressed by name (intake-<n>)');
    super(ctx, env, { chain: name.replace('-', ':'), schema: SCHEMA });
  }

  /** Commits a decided record to this shard's chain. */
  async record(record: DecidedRecord): Promise<void> {
    this.outbox.append(record);
    await this.schedule();
  }

  /**
   * A refusal of a caller not known yet: recorded in full while the minute's sample lasts, counted after.
   * `record` is the refusal as it would be recorded in full.
   */
  async refused(record: DecidedRecord): Promise<void> {
    this.sampler.take('unverified', record);
    await this.schedule();
  }

  /**
   * An admin's read that a console polls (`admin.whoami`, `admin.approval.list`): recorded in full while the
   * window's sample lasts for this admin, counted after. The worker sends one admin's reads to one shard.
   */
  async read(record: DecidedRecord): Promise<void> {
    this.sampler.take('admin_read', record);
    await this.schedule();
  }
}
