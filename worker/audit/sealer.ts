/**
 * The `AuditSealer` object (one, `global`): the keeper of the audit log in D1. It seals new records into the
 * hash chain, one batch after another, keeps the chain's head in its own storage as the anchor `GET
 * /admin/audit/verify` checks, and moves what is older than the hot window to the archive in R2
 * (`archive.ts`), recording each move. It runs on the cron trigger and on demand, never on a decision's path;
 * its calls are serialised, so two runs never move the same records.
 */

import { withinDeadline } from '../durable/deadline';
import { MeteredObject } from '../durable/meter';
import { loadedPolicy } from '../policy/loaded';
import { type ArchiveRun, archiveDue, type SegmentRow } from './archive';
import { archiveBucket } from './archive-bucket';
import { type ChainHead, GENESIS, sealAfter } from './chain';
import { anyIntakeShard, intakeStub } from './intake';
import { decideRecord } from './record';

const HEAD_KEY = 'head';
/** How long a move's record waits for its intake shard, as a request would: past it, the run stops. */
const RECORD_DEADLINE_MS = 3000;

export class AuditSealer extends MeteredObject {
  /** Seals every record not sealed yet; returns the head. Calls are serialised. */
  async seal(): Promise<ChainHead> {
    return this.ctx.blockConcurrencyWhile(() => this.#seal());
  }

  #seal(): Promise<ChainHead> {
    return this.ctx.storage
      .get<ChainHead>(HEAD_KEY)
      .then((head) =>
        sealAfter(this.env.AUDIT_DB, head ?? { seq: 0, hash: GENESIS }, (next) => this.ctx.storage.put(HEAD_KEY, next)),
      );
  }

  /** Seals what is new, then moves every segment that is due to the archive (the cron trigger, and admins). */
  async maintain(): Promise<{ head: ChainHead; archive: ArchiveRun }> {
    return this.ctx.blockConcurrencyWhile(async () => {
      const head = await this.#seal();
      const { audit } = loadedPolicy().bundle.settings;
      const archive = await archiveDue(this.env.AUDIT_DB, archiveBucket(this.env), audit, head.seq, (segment) =>
        this.#recordMove(segment),
      );
      return { head, archive };
    });
  }

  /** The move's audit record, in an intake shard's chain: what left D1, for where, with which hashes. */
  #recordMove(segment: SegmentRow): Promise<void> {
    const { segment: number, key, first_seq, last_seq, records, bytes, sha256, hash } = segment;
    const record = decideRecord(
      {
        at: Date.now(),
        event: 'audit.archive',
        actor: 'tessera',
        target: `segment:${number}`,
        details: { segment: number, key, first_seq, last_seq, records, bytes, sha256, hash },
      },
      { decision: 'granted' },
      loadedPolicy().bundle.version,
    );
    return withinDeadline('audit intake', intakeStub(this.env, anyIntakeShard()).record(record), RECORD_DEADLINE_MS);
  }

  /** The anchored head: the last record sealed and its seal. */
  async head(): Promise<ChainHead> {
    return (await this.ctx.storage.get<ChainHead>(HEAD_KEY)) ?? { seq: 0, hash: GENESIS };
  }
}
