/**
 * The optional revocation check: ask the broker's introspection endpoint (RFC 7662) whether a token is
 * still active, authenticated as this API (§2.1), and remember the answer for a few seconds.
 */
import { VerifyError } from './errors.js';

export interface IntrospectionOptions {
  /**
   * This API's introspection credential (`tessera_introspection.…`), which the broker's operator makes for
   * its audience. Sent with HTTP Basic, the audience as client id (RFC 6749 §2.3.1). Keep it in a secret
   * (`wrangler secret put`, an environment variable), never in code.
   */
  credential: string;
  /** How long an answer is reused, in seconds; default 5. A revocation reaches this verifier within it. */
  cacheSeconds?: number;
  /**
   * What to do when the endpoint does not answer: `refuse` (default, fail closed) or `accept` the token on
   * its signature alone. A credential the broker refuses is a configuration error either way.
   */
  onUnavailable?: 'refuse' | 'accept';
}

const DEFAULT_CACHE_SECONDS = 5;
const MAX_CACHED = 10_000;

/**
 * Checks the `introspection` option: absent, or an object with a credential.
 *
 * @throws {TypeError} for anything else (`introspection: true` included: the broker needs the credential).
 */
export function checkIntrospectionOptions(options: unknown): asserts options is IntrospectionOptions | undefined {
  if (options === undefined) return;
  const credential = (options as { credential?: unknown } | null)?.credential;
  if (typeof options !== 'object' || typeof credential !== 'string' || credential === '')
    throw new TypeError("introspection needs this API's credential: introspection: { credential }");
}

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

/** `Authorization: Basic` with the client id and password each form-encoded (RFC 6749 §2.3.1). */
function basicAuthorization(clientId: string, password: string): string {
  return `Basic ${btoa(`${encodeURIComponent(clientId)}:${encodeURIComponent(password)}`)}`;
}

async function introspect(
  endpoint: string,
  token: string,
  client: { audience: string; credential: string },
  fetchImpl: typeof fetch,
): Promise<boolean | 'credential_refused'> {
  const response = await fetchImpl(endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
      authorization: basicAuthorization(client.audience, client.credential),
    },
    body: new URLSearchParams({ token }),
  });
  if (response.status === 401) return 'credential_refused';
  if (!response.ok) throw new Error(`introspection answered ${response.status}`);
  const body = (await response.json()) as { active?: unknown };
  if (typeof body.active !== 'boolean') throw new Error('introspection answer has no active member');
  return body.active;
}

/**
 * Refuses a token the broker no longer considers active (revoked, its task finished, its agent suspended,
 * the kill switch engaged), asking as the API `audience`.
 *
 * @throws {VerifyError} `revoked`; `introspection_unavailable` when the endpoint fails and the options
 *   say to refuse.
 * @throws {TypeError} when the broker refuses the credential: the option is wrong, or not the audience's.
 */
export async function checkActive(
  endpoint: string | undefined,
  token: { raw: string; id: string; audience: string },
  options: IntrospectionOptions,
  now: number,
  fetchImpl: typeof fetch,
): Promise<void> {
  const cached = answers.get(token.id);
  let active = cached !== undefined && cached.until > now ? cached.active : undefined;
  if (active === undefined) {
    let answer: boolean | 'credential_refused';
    try {
      if (endpoint === undefined) throw new Error('the broker publishes no introspection_endpoint');
      answer = await introspect(
        endpoint,
        token.raw,
        { audience: token.audience, credential: options.credential },
        fetchImpl,
      );
    } catch (error) {
      if (options.onUnavailable === 'accept') return;
      throw new VerifyError('introspection_unavailable', `cannot introspect: ${String(error)}`, { cause: error });
    }
    if (answer === 'credential_refused')
      throw new TypeError(
        `the broker refused the introspection credential of ${token.audience}: check introspection.credential`,
      );
    active = answer;
    remember(token.id, active, now + (options.cacheSeconds ?? DEFAULT_CACHE_SECONDS), now);
  }
  if (!active) throw new VerifyError('revoked', 'the token is no longer active');
}
