/** Status lists as a verifier reads them: a token's entry, and the list served for it, verified and decoded. */
import { exports } from 'cloudflare:workers';
import { createLocalJWKSet, decodeJwt, type JWTPayload, jwtVerify } from 'jose';
import { expect } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { decodeStatusList, type StatusListClaim } from '../../worker/core/status-list';
import { ISSUER } from '../helpers/demo';
import { postJsonTo } from '../helpers/requests';

/** A token's `status.status_list`, and the id of its list. */
export function entryOf(token: string): { idx: number; uri: string; list: string } {
  const { status } = decodeJwt(token) as { status?: { status_list?: { idx: number; uri: string } } };
  const reference = status?.status_list;
  if (reference === undefined) throw new Error('the token names no status list');
  const list = reference.uri.slice(`${ISSUER}/status/`.length);
  return { ...reference, list };
}

/** `POST path` as the demo admin, with a reason (and any other `fields`): a revoke, a suspend, a resume. */
export const adminPost = (path: string, reason = 'incident INC-42', fields: Record<string, unknown> = {}) =>
  postJsonTo(path, { reason, ...fields }, { authorization: `Bearer ${creds.admin}` });

/** Engages or releases the global kill switch as the demo admin. */
export function setKillSwitch(engaged: boolean, reason = 'incident drill'): Promise<Response> {
  return exports.default.fetch(`${ISSUER}/admin/kill-switch`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${creds.admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ engaged, reason }),
  });
}

async function killSwitchVersion(): Promise<number> {
  const response = await exports.default.fetch(`${ISSUER}/admin/kill-switch`, {
    headers: { authorization: `Bearer ${creds.admin}` },
  });
  return ((await response.json()) as { version: number }).version;
}

/** Forgets the colo's cached copy of `list`, so the next read is the list as its shard holds it now. */
export async function forgetCached(list: string): Promise<void> {
  const version = await killSwitchVersion();
  await caches.default.delete(new Request(`${ISSUER}/status/${list}?kill-switch=${version}`));
}

/** `GET /status/<list>`, verified with the broker's JWKS as a verifier would, and its entries decoded. */
export async function readList(list: string): Promise<{ statuses: Uint8Array; payload: JWTPayload }> {
  const response = await exports.default.fetch(`${ISSUER}/status/${list}`);
  expect(response.status, await response.clone().text()).toBe(200);
  expect(response.headers.get('content-type')).toBe('application/statuslist+jwt');
  expect(response.headers.get('access-control-allow-origin')).toBe('*');
  const jwks = await (await exports.default.fetch(`${ISSUER}/.well-known/jwks.json`)).json<{ keys: [] }>();
  const { payload } = await jwtVerify(await response.text(), createLocalJWKSet(jwks), {
    typ: 'statuslist+jwt',
    algorithms: ['ES256'],
  });
  expect(payload.sub).toBe(`${ISSUER}/status/${list}`);
  return { statuses: await decodeStatusList(payload.status_list as StatusListClaim), payload };
}

/** The status the list serves now for `token` (the cached copy forgotten first). */
export async function statusOf(token: string): Promise<number> {
  const { list, idx } = entryOf(token);
  await forgetCached(list);
  const { statuses } = await readList(list);
  return statuses[idx] as number;
}
