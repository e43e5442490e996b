/**
 * A task: the tokens the agent holds for one piece of work, cached per audience and scope and refreshed
 * with a fresh attestation before they expire; the step-up poll; `fetch` with the token (and its DPoP
 * proof), and the MCP transport's `fetch` built on it; completion, which kills every token of the task.
 */
import type { AttestationSource } from './attestation.js';
import { type BrokerConnection, completeTask, exchange, type HeldToken, revokeToken } from './broker.js';
import { asksForNonce, type DpopKey, dpopProof } from './dpop.js';
import { AgentError, abortedError } from './errors.js';
import { createMcpFetch, type McpFetch, type McpFetchOptions } from './mcp.js';

/** What a token is asked for. */
export interface TokenRequest {
  /** The one API the token is for, as `policies/apis.yaml` names it. */
  audience: string;
  /** The actions, space-separated or as a list. */
  scope: string | readonly string[];
  /** Seconds a new token should live (`requested_ttl`), capped by policy; a cached token is returned whatever its lifetime. */
  ttl?: number;
  /** Cancels the exchange, and the wait for a step-up approval. */
  signal?: AbortSignal;
}

/** A token of the task. */
export interface TaskToken extends HeldToken {
  audience: string;
  /** The actions the broker granted. */
  scope: string;
  /** When it expires, in ms since the epoch, by the agent's clock. */
  expiresAt: number;
}

/** A step-up approval the agent waits for: what {@link TesseraOptions.onApproval} is told. */
export interface PendingApproval {
  approvalId: string;
  taskId: string;
  description: string;
  justification: string | undefined;
  audience: string;
  scope: string;
  /** Seconds until the approval expires undecided. */
  expiresIn: number;
  /** Seconds between polls. */
  interval: number;
}

/** What a task shares with the client that made it. */
export interface TaskContext {
  broker: BrokerConnection;
  attestation: AttestationSource;
  dpop: DpopKey | undefined;
  onApproval: ((pending: PendingApproval) => void | Promise<void>) | undefined;
  refreshBefore: number;
  now: () => number;
}

/** Options of {@link Task.fetch}: a `fetch` init plus which token to attach. */
export interface TaskFetchInit extends RequestInit {
  /** The actions the call needs. */
  scope: string | readonly string[];
  /** The API's audience; default the URL's origin. */
  audience?: string;
}

/** An exchange under way for one audience and scope, shared by every caller waiting for it. */
interface Pending {
  promise: Promise<TaskToken>;
  /** Stops the exchange, and its wait for an approval, once every waiter has given up. */
  controller: AbortController;
  waiters: number;
}

interface Entry {
  pending: Pending | undefined;
  token: TaskToken | undefined;
}

/** OpenID CIBA §11: after `slow_down`, the interval grows by at least five seconds. */
const SLOW_DOWN_SECONDS = 5;

