import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { createLocalJWKSet, decodeProtectedHeader, errors, type JSONWebKeySet, jwtVerify } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { KeyRecord } from '../../worker/keys/rotation';
import { TTL_CEILING_SECONDS } from '../../worker/policy/bundle';
import { loadedPolicy } from '../../worker/policy/loaded';
import { ISSUER, TICKETS } from '../helpers/demo';
import { issue } from '../helpers/tokens';

const { settings } = loadedPolicy().bundle;
const PERIOD = settings.signingKeys.rotationPeriod;
const RETENTION = TTL_CEILING_SECONDS + settings.attestations.clockSkew;
const keysObject = () => env.SIGNING_KEYS.get(env.SIGNING_KEYS.idFromName('global'));

/** The stored key set: its windows, not the calendar, say when the next rotation is. */
function storedKeys(): Promise<KeyRecord[]> {
  return runInDurableObject(
    keysObject(),
    async (_instance, state) => (await state.storage.get<KeyRecord[]>('keys')) ?? [],
  );
}

async function jwks(): Promise<JSONWebKeySet> {
  return (await (await exports.default.fetch(`${ISSUER}/.well-known/jwks.json`)).json()) as JSONWebKeySet;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('signing key rotation', () => {
  // First in this file: storage is per file, so the key set does not exist yet.
  it('generates the first keys once, however many requests race for them', async () => {
    const all = await Promise.all(Array.from({ length: 8 }, () => jwks()));
    const kids = new Set(all.flatMap((set) => set.keys.map((key) => key.kid)));
    expect(kids.size).toBe(all[0]?.keys.length);
  });

  it('keeps a token verifiable across a rotation until it expires, then drops its key', async () => {
    // The key set was made at real time by the first test; the first key's window ends a period later.
    const initial = await jwks();
    expect(initial.keys).toHaveLength(2);
    const [firstKid, nextKid] = initial.keys.map((key) => key.kid);
    const first = (await storedKeys()).find((key) => key.kid === firstKid);
    if (first === undefined) throw new Error('the first key is not stored');
    expect(first.notAfter - first.notBefore).toBe(PERIOD);
    const rotation = first.notAfter * 1000;
    vi.useFakeTimers({ toFake: ['Date'] });

    // Just before the rotation: a 600 s token signed by the first key.
    vi.setSystemTime(rotation - 10_000);
    const { token: old } = await issue(undefined, 600);
    expect(decodeProtectedHeader(old).kid).toBe(firstKid);

    // The rotation alarm fires: the next key signs, the first stays published, a new next key appears.
    vi.setSystemTime(rotation + 1000);
    expect(await runDurableObjectAlarm(keysObject())).toBe(true);
    const rotated = await jwks();
    const kids = rotated.keys.map((key) => key.kid);
    expect(kids).toContain(firstKid);
    expect(kids).toContain(nextKid);
    expect(kids).toHaveLength(3);
    const { token: fresh } = await issue(undefined, 60);
    expect(decodeProtectedHeader(fresh).kid).toBe(nextKid);

    // The old token still verifies against the published JWKS while it is live.
    const verifyOld = () =>
      jwtVerify(old, createLocalJWKSet(rotated), { issuer: ISSUER, audience: TICKETS, currentDate: new Date() });
    await expect(verifyOld()).resolves.toBeDefined();

    // Once every token the first key signed has expired, its key leaves the JWKS.
    vi.setSystemTime(rotation + (RETENTION + 1) * 1000);
    await runDurableObjectAlarm(keysObject());
    const later = await jwks();
    expect(later.keys.map((key) => key.kid)).not.toContain(firstKid);
    await expect(
      jwtVerify(old, createLocalJWKSet(later), {
        issuer: ISSUER,
        audience: TICKETS,
        currentDate: new Date(rotation - 10_000),
      }),
    ).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey);
  });
});
