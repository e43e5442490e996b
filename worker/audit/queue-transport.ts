/**
 * How a deciding object's outbox reaches D1 ({@link auditTransport}): its records go to the `AUDIT_QUEUE`
 * binding, whose consumer (`audit/writer.ts`) writes them, and D1 is asked which of a chain's records it
 * holds. Each call is bounded: one that fails or does not answer in time rejects, and the records stay in
 * their object, which sends again what D1 lacks a minute later.
 */
import { withinDeadline } from '../durable/deadline';
import type { AuditTransport } from './outbox';
import type { ChainHead } from './record';

/** A send or a D1 read waits this long before it counts as failed. */
const DEADLINE_MS = 10_000;
/** How long a record waits for others to travel with it. */
export const SEND_DELAY_MS = 50;

/** `call`, or a rejection naming `what` once it has not answered in {@link DEADLINE_MS}. */
export function bounded<T>(what: string, call: Promise<T>): Promise<T> {
  return withinDeadline(what, call, DEADLINE_MS);
}

/** The transport of an object's outbox: the audit queue to send, D1 to ask what it holds. */
export function auditTransport(env: Env): AuditTransport {
  return {
    sendDelayMs: SEND_DELAY_MS,
    send: async (body) => {
      await bounded('audit queue', env.AUDIT_QUEUE.send(body, { contentType: 'text' }));
    },
    held: async (chain, after, upTo, limit) => {
      const [held, archived] = await bounded(
        'D1',
        env.AUDIT_DB.batch<ChainHead>([
          env.AUDIT_DB.prepare(
            `SELECT chain_seq AS seq, chain_hash AS hash FROM audit_events
             WHERE chain = ? AND chain_seq > ? AND chain_seq <= ? ORDER BY chain_seq LIMIT ?`,
          ).bind(chain, after, upTo, limit),
          env.AUDIT_DB.prepare('SELECT seq, hash FROM audit_archive_heads WHERE chain = ?').bind(chain),
        ]),
      );
      return { rows: held?.results ?? [], archived: archived?.results[0] ?? null };
    },
  };
}
