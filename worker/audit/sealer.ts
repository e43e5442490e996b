/**
 * The `AuditSealer` object (one, `global`): seals new audit records into the hash chain, one batch after
 * another, and keeps the chain's head in its own storage as the anchor `GET /admin/audit/verify` checks.
 * It runs on the cron trigger and on demand, never on a decision's path.
 */

import { MeteredObject } from '../durable/meter';
import { type ChainHead, GENESIS, sealAfter } from './chain';

const HEAD_KEY = 'head';

export class AuditSealer extends MeteredObject {
  /** Seals every record not sealed yet; returns the head. Calls are serialised. */
  async seal(): Promise<ChainHead> {
    return this.ctx.blockConcurrencyWhile(async () => {
      const head = (await this.ctx.storage.get<ChainHead>(HEAD_KEY)) ?? { seq: 0, hash: GENESIS };
      return sealAfter(this.env.AUDIT_DB, head, (next) => this.ctx.storage.put(HEAD_KEY, next));
    });
  }

  /** The anchored head: the last record sealed and its seal. */
  async head(): Promise<ChainHead> {
    return (await this.ctx.storage.get<ChainHead>(HEAD_KEY)) ?? { seq: 0, hash: GENESIS };
  }
}
