/**
 * A deadline for the calls the audit path makes from its objects (the queue, D1, R2, an intake shard): one
 * that does not answer in time rejects, as one that fails does, and the caller's retry takes over.
 */

/** `call`, or a rejection naming `what` once it has not answered in `deadlineMs`. */
export async function withinDeadline<T>(what: string, call: Promise<T>, deadlineMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${deadlineMs} ms`)), deadlineMs);
  });
  try {
    return await Promise.race([call, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
