/**
 * The audit archive as routes see it: its bucket (`audit/archive-bucket.ts`, which the sealer's archive runs
 * use too) and the dead letters. Each call is bounded; one that fails or does not answer in time rejects,
 * and a read refuses (503) rather than guess.
 */
import { DEAD_LETTER_PREFIX } from '../audit/writer';
import { callStore } from './call';

export { archiveBucket } from '../audit/archive-bucket';

/** Dead letters: audit messages D1 kept refusing, kept in R2: how many, and when the oldest died. */
export function deadLetters(env: Env): Promise<{ count: number; oldestAt: number | null }> {
  return callStore('audit_archive', async () => {
    let count = 0;
    let oldestAt: number | null = null;
    let cursor: string | undefined;
    do {
      const page = await env.AUDIT_ARCHIVE.list({ prefix: DEAD_LETTER_PREFIX, cursor });
      count += page.objects.length;
      for (const object of page.objects)
        oldestAt = Math.min(oldestAt ?? Number.POSITIVE_INFINITY, object.uploaded.getTime());
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor !== undefined);
    return { count, oldestAt };
  });
}
