/**
 * The optional revocation check: ask the broker's introspection endpoint (RFC 7662) whether a token is
 * still active, and remember the answer for a few seconds.
 */
import { VerifyError } from './errors.js';

export interface IntrospectionOptions {
  /** How long an answer is reused, in seconds; default 5. A revocation reaches this verifier within it. */
  cacheSeconds?: number;
  /**
   * What to do when the endpoint does not answer: `refuse` (default, fail closed) or `accept` the token on
   * its signature alone.
   */
  onUnavailable?: 'refuse' | 'accept';
}

const DEFAULT_CACHE_SECONDS = 5;
const MAX_CACHED = 10_000;

/** Answers by issuer and token id, in insertion order so the oldest goes first when full. */
const answers = new Map<string, { active: boolean; until: number }>();

function remember(jti: string, active: boolean, until: number, now: number) {
  if (answers.size >= MAX_CACHED) {
    for (const [key, answer] of answers) if (answer.until <= now) answers.delete(key);
    const oldest = answers.keys().next();
    if (answers.size >= MAX_CACHED && !oldest.done) answers.delete(oldest.value);
  }
  answers.set(jti, { active, until });
}

async function introspect(endpoint: string, token: string, fetchImpl: typeof fetch): Promise<boolean> {
  const response = await fetchImpl(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ token }),
  });
  if (!response.ok) throw new Error(`introspection answered ${response.status}`);
  const body = (await response.json()) as { active?: unknown };
  if (typeof body.active !== 'boolean') throw new Error('introspection answer has no active member');
  return body.active;
}

/**
 * Refuses a token the broker no longer considers active (revoked, its task finished, its agent suspended,
 * the kill switch engaged).
 *
 * @throws {VerifyError} `revoked`; `introspection_unavailable` when the endpoint fails and the options
 *   say to refuse.
 */
export async function checkActive(
  endpoint: string | undefined,
  token: { raw: string; id: string },
  options: IntrospectionOptions,
  now: number,
  fetchImpl: typeof fetch,
): Promise<void> {
  const cached = answers.get(token.id);
  let active = cached !== undefined && cached.until > now ? cached.active : undefined;
  if (active === undefined) {
    try {
      if (endpoint === undefined) throw new Error('the broker publishes no introspection_endpoint');
      active = await introspect(endpoint, token.raw, fetchImpl);
      remember(token.id, active, now + (options.cacheSeconds ?? DEFAULT_CACHE_SECONDS), now);
    } catch (error) {
      if (options.onUnavailable === 'accept') return;
      throw new VerifyError('introspection_unavailable', `cannot introspect: ${String(error)}`, { cause: error });
    }
  }
  if (!active) throw new VerifyError('revoked', 'the token is no longer active');
}
