/**
 * The signing key and JWKS as the worker sees them: from the `SigningKeys` Durable Object, cached in the
 * isolate until the key's window closes (so `/token` does not call the object per request), or imported
 * from the `SIGNING_KEY` secret when one is set. The only code that names the `SIGNING_KEYS` binding; every
 * call to the object is bounded by the store deadline, so a key store that does not answer refuses the
 * request instead of holding it.
 */
import { createLocalJWKSet, errors, importJWK, type JWK, type JWTVerifyGetKey } from 'jose';
import { SIGNING_ALG, type SigningKey } from '../core/access-token';
import { KeySourceError } from '../core/errors';
import type { PublishedJwks, SigningKeys } from '../keys/signing-keys';
import { callStore } from './call';

/** Refetch a cached key at least this often, so an isolate notices a key set replaced by hand. */
const MAX_KEY_CACHE_SECONDS = 300;

interface CachedKey {
  key: SigningKey;
  until: number;
}

interface ImportedKey {
  key: SigningKey;
  jwks: JWK[];
}

let cached: CachedKey | undefined;
let imported: { secret: string; key: Promise<ImportedKey> } | undefined;

function importSecret(secret: string): Promise<ImportedKey> {
  if (imported?.secret === secret) return imported.key;
  const key = (async () => {
    const jwk = JSON.parse(secret) as JWK;
    if (typeof jwk.kid !== 'string' || jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string') {
      throw new Error('SIGNING_KEY must be a private EC P-256 JWK with a kid');
    }
    const { d: _private, ...publicJwk } = jwk;
    const key = (await importJWK(jwk, SIGNING_ALG)) as CryptoKey;
    return { key: { kid: jwk.kid, key }, jwks: [{ ...publicJwk, alg: SIGNING_ALG, use: 'sig' }] };
  })();
  imported = { secret, key };
  return key;
}

function keysObject(env: Env): DurableObjectStub<SigningKeys> {
  return env.SIGNING_KEYS.get(env.SIGNING_KEYS.idFromName('global'));
}

/**
 * The key to sign with now, and whether the key store had to be asked for it (a round trip) or the isolate
 * had it.
 *
 * @throws {BrokerError} `store_unavailable` when the key store fails or does not answer in time: the caller
 *   refuses.
 */
export async function signingKey(env: Env, now: number): Promise<{ key: SigningKey; fromStore: boolean }> {
  if (env.SIGNING_KEY) return { key: (await importSecret(env.SIGNING_KEY)).key, fromStore: false };
  if (cached !== undefined && now < cached.until) return { key: cached.key, fromStore: false };
  const active = await callStore('signing_keys', () => keysObject(env).activeKey());
  const key = { kid: active.kid, key: (await importJWK(active.privateJwk, SIGNING_ALG)) as CryptoKey };
  cached = { key, until: Math.min(active.notAfter, now + MAX_KEY_CACHE_SECONDS) };
  return { key, fromStore: true };
}

/**
 * The published JWKS and until when it may be cached.
 *
 * @throws {BrokerError} `store_unavailable` when the key store fails or does not answer in time.
 */
export async function publishedJwks(env: Env): Promise<PublishedJwks> {
  if (env.SIGNING_KEY) {
    const { jwks } = await importSecret(env.SIGNING_KEY);
    return { keys: jwks, nextChange: Math.floor(Date.now() / 1000) + MAX_KEY_CACHE_SECONDS };
  }
  return callStore('signing_keys', async (): Promise<PublishedJwks> => await keysObject(env).jwks());
}

/** An unknown `kid` refetches the broker's JWKS at most this often (a forged kid costs one fetch). */
const VERIFY_REFETCH_MS = 5000;

interface VerificationKeys {
  getKey: JWTVerifyGetKey;
  fetchedAt: number;
  /** Epoch ms after which the set must be fetched again (the next rotation or removal). */
  until: number;
}

let verification: VerificationKeys | undefined;

async function loadVerificationKeys(env: Env): Promise<VerificationKeys> {
  let jwks: PublishedJwks;
  try {
    jwks = await publishedJwks(env);
  } catch (error) {
    throw new KeySourceError(`broker JWKS unavailable: ${String(error)}`, { cause: error });
  }
  verification = {
    getKey: createLocalJWKSet({ keys: jwks.keys }),
    fetchedAt: Date.now(),
    until: jwks.nextChange * 1000,
  };
  return verification;
}

/**
 * Keys to verify the broker's own access tokens (introspection, revocation, task completion), cached in
 * the isolate until the key set next changes. Throws {@link KeySourceError} when the keys cannot be had.
 */
export function accessTokenKeys(env: Env): JWTVerifyGetKey {
  return async (header, token) => {
    let keys =
      verification !== undefined && Date.now() < verification.until ? verification : await loadVerificationKeys(env);
    try {
      return await keys.getKey(header, token);
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey) || Date.now() - keys.fetchedAt < VERIFY_REFETCH_MS) throw error;
      keys = await loadVerificationKeys(env);
      return keys.getKey(header, token);
    }
  };
}
