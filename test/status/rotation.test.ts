/**
 * A signing key rotation neither resurrects nor loses an entry: the entries live in the shards, and a list
 * is signed when it is served, by the key of the moment, which the JWKS publishes.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { decodeProtectedHeader } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { STATUS } from '../../worker/core/status-list';
import type { KeyRecord } from '../../worker/keys/rotation';
import { ISSUER } from '../helpers/demo';
import { issue } from '../helpers/tokens';
import { entryOf, forgetCached, readList } from './list';

const keysObject = () => env.SIGNING_KEYS.get(env.SIGNING_KEYS.idFromName('global'));

afterEach(() => {
  vi.useRealTimers();
});

describe('status lists across a signing key rotation', () => {
  it('keep every entry, signed by the new key once it signs', async () => {
    const revoked = await issue(undefined, 600);
    const live = await issue(undefined, 600);
    const revoke = await exports.default.fetch(`${ISSUER}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: revoked.token }),
    });
    expect(revoke.status).toBe(200);
    const signer = decodeProtectedHeader(revoked.token).kid;
    const keys = await runInDurableObject(
      keysObject(),
      async (_instance, state) => (await state.storage.get<KeyRecord[]>('keys')) ?? [],
    );
    const current = keys.find((key) => key.kid === signer);
    if (current === undefined) throw new Error('the signing key is not stored');

    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(current.notAfter * 1000 + 1000);
    expect(await runDurableObjectAlarm(keysObject())).toBe(true);

    const { list } = entryOf(revoked.token);
    await forgetCached(list);
    const response = await exports.default.fetch(`${ISSUER}/status/${list}`);
    expect(decodeProtectedHeader(await response.text()).kid).not.toBe(signer);
    await forgetCached(list);
    const { statuses } = await readList(list);
    expect(statuses[entryOf(revoked.token).idx]).toBe(STATUS.INVALID);
    expect(statuses[entryOf(live.token).idx]).toBe(STATUS.VALID);
  });
});
