/**
 * The agent's one error type. Every failure carries a stable `code` to branch on and log; a refusal by the
 * broker also keeps its OAuth `error`, HTTP status and `error_description`.
 */

/** Why the agent did not get what it asked for. Stable: branch on these, never on messages. */
export type AgentErrorCode =
  /** The broker found the request malformed, or the task is already finished (`invalid_request`). */
  | 'invalid_request'
  /** The attestation was refused: signature, issuer, audience, age, replay, unknown agent (`invalid_grant`). */
  | 'invalid_grant'
  /** The audience is not granted to this agent (`invalid_target`). */
  | 'invalid_target'
  /** An action is not granted, or a justification is missing where policy needs one (`invalid_scope`). */
  | 'invalid_scope'
  /** The agent is suspended, or the kill switch is engaged (`access_denied` outside an approval). */
  | 'access_denied'
  /** An approver denied the step-up approval (`access_denied` while polling). */
  | 'approval_denied'
  /** The step-up approval expired before anyone decided (`expired_token`). */
  | 'approval_expired'
  /** The broker's per-agent rate limit (`slow_down`, 429); `retryAfter` says when to try again. */
  | 'rate_limited'
  /** The broker could not answer (`temporarily_unavailable`, a 5xx, or no answer at all). */
  | 'broker_unavailable'
  /** The broker, or an API, refused the DPoP proof even after a fresh nonce. */
  | 'dpop_refused'
  /** The attestation source could not produce an attestation (a file missing, an issuer not answering). */
  | 'attestation_unavailable'
  /** The broker answered something this client does not understand. */
  | 'unexpected_response'
  /** The caller's `AbortSignal` fired. */
  | 'aborted'
  /** The task was completed: it gets no more tokens. */
  | 'task_completed';

/** What an {@link AgentError} may carry besides its code. */
export interface AgentErrorDetails {
  /** The HTTP status of the broker's answer, when there was one. */
  status?: number;
  /** The broker's OAuth `error`, when it refused. */
  error?: string;
  /** The broker's `error_description`, kept as it sent it. */
  description?: string;
  /** The step-up approval this error ends, when it ends one. */
  approvalId?: string;
  /** Seconds to wait before trying again (`Retry-After`), for `rate_limited`. */
  retryAfter?: number;
  cause?: unknown;
}

/**
 * A failure of the agent client: a refusal by the broker, a source or broker that did not answer, a
 * cancelled wait. The message is one line of words, never a stack trace.
 *
 * @example
 * try {
 *   await task.token({ audience: 'https://iam.example.com', scope: 'iam:disable-user' });
 * } catch (error) {
 *   if (error instanceof AgentError && error.code === 'approval_denied') console.warn('denied', error.description);
 *   else throw error;
 * }
 */
export class AgentError extends Error {
  override readonly name = 'AgentError';
  readonly status: number | undefined;
  readonly error: string | undefined;
  readonly description: string | undefined;
  readonly approvalId: string | undefined;
  readonly retryAfter: number | undefined;

  constructor(
    readonly code: AgentErrorCode,
    message: string,
    details: AgentErrorDetails = {},
  ) {
    super(details.description === undefined ? message : `${message}: ${details.description}`, {
      cause: details.cause,
    });
    this.status = details.status;
    this.error = details.error;
    this.description = details.description;
    this.approvalId = details.approvalId;
    this.retryAfter = details.retryAfter;
  }
}

/** The error for a signal that fired: `aborted`, with the signal's reason as its cause. */
export function abortedError(signal: AbortSignal): AgentError {
  return new AgentError('aborted', 'the wait was cancelled', { cause: signal.reason });
}
