/**
 * Catches the {@link BrokerError} a call must throw, so a test can assert on its `code`, `reason` and `detail`.
 * Anything else (success, or another error type) fails the test.
 */
import { BrokerError } from '../../worker/core/errors';

function expectBrokerError(error: unknown): BrokerError {
  if (error instanceof BrokerError) return error;
  throw new Error(
    `expected a BrokerError, got ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`,
  );
}

/** The refusal a synchronous call throws. */
export function refusalOf(call: () => unknown): BrokerError {
  try {
    call();
  } catch (error) {
    return expectBrokerError(error);
  }
  throw new Error('expected a refusal, but the call succeeded');
}

/** The refusal a promise rejects with. */
export async function rejectionOf(promise: Promise<unknown>): Promise<BrokerError> {
  try {
    await promise;
  } catch (error) {
    return expectBrokerError(error);
  }
  throw new Error('expected a refusal, but the call succeeded');
}
