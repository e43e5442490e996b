/**
 * The status check of a token that names a status list (draft-ietf-oauth-status-list §8): fetch the list,
 * verify it with the broker's keys, read the token's entry. Lists are cached by a {@link StatusLists}.
 */
import { type JWTVerifyGetKey, jwtVerify } from 'jose';
import { isCanonicalJwt } from './compact.js';
import { VerifyError } from './errors.js';
import { decodeStatusList, isStatusBits, STATUS, type StatusBits } from './status-list.js';

/** The `status` claim of a token that names a status list (§6.1): its entry `idx` in the list at `uri`. */
export interface StatusReference {
  status_list: { idx: number; uri: string };
}

export interface StatusListsOptions {
  /**
   * What to do when a token names a list that cannot be fetched or does not verify: `refuse` (default,
   * fail closed, `status_unavailable`) or `accept` the token on its signature alone.
   */
  onUnavailable?: 'refuse' | 'accept';
  /** Milliseconds one fetch of a list may take; default 5,000. */
  timeout?: number;
  /**
   * Seconds a list is used at most, when that is shorter than its `ttl`: an API that must see a revocation
   * sooner fetches more often (the broker's edge serves a copy at most a second old). Default: the `ttl`.
   */
  maxAge?: number;
}

/** A verified list: its statuses and until when (epoch seconds) it is used. */
interface CachedList {
  statuses: Uint8Array;
  until: number;
}

/** How a list is fetched and verified: the token's key source and algorithms, the verifier's fetch and clock. */
export interface StatusSource {
  issuer: string;
  keys: JWTVerifyGetKey;
  algorithms: string[];
  clockTolerance: number;
  fetch: typeof fetch;
  now: Date;
}

const DEFAULT_TIMEOUT_MS = 5_000;
/** How long a list without `ttl` is used (§5.1 leaves it to the verifier), at most until its `exp`. */
const DEFAULT_TTL_SECONDS = 60;
const MAX_CACHED = 1_000;
const MEDIA_TYPE = 'application/statuslist+jwt';

/**
 * The status lists a verifier has fetched, each used for its `ttl` (at most until its `exp`), and the
 * fetches under way: concurrent verifications of tokens on one list wait for one fetch. Create one per
 * API and pass it to every verification, as jose's `createRemoteJWKSet` is created once; `requireAgent`
 * creates its own.
 *
 * @example
 * const statusLists = new StatusLists({ timeout: 2_000 });
 * const claims = await verifyAgentToken(token, { issuer, audience, statusLists });
 */
export class StatusLists {
  /** What to do with a token whose list cannot be had. */
  readonly onUnavailable: 'refuse' | 'accept';
  readonly #timeout: number;
  readonly #maxAge: number;
  readonly #cached = new Map<string, CachedList>();
  readonly #pending = new Map<string, Promise<CachedList>>();

  /** @throws {TypeError} when `onUnavailable` or `timeout` is not one the verifier can use. */
  constructor(options: StatusListsOptions = {}) {
    const { onUnavailable = 'refuse', timeout = DEFAULT_TIMEOUT_MS, maxAge = Number.POSITIVE_INFINITY } = options;
    if (onUnavailable !== 'refuse' && onUnavailable !== 'accept')
      throw new TypeError("statusLists onUnavailable is 'refuse' or 'accept'");
    if (!Number.isFinite(timeout) || timeout <= 0) throw new TypeError('statusLists timeout is a positive number');
    if (!(maxAge > 0)) throw new TypeError('statusLists maxAge is a positive number of seconds');
    this.onUnavailable = onUnavailable;
    this.#timeout = timeout;
    this.#maxAge = maxAge;
  }

