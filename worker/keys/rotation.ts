/**
 * The signing-key schedule, as pure functions of the stored keys and the clock.
 *
 * Each key signs during one window `[notBefore, notAfter)` of `period` seconds. The next key exists (and
 * so is published in the JWKS) for a whole period before it signs; a retired key stays published for
 * `retention` seconds after its window closes, which is longer than any token it signed can live.
 */
import type { JWK } from 'jose';

export interface KeyRecord {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
  /** Epoch seconds: the key signs from `notBefore` until just before `notAfter`. */
  notBefore: number;
  notAfter: number;
}

export interface RotationConfig {
  period: number;
  /** How long a retired key stays published: the longest token TTL plus clock skew. */
  retention: number;
}

export interface KeyWindow {
  notBefore: number;
  notAfter: number;
}

export interface KeyPlan {
  keep: KeyRecord[];
  create: KeyWindow[];
}

/** The key that signs at `now`, if any. */
export function currentKey(keys: readonly KeyRecord[], now: number): KeyRecord | undefined {
  return keys.find((key) => key.notBefore <= now && now < key.notAfter);
}

/** Keys a verifier may still need at `now`: the next, the current and every retired key within retention. */
export function publishedKeys(keys: readonly KeyRecord[], now: number, config: RotationConfig): KeyRecord[] {
  return keys.filter((key) => now < key.notAfter + config.retention);
}

/**
 * What to keep and what to create so that at `now` there is a current key and a published next key.
 * After a long idle (no current key), a new current key starts at `now`.
 */
export function planKeys(keys: readonly KeyRecord[], now: number, config: RotationConfig): KeyPlan {
  const keep = publishedKeys(keys, now, config);
  const create: KeyWindow[] = [];
  const current = currentKey(keep, now);
  const window = current ?? { notBefore: now, notAfter: now + config.period };
  if (current === undefined) create.push(window);
  if (!keep.some((key) => key.notBefore === window.notAfter)) {
    create.push({ notBefore: window.notAfter, notAfter: window.notAfter + config.period });
  }
  return { keep, create };
}

/** When the schedule next changes: a rotation, or a retired key leaving the JWKS. */
export function nextChange(keys: readonly KeyRecord[], now: number, config: RotationConfig): number | undefined {
  const times = keys.flatMap((key) => [key.notAfter, key.notAfter + config.retention]).filter((time) => time > now);
  return times.length === 0 ? undefined : Math.min(...times);
}
