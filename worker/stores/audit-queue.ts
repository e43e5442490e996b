/**
 * The way out of a deciding object's outbox: the audit queue its records are sent to, and D1, asked which of
 * a chain's records it holds. The only code that names the `AUDIT_QUEUE` binding; each call is bounded, and
 * one that fails or does not answer in time rejects, so the records stay and are sent again.
 */
import type { AuditTransport } from '../audit/outbox';
import type { ChainHead } from '../audit/record';

/** A send or a D1 read waits this long before it counts as failed. */
const DEADLINE_MS = 10_000;

async function bounded<T>(what: string, call: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${DEADLINE_MS} ms`)), DEADLINE_MS);
  });
  try {
    return await Promise.race([call, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

export function auditTransport(env: Env): AuditTransport {
  return {
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
