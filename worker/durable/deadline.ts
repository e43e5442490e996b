/**
 * A deadline for a call to something that may not answer (an object, the queue, D1, R2): one that does not
 * answer in time rejects, as one that fails does. The worker's stores turn that into a 503
 * (`stores/call.ts`); the objects and the audit path retry.
 */

/** `call`, or a rejection naming `what` once it has not answered in `deadlineMs`. */
export async function withinDeadline<T>(what: string, call: Promise<T>, deadlineMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${deadlineMs} ms`)), deadlineMs);
  });
  try {
    return await Promise.race([call, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
