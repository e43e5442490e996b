/**
 * Calls to durable state on a request path, bounded in time. A call that throws or does not answer in
 * time is a broker fault: the request is refused with 503 and nothing is issued.
 */
import { refuse } from '../core/errors';
import { withinDeadline } from '../durable/deadline';

/** How long a request waits for a Durable Object before refusing with 503. */
const STORE_DEADLINE_MS = 3000;

/**
 * @throws {BrokerError} `store_unavailable` (503) naming the store, when the call fails or is too slow.
 */
export async function callStore<T>(store: string, call: () => Promise<T>, deadlineMs = STORE_DEADLINE_MS): Promise<T> {
  try {
    return await withinDeadline(store, call(), deadlineMs);
  } catch (error) {
    throw refuse('store_unavailable', { store, message: String(error) }, { cause: error });
  }
}