/** Waits `seconds`, or rejects with `aborted` as soon as `signal` fires. */
function sleep(seconds: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortedError(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortedError(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, seconds * 1000);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Waits for a shared exchange until it settles or the caller's `signal` fires: a caller that gives up stops
 * only its own wait, and the last one to give up stops the exchange.
 */
function wait(pending: Pending, signal: AbortSignal | undefined): Promise<TaskToken> {
  pending.waiters++;
  return new Promise((resolve, reject) => {
    let waiting = true;
    const leave = () => {
      if (!waiting) return false;
      waiting = false;
      signal?.removeEventListener('abort', onAbort);
      pending.waiters--;
      return true;
    };
    function onAbort() {
      if (!leave() || signal === undefined) return;
      if (pending.waiters === 0) pending.controller.abort(signal.reason);
      reject(abortedError(signal));
    }
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    pending.promise.then(
      (token) => leave() && resolve(token),
      (error: unknown) => leave() && reject(error),
    );
  });
}

function normalScope(scope: string | readonly string[]): string {
  const actions = typeof scope === 'string' ? scope.split(' ') : [...scope];
  return [...new Set(actions.filter((action) => action !== ''))].sort().join(' ');
}

/**
 * One task of the agent, made by {@link Tessera.task}. Every token it gets names the task's id and
 * description; `complete()` (or leaving an `await using` block) ends it.
 *
 * @example
 * await using task = await tessera.task({ description: 'Summarise ticket T-1234 and comment' });
 * const response = await task.fetch('https://tickets.example.com/tickets/T-1234', { scope: 'tickets:read' });
 */
export class Task {
  readonly #context: TaskContext;
  readonly #entries = new Map<string, Entry>();
  #completed = false;

  constructor(
    context: TaskContext,
    /** The task's id, sent as `task.id` with every exchange. */
    readonly id: string,
    readonly description: string,
    readonly justification: string | undefined,
  ) {
    this.#context = context;
  }

  /**
   * A token for this task on `audience` with `scope`: the cached one while it has more than `refreshBefore`
   * seconds to live, else a new one from a fresh attestation. An action that needs a human's approval waits
   * for it, polling as the broker says.
   *
   * @example
   * const { accessToken, tokenType } = await task.token({ audience: 'https://tickets.example.com', scope: 'tickets:read' });
   */
  async token(request: TokenRequest): Promise<TaskToken> {
    if (this.#completed) throw new AgentError('task_completed', 'the task is completed');
    const scope = normalScope(request.scope);
    const key = `${request.audience}\n${scope}`;
    const entry = this.#entries.get(key) ?? { pending: undefined, token: undefined };
    this.#entries.set(key, entry);
    const { token } = entry;
    if (token !== undefined && token.expiresAt - this.#context.refreshBefore * 1000 > this.#context.now()) return token;
    const fresh = await wait(entry.pending ?? this.#start(entry, request.audience, scope, request.ttl), request.signal);
    entry.token = fresh;
    return fresh;
  }

  /** Starts the exchange for `entry`, which callers share until it settles or every one of them gives up. */
  #start(entry: Entry, audience: string, scope: string, ttl: number | undefined): Pending {
    const controller = new AbortController();
    const pending: Pending = {
      controller,
      waiters: 0,
      promise: this.#obtain(audience, scope, ttl, controller.signal),
    };
    const release = () => {
      if (entry.pending === pending) entry.pending = undefined;
    };
    pending.promise.then(release, release);
    controller.signal.addEventListener('abort', release, { once: true });
    entry.pending = pending;
    return pending;
  }

  async #obtain(audience: string, scope: string, ttl: number | undefined, signal: AbortSignal): Promise<TaskToken> {
    const { broker, attestation, dpop, onApproval } = this.#context;
    let approvalId: string | undefined;
    let interval = 0;
    for (;;) {
      if (signal.aborted) throw abortedError(signal);
      const attested = await attestation.attest({ audience: broker.url, signal });
      const result = await exchange(broker, {
        attestation: attested,
        audience,
        scope,
        task: { description: this.description, id: this.id, justification: this.justification },
        ttl,
        approvalId,
        dpop,
        signal,
      });
      if (result.kind === 'token')
        return {
          accessToken: result.accessToken,
          tokenType: result.tokenType,
          audience,
          scope: result.scope,
          expiresAt: this.#context.now() + result.expiresIn * 1000,
        };
      if (result.kind === 'slow_down') interval += SLOW_DOWN_SECONDS;
      else {
        if (approvalId === undefined)
          await onApproval?.({
            approvalId: result.approvalId,
            taskId: this.id,
            description: this.description,
            justification: this.justification,
            audience,
            scope,
            expiresIn: result.expiresIn,
            interval: result.interval,
          });
        approvalId = result.approvalId;
        interval = Math.max(interval, result.interval);
      }
      await sleep(interval, signal);
    }
  }

  /**
   * `fetch` with this task's token for the URL's API: `Authorization: DPoP` and a proof when the token is
   * bound (retried once when the API asks for a nonce, RFC 9449 §9), else `Bearer`.
   *
   * @example
   * await task.fetch('https://tickets.example.com/tickets/T-1234/comments', {
   *   method: 'POST',
   *   scope: 'tickets:comment',
   *   body: JSON.stringify({ text: 'Summary: ...' }),
   * });
   */
  async fetch(url: string | URL, init: TaskFetchInit): Promise<Response> {
    const { scope, audience, ...rest } = init;
    const held = await this.token({
      audience: audience ?? new URL(url).origin,
      scope,
      ...(rest.signal != null && { signal: rest.signal }),
    });
    const { broker, dpop } = this.#context;
    const method = rest.method ?? 'GET';
    const call = async (): Promise<Response> => {
      const headers = new Headers(rest.headers);
      headers.set('authorization', `${held.tokenType} ${held.accessToken}`);
      if (held.tokenType === 'DPoP' && dpop !== undefined)
        headers.set(
          'dpop',
          await dpopProof(dpop, { method, url, accessToken: held.accessToken, nonce: broker.nonces.get(url) }),
        );
      // On its own, not as a method of `broker`: the Workers runtime's fetch refuses any other `this`.
      const { fetch: fetchImpl } = broker;
      return fetchImpl(url, { ...rest, method, headers });
    };
    const response = await call();
    const retriable = !(rest.body instanceof ReadableStream);
    if (held.tokenType === 'DPoP' && asksForNonce(response) && retriable) {
      broker.nonces.remember(url, response);
      return call();
    }
    broker.nonces.remember(url, response);
    return response;
  }

  /**
   * A `fetch` for an MCP client transport (the SDK's `StreamableHTTPClientTransport` takes it as `fetch`):
   * every request to the MCP server carries this task's token for `audience` (DPoP-bound as {@link fetch}
   * does), starting with `scope`. On `403` with `error="insufficient_scope"` (MCP authorization, "Scope
   * Challenge Handling"), it asks the broker for the actions held plus the challenge's `scope`, for this
   * task (waiting for a step-up approval when policy needs one), and retries the request once.
   *
   * @example
   * const transport = new StreamableHTTPClientTransport(new URL('https://mcp.example.com/mcp'), {
   *   fetch: task.mcpFetch({ audience: 'https://iam.example.com', scope: 'iam:read-user' }),
   * });
   * await new Client({ name: 'offboarding', version: '1.0.0' }).connect(transport);
   *
   * @throws {TypeError} when `audience` is not a URL or `scope` names no action.
   */
  mcpFetch(options: McpFetchOptions): McpFetch {
    return createMcpFetch(this, options);
  }

  /**
   * Revokes the cached token for `audience` and `scope` (RFC 7009), if the task holds one; the next
   * `token()` gets a new one.
   */
  async revoke(request: Pick<TokenRequest, 'audience' | 'scope'>): Promise<void> {
    const key = `${request.audience}\n${normalScope(request.scope)}`;
    const token = this.#entries.get(key)?.token;
    this.#entries.delete(key);
    if (token !== undefined) await revokeToken(this.#context.broker, token, this.#context.dpop);
  }

  /**
   * Ends the task: the broker revokes every token of it, and this task gets no more. Needs one live token
   * of the task to authenticate with; a task whose tokens have all expired has nothing left to kill. Safe
   * to call twice.
   *
   * @example
   * try {
   *   await task.fetch(url, { scope: 'tickets:comment', method: 'POST', body });
   * } finally {
   *   await task.complete();
   * }
   */
  async complete(): Promise<void> {
    if (this.#completed) return;
    this.#completed = true;
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    await Promise.allSettled(entries.map((entry) => entry.pending?.promise));
    const now = this.#context.now();
    const live = entries.map((entry) => entry.token).find((token) => token !== undefined && token.expiresAt > now);
    if (live !== undefined) await completeTask(this.#context.broker, this.id, live, this.#context.dpop);
  }

  /** `await using task = ...` completes the task when the block is left. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.complete();
  }
}
