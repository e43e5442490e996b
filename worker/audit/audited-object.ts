/**
 * The base of every Durable Object that keeps an audit chain (an agent's state, the kill switch's control,
 * an intake shard), as cloudflare/agents' `Agent` gives each object its SQL, schema steps and one alarm: the
 * chain's outbox and sampler over the object's SQLite storage, the one alarm they share with the subclass's
 * own work, and the chain's RPC methods (`backlog`, `heads`, `flushAudit`), written once.
 */
import { AlarmSchedule } from '../durable/alarm';
import { MeteredObject } from '../durable/meter';
import { migrate } from '../durable/sql-schema';
import { AuditOutbox, type Backlog } from './outbox';
import { auditTransport } from './queue-transport';
import type { ChainHead } from './record';
import { AuditSampler } from './sampler';

/** The chain an object keeps, and the schema steps of the object's own tables (applied before the chain's). */
export interface AuditedObjectOptions {
  chain: string;
  schema?: readonly string[];
}

export abstract class AuditedObject extends MeteredObject {
  /** The chain's records, committed in the caller's transaction. */
  protected readonly outbox: AuditOutbox;
  /** Records that repeat, committed in full while their window's sample lasts (`audit/sampler.ts`). */
  protected readonly sampler: AuditSampler;
  readonly #alarm: AlarmSchedule;

  constructor(ctx: DurableObjectState, env: Env, options: AuditedObjectOptions) {
    super(ctx, env);
    const { sql } = this.ctx.storage;
    if (options.schema !== undefined) migrate(sql, options.schema);
    this.outbox = new AuditOutbox(sql, options.chain, auditTransport(this.env));
    this.sampler = new AuditSampler(sql, this.outbox);
    this.#alarm = new AlarmSchedule(this.ctx.storage);
  }

  /** When the subclass's own alarm work is due (epoch ms; nulls for nothing due). */
  protected dueTimes(): (number | null)[] {
    return [];
  }

  /** The subclass's own alarm work, run before the chain's (sampling windows closed, records forwarded). */
  protected async alarmWork(): Promise<void> {}

  /** Sets the one alarm for the earliest of: records to send, a sampling window to close, the subclass's work. */
  protected async schedule(): Promise<void> {
    await this.#alarm.noLaterThan(this.outbox.flushAt(), this.sampler.dueAt(), ...this.dueTimes());
  }

  /** Records not yet in D1, and how old the oldest is. */
  async backlog(): Promise<Backlog> {
    return this.outbox.backlog();
  }

  /** The chain's head and what D1 is known to hold. */
  async heads(): Promise<{ head: ChainHead; acked: ChainHead }> {
    return this.outbox.heads();
  }

  /**
   * Forgets the records D1 holds and sends the rest to the audit queue now (tests, admins waiting on the
   * backlog); with `closeWindows`, first closes every open sampling window into its summary (tests, which do
   * not wait for windows to end).
   */
  async flushAudit(closeWindows = false): Promise<boolean> {
    if (closeWindows) this.sampler.summarise(Number.POSITIVE_INFINITY);
    const done = await this.outbox.flush();
    await this.schedule();
    return done;
  }

  /** Does the subclass's due work, summarises sampling windows that closed, and forwards waiting records. */
  override async alarm(): Promise<void> {
    this.#alarm.fired();
    await this.alarmWork();
    // A no-op, reading nothing, until the oldest open window has closed.
    this.sampler.summarise(Date.now());
    await this.outbox.flushDue();
    await this.schedule();
  }
}
