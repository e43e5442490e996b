/**
 * The audit archive's bucket, as the archive and its readers use it: the only code that names the
 * `AUDIT_ARCHIVE` binding. Each call is bounded; one that fails or does not answer in time rejects, so an
 * archive run stops before it deletes anything, and a read refuses (503) rather than guess.
 */
import type { ArchiveBucket } from '../audit/archive';
import { DEAD_LETTER_PREFIX } from '../audit/writer';
import { hex } from '../core/hex';
import { callStore } from './call';

/** An upload of a segment (up to tens of MB) waits this long before it counts as failed. */
const PUT_DEADLINE_MS = 60_000;

function bounded<T>(what: string, call: () => Promise<T>, deadlineMs = PUT_DEADLINE_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer from R2 in ${deadlineMs} ms`)), deadlineMs);
  });
  return Promise.race([call(), deadline]).finally(() => clearTimeout(timer));
}

/**
 * The archive's objects: put with R2's own integrity check (SHA-256), get as bytes. A put of bytes the key
 * already holds is not made again: under a bucket lock rule an object cannot be overwritten, and a run that
 * failed after its upload is repeated with the same segment.
 */
export function archiveBucket(env: Env): ArchiveBucket {
  const bucket = env.AUDIT_ARCHIVE;
  return {
    put: async (key, body, sha256) => {
      await bounded(`put ${key}`, async () => {
        const held = await bucket.head(key);
        const checksum = held?.checksums.sha256;
        if (checksum !== undefined && hex(checksum) === sha256) return;
        await bucket.put(key, body, { sha256 });
      });
    },
    get: (key) =>
      bounded(`get ${key}`, async () => {
        const object = await bucket.get(key);
        return object === null ? null : new Uint8Array(await object.arrayBuffer());
      }),
  };
}

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
