/**
 * `GET /status/:list`: the status list tokens every access token names (draft-ietf-oauth-status-list §8),
 * signed with the broker's current key (verifiable with its JWKS), `typ: statuslist+jwt`, served as
 * `application/statuslist+jwt` to any origin. The colo's cache keeps a list {@link EDGE_SECONDS} (`s-maxage`)
 * and a verifier one `ttl` (`max-age`), so a change reaches an offline verifier within `ttl` + 1 s of its
 * answer. While the kill switch is engaged every entry that is not INVALID reads SUSPENDED: the cache key
 * carries the switch's version, so an engage or a release is seen within one `ttl` (and one lease) of it.
 */
import { Hono } from 'hono';
import { SignJWT } from 'jose';
import { SIGNING_ALG } from '../core/access-token';
import { refuse } from '../core/errors';
import {
  encodeStatusList,
  STATUS,
  STATUS_LIST_TYP,
  statusListTokenClaims,
  TESSERA_STATUS_BITS,
} from '../core/status-list';
import type { AppEnv } from '../http/app-env';
import { brokerIssuer } from '../http/issuer';
import { loadedPolicy } from '../policy/loaded';
import { killSwitchLease } from '../stores/kill-switch';
import { signingKey } from '../stores/signing-keys';
import { allStatusLists, statusListEntries } from '../stores/status-lists';

/** The media type of a status list token (§8.1). */
const MEDIA_TYPE = 'application/statuslist+jwt';
/** A list token is valid this long past its `iat`: a verifier that cannot refetch keeps it one ttl more. */
const EXP_TTLS = 2;

/**
 * How long the colo's cache serves a list: every verifier behind it then fetches a copy at most this old, and
 * the colo's shards are asked once a second a list at most, however many verifiers ask.
 */
const EDGE_SECONDS = 1;

const CORS = { 'Access-Control-Allow-Origin': '*' } as const;

/**
 * The list as the client takes it: gzipped when it accepts gzip (the runtime compresses a body whose
 * `Content-Encoding` says gzip as it sends it), as it is otherwise. The cached copy stays plain.
 */
function encoded(response: Response, acceptEncoding: string | undefined): Response {
  if (!/\bgzip\b/i.test(acceptEncoding ?? '')) return response;
  const headers = new Headers(response.headers);
  headers.set('Content-Encoding', 'gzip');
  headers.set('Vary', 'Accept-Encoding');
  return new Response(response.body, { status: response.status, headers });
}

export const statusListRoutes = new Hono<AppEnv>();

/**
 * How long a verifier (and the colo's cache) may use a list (`status_lists.ttl`): a revocation reaches an
 * offline verifier within it, and a verifier fetches each live list once per this many seconds.
 */
const ttlSeconds = () => loadedPolicy().bundle.settings.statusLists.ttl;

/**
 * The Status List Aggregation (§9): every list's URI, so a verifier can fetch them ahead of the tokens that
 * name them. Advertised as `status_list_aggregation_endpoint` in the metadata (§9.1); cached like a list.
 */
statusListRoutes.get('/status', async function statusLists(c) {
  const issuer = brokerIssuer(c.env);
  // From the colo's cache when it can: a miss asks all 16 shards.
  const cacheKey = new Request(`${issuer}/status`);
  const hit = await caches.default.match(cacheKey);
  if (hit !== undefined) return hit;
  const lists = await allStatusLists(c.env);
  const response = c.json({ status_lists: lists.map((list) => `${issuer}/status/${list}`) }, 200, {
    'Cache-Control': `public, max-age=${ttlSeconds()}`,
    ...CORS,
  });
  c.executionCtx.waitUntil(caches.default.put(cacheKey, response.clone()));
  return response;
});

statusListRoutes.get('/status/:list', async function statusList(c) {
  const { env } = c;
  const list = c.req.param('list');
  const uri = `${brokerIssuer(env)}/status/${list}`;
  const background = (work: Promise<unknown>) => c.executionCtx.waitUntil(work);
  const { lease } = await killSwitchLease(env, background);
  const cache = caches.default;
  const cacheKey = new Request(`${uri}?kill-switch=${lease.version}`);
  const acceptEncoding = c.req.header('accept-encoding');
  const hit = await cache.match(cacheKey);
  if (hit !== undefined) return encoded(hit, acceptEncoding);

  const entries = await statusListEntries(env, list);
  if (entries === undefined) {
    throw refuse('unknown_target', { list }, { description: 'no such status list', headers: CORS });
  }
  const statuses = new Uint8Array(entries.size);
  // The kill switch: every live token is suspended while it is engaged; INVALID stays INVALID.
  if (lease.engaged) statuses.fill(STATUS.SUSPENDED);
  for (const { idx, status } of entries.changed) {
    statuses[idx] = status === STATUS.INVALID ? STATUS.INVALID : STATUS.SUSPENDED;
  }
  const iat = Math.floor(Date.now() / 1000);
  const { key } = await signingKey(env, iat);
  const claims = statusListTokenClaims({
    sub: uri,
    iat,
    exp: iat + EXP_TTLS * ttlSeconds(),
    ttl: ttlSeconds(),
    list: await encodeStatusList(statuses, TESSERA_STATUS_BITS),
  });
  const token = await new SignJWT({ ...claims })
    .setProtectedHeader({ alg: SIGNING_ALG, typ: STATUS_LIST_TYP, kid: key.kid })
    .sign(key.key);
  const response = new Response(token, {
    headers: {
      'Content-Type': MEDIA_TYPE,
      'Cache-Control': `public, max-age=${ttlSeconds()}, s-maxage=${EDGE_SECONDS}`,
      ...CORS,
    },
  });
  background(cache.put(cacheKey, response.clone()));
  return encoded(response, acceptEncoding);
});
