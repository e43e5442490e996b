/**
 * The audit archive's bucket as the sealer's archive runs use it (`AUDIT_ARCHIVE`). Each call is bounded;
 * one that fails or does not answer in time rejects, so an archive run stops before it deletes anything.
 */
import { hex } from '../core/hex';
import { withinDeadline } from '../durable/deadline';
import type { ArchiveBucket } from './archive';

/** An upload of a segment (up to tens of MB) waits this long before it counts as failed. */
const PUT_DEADLINE_MS = 60_000;

const bounded = <T>(what: string, call: () => Promise<T>): Promise<T> =>
  withinDeadline(`R2 ${what}`, call(), PUT_DEADLINE_MS);

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
