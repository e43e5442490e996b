/**
 * The `AuditWriter` object, as the objects that forward records to it see it. The only code that names the
 * `AUDIT_WRITER` binding.
 */
import type { RecordWriter } from '../audit/outbox';
import type { WriteOutcome, WriterStats } from '../audit/writer';

/** A forwarding call waits this long for D1 before the batch counts as failed (and is sent again later). */
const WRITE_DEADLINE_MS = 30_000;

function writer(env: Env) {
  return env.AUDIT_WRITER.get(env.AUDIT_WRITER.idFromName('global'));
}

/** Sends records to D1 through the writer; resolves once D1 has committed them. */
export function recordWriter(env: Env): RecordWriter {
  return async (records) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer from the writer in ${WRITE_DEADLINE_MS} ms`)),
        WRITE_DEADLINE_MS,
      );
    });
    let outcome: WriteOutcome;
    try {
      outcome = await Promise.race([writer(env).write(records), deadline]);
    } finally {
      clearTimeout(timer);
    }
    if (!outcome.written) throw new Error(outcome.error);
  };
}

/** What the writer has done since it first ran: D1 write queries and records written. */
export function writerStats(env: Env): Promise<WriterStats> {
  return writer(env).stats();
}
