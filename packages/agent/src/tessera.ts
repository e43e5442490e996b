/**
 * The agent's client for one broker: its attestation source, its DPoP policy (a key per task, one per
 * process, or none) and the operator's approval callback; `task()` starts a task.
 */
import type { AttestationSource } from './attestation.js';
import type { BrokerConnection } from './broker.js';
import { createDpopKey, type DpopKey, NonceStore } from './dpop.js';
import { type PendingApproval, Task } from './task.js';

/** Options of {@link createTessera}. */
export interface TesseraOptions {
  /** The broker's issuer URL (its `ISSUER`): where `/token` is, and the audience of every attestation. */
  broker: string | URL;
  /** How the agent proves who it is; asked anew for every exchange. */
  attestation: AttestationSource;
  /**
   * DPoP-bound tokens (RFC 9449), on by default: `'per-task'` (default) makes a non-extractable key for each
   * task, `'per-process'` one for this client, `{ key }` uses yours, `false` asks for Bearer tokens.
   */
  dpop?: 'per-task' | 'per-process' | { key: DpopKey } | false;
  /** Told when an action waits for a human's step-up approval: which approval, and what it asks for. */
  onApproval?: (pending: PendingApproval) => void | Promise<void>;
  /** Seconds before expiry at which a cached token is replaced; default 30. */
  refreshBefore?: number;
  /** The `fetch` to reach the broker and APIs with; default the global one. */
  fetch?: typeof fetch;
  /** The clock for token expiry, in ms since the epoch; default `Date.now`. */
  now?: () => number;
}

/** What a task is about: its description, and a justification where policy needs one. */
export interface TaskOptions {
  /** What the agent is about to do, in words (1 to 4096 characters). */
  description: string;
  /** Why, for actions whose grant needs a written justification. */
  justification?: string;
  /** The task's id; default a fresh UUID. */
  id?: string;
}

/** A client of one broker; make one with {@link createTessera}. */
export class Tessera {
  readonly #options: TesseraOptions;
  readonly #broker: BrokerConnection;
  #processKey: Promise<DpopKey> | undefined;

  constructor(options: TesseraOptions) {
    const url = new URL(options.broker).href.replace(/\/$/, '');
    if (options.refreshBefore !== undefined && !(options.refreshBefore >= 0))
      throw new TypeError('refreshBefore is a number of seconds, 0 or more');
    this.#options = options;
    this.#broker = { url, fetch: options.fetch ?? ((input, init) => fetch(input, init)), nonces: new NonceStore() };
  }

  #dpopKey(): Promise<DpopKey> | undefined {
    const { dpop = 'per-task' } = this.#options;
    if (dpop === false) return undefined;
    if (dpop === 'per-task') return createDpopKey();
    if (dpop === 'per-process') {
      this.#processKey ??= createDpopKey();
      return this.#processKey;
    }
    return Promise.resolve(dpop.key);
  }

  /**
   * Starts a task. Nothing is sent yet: the first `token()` or `fetch()` exchanges the attestation.
   *
   * @example
   * const task = await tessera.task({ description: 'Disable the account of a departed employee', justification: 'HR ticket 4711' });
   */
  async task(options: TaskOptions): Promise<Task> {
    if (typeof options.description !== 'string' || options.description === '')
      throw new TypeError('a task needs a description');
    return new Task(
      {
        broker: this.#broker,
        attestation: this.#options.attestation,
        dpop: await this.#dpopKey(),
        onApproval: this.#options.onApproval,
        refreshBefore: this.#options.refreshBefore ?? 30,
        now: this.#options.now ?? Date.now,
      },
      options.id ?? crypto.randomUUID(),
      options.description,
      options.justification,
    );
  }
}

/**
 * A client of the broker at `options.broker`, attesting with `options.attestation`.
 *
 * @example
 * import { createTessera, selfSigned } from '@tessera/agent';
 *
 * const tessera = createTessera({
 *   broker: 'https://tessera.example.com',
 *   attestation: selfSigned({ agent: 'demo-agent', key: { env: 'TESSERA_AGENT_KEY' } }),
 *   onApproval: ({ approvalId, scope }) => console.log(`waiting for approval ${approvalId} of ${scope}`),
 * });
 * await using task = await tessera.task({ description: 'Summarise ticket T-1234' });
 * const { accessToken } = await task.token({ audience: 'https://tickets.example.com', scope: 'tickets:read' });
 */
export function createTessera(options: TesseraOptions): Tessera {
  return new Tessera(options);
}