  /**
   * The statuses of the list at `uri`: cached, or fetched once for every caller that asks meanwhile.
   * For `verifyAgentToken`; an API only creates the instance and passes it.
   *
   * @throws {VerifyError} `status_unavailable` when the list cannot be fetched or does not verify.
   */
  async statuses(uri: string, source: StatusSource): Promise<Uint8Array> {
    // One cache for every issuer the instance serves: a list is only ever read with the keys it was verified with.
    const key = `${source.issuer} ${uri}`;
    const seconds = Math.floor(source.now.getTime() / 1000);
    const cached = this.#cached.get(key);
    if (cached !== undefined && cached.until > seconds) return cached.statuses;
    let pending = this.#pending.get(key);
    if (pending === undefined) {
      pending = fetchList(uri, source, this.#timeout).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
      pending
        .then((list) => this.#remember(key, { ...list, until: Math.min(list.until, seconds + this.#maxAge) }, seconds))
        .catch(() => undefined);
    }
    return (await pending).statuses;
  }

  #remember(key: string, list: CachedList, now: number) {
    this.#cached.delete(key);
    if (this.#cached.size >= MAX_CACHED) {
      for (const [cachedKey, cached] of this.#cached) if (cached.until <= now) this.#cached.delete(cachedKey);
      const oldest = this.#cached.keys().next();
      if (this.#cached.size >= MAX_CACHED && !oldest.done) this.#cached.delete(oldest.value);
    }
    this.#cached.set(key, list);
  }
}

function unavailable(uri: string, reason: unknown): VerifyError {
  return new VerifyError('status_unavailable', `cannot use the status list ${uri}: ${String(reason)}`, {
    cause: reason,
  });
}

async function fetchList(uri: string, source: StatusSource, timeout: number): Promise<CachedList> {
  let jwt: string;
  // Called on its own, not as `source.fetch(...)`: the Workers runtime's fetch refuses any other `this`.
  const { fetch: fetchImpl } = source;
  try {
    const response = await fetchImpl(uri, {
      headers: { accept: MEDIA_TYPE },
      signal: AbortSignal.timeout(timeout),
    });
    if (!response.ok) throw new Error(`the list answered ${response.status}`);
    jwt = (await response.text()).trim();
  } catch (error) {
    throw unavailable(uri, error);
  }
  return verifyList(jwt, uri, source);
}

/** §8.3: the list token's signature by the broker's key, `typ`, `sub` equal to the URI, `iat`, `exp`, `ttl`. */
async function verifyList(jwt: string, uri: string, source: StatusSource): Promise<CachedList> {
  if (!isCanonicalJwt(jwt)) throw unavailable(uri, 'the list is not a JWT in canonical compact form');
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(jwt, source.keys, {
      typ: 'statuslist+jwt',
      algorithms: source.algorithms,
      subject: uri,
      requiredClaims: ['sub', 'iat'],
      clockTolerance: source.clockTolerance,
      currentDate: source.now,
    }));
  } catch (error) {
    throw unavailable(uri, error);
  }
  const now = Math.floor(source.now.getTime() / 1000);
  const {
    iat,
    exp,
    ttl,
    status_list: list,
  } = payload as { iat: number; exp?: number; ttl?: unknown; status_list?: unknown };
  if (iat > now + source.clockTolerance) throw unavailable(uri, 'the list is issued in the future');
  if (ttl !== undefined && !(typeof ttl === 'number' && Number.isInteger(ttl) && ttl > 0))
    throw unavailable(uri, 'the list has an invalid ttl');
  const claim = list as { bits?: unknown; lst?: unknown } | undefined;
  if (typeof claim !== 'object' || claim === null || !isStatusBits(claim.bits) || typeof claim.lst !== 'string')
    throw unavailable(uri, 'the list has no valid status_list claim');
  const statuses = await decodeStatusList({ bits: claim.bits as StatusBits, lst: claim.lst });
  return { statuses, until: Math.min(now + (ttl ?? DEFAULT_TTL_SECONDS), exp ?? Number.POSITIVE_INFINITY) };
}

/**
 * The token's `status` claim when it names a status list; undefined when it has none (or names only
 * another mechanism, which this verifier does not know).
 *
 * @throws {VerifyError} `malformed` when `status.status_list` is not an `idx` (a non-negative integer)
 *   and a `uri` (an absolute URL).
 */
export function statusReference(status: unknown): StatusReference | undefined {
  if (status === undefined) return undefined;
  if (typeof status !== 'object' || status === null)
    throw new VerifyError('malformed', 'the status claim is not an object');
  const reference = (status as { status_list?: unknown }).status_list as { idx?: unknown; uri?: unknown } | undefined;
  if (reference === undefined) return undefined;
  const { idx, uri } = reference ?? {};
  if (!Number.isSafeInteger(idx) || (idx as number) < 0 || typeof uri !== 'string' || !URL.canParse(uri))
    throw new VerifyError('malformed', 'the status_list claim needs an idx and a uri');
  return { status_list: { idx: idx as number, uri } };
}

/**
 * §8.3 step 5-6: the token's entry is VALID. A list that cannot be had refuses the token, unless
 * `lists.onUnavailable` is `accept`.
 *
 * @throws {VerifyError} `revoked` (INVALID), `suspended` (SUSPENDED), `unknown_status` (another value, or no
 *   entry at `idx`), `status_unavailable` (no list that verifies).
 */
export async function checkStatus(reference: StatusReference, lists: StatusLists, source: StatusSource) {
  const { idx, uri } = reference.status_list;
  let statuses: Uint8Array;
  try {
    statuses = await lists.statuses(uri, source);
  } catch (error) {
    if (error instanceof VerifyError && error.code === 'status_unavailable' && lists.onUnavailable === 'accept') return;
    throw error;
  }
  const status = statuses[idx];
  switch (status) {
    case STATUS.VALID:
      return;
    case STATUS.INVALID:
      throw new VerifyError('revoked', `the status list ${uri} says INVALID at ${idx}`);
    case STATUS.SUSPENDED:
      throw new VerifyError('suspended', `the status list ${uri} says SUSPENDED at ${idx}`);
    case undefined:
      throw new VerifyError('unknown_status', `the status list ${uri} has no entry ${idx}`);
    default:
      throw new VerifyError('unknown_status', `the status list ${uri} says ${status} at ${idx}`);
  }
}
