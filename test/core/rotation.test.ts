import { describe, expect, it } from 'vitest';
import {
  currentKey,
  type KeyPlan,
  type KeyRecord,
  type KeyWindow,
  nextChange,
  planKeys,
  publishedKeys,
  type RotationConfig,
} from '../../worker/keys/rotation';

const DAY = 86_400;
/** The broker's own numbers: a daily key, retired keys kept for the 3600-second TTL ceiling plus 30 s skew. */
const CONFIG: RotationConfig = { period: DAY, retention: 3630 };
const T0 = Math.floor(Date.now() / 1000);

/** A stored key for a window; its kid names the window's start, so plans read plainly. */
function key({ notBefore, notAfter }: KeyWindow): KeyRecord {
  const kid = `k${notBefore}`;
  return { kid, privateJwk: { kty: 'EC', kid, d: 'private' }, publicJwk: { kty: 'EC', kid }, notBefore, notAfter };
}

/** What the signing-keys Durable Object stores after carrying out a plan. */
function apply(plan: KeyPlan): KeyRecord[] {
  return [...plan.keep, ...plan.create.map(key)].sort((a, b) => a.notBefore - b.notBefore);
}

const kids = (keys: readonly KeyRecord[]) => keys.map((k) => k.kid);

/** The key set right after first use at T0: current [T0, T0+DAY) and next [T0+DAY, T0+2 DAY). */
const firstKeys = () => apply(planKeys([], T0, CONFIG));

describe('planKeys', () => {
  it('creates a current key starting now and a next key for the following period on first use', () => {
    expect(planKeys([], T0, CONFIG)).toEqual({
      keep: [],
      create: [
        { notBefore: T0, notAfter: T0 + DAY },
        { notBefore: T0 + DAY, notAfter: T0 + 2 * DAY },
      ],
    });
  });

  it('changes nothing while the current key signs and the next one is published', () => {
    const keys = firstKeys();
    for (const now of [T0, T0 + 1, T0 + DAY - 1]) {
      expect(planKeys(keys, now, CONFIG), `at T0+${now - T0}`).toEqual({ keep: keys, create: [] });
    }
  });

  it('at the window boundary makes the next key current and plans a new next key', () => {
    const keys = firstKeys();
    const plan = planKeys(keys, T0 + DAY, CONFIG);
    expect(kids(plan.keep)).toEqual([`k${T0}`, `k${T0 + DAY}`]);
    expect(plan.create).toEqual([{ notBefore: T0 + 2 * DAY, notAfter: T0 + 3 * DAY }]);
    expect(currentKey(apply(plan), T0 + DAY)?.kid).toBe(`k${T0 + DAY}`);
  });

  it('drops a retired key once its retention has passed', () => {
    const rotated = apply(planKeys(firstKeys(), T0 + DAY, CONFIG));
    const before = planKeys(rotated, T0 + DAY + CONFIG.retention - 1, CONFIG);
    expect(kids(before.keep)).toContain(`k${T0}`);
    const after = planKeys(rotated, T0 + DAY + CONFIG.retention, CONFIG);
    expect(kids(after.keep)).toEqual([`k${T0 + DAY}`, `k${T0 + 2 * DAY}`]);
    expect(after.create).toEqual([]);
  });

  it('after an idle longer than every retention starts afresh with a current key at now', () => {
    const now = T0 + 10 * DAY + 17;
    expect(planKeys(firstKeys(), now, CONFIG)).toEqual({
      keep: [],
      create: [
        { notBefore: now, notAfter: now + DAY },
        { notBefore: now + DAY, notAfter: now + 2 * DAY },
      ],
    });
  });

  it('after an idle just past the last window keeps that key published but starts the new current key at now', () => {
    const keys = firstKeys();
    const now = T0 + 2 * DAY + 60;
    const plan = planKeys(keys, now, CONFIG);
    expect(kids(plan.keep)).toEqual([`k${T0 + DAY}`]);
    expect(plan.create).toEqual([
      { notBefore: now, notAfter: now + DAY },
      { notBefore: now + DAY, notAfter: now + 2 * DAY },
    ]);
  });

  it('never plans two keys that sign at the same time', () => {
    let keys: KeyRecord[] = [];
    for (let now = T0; now < T0 + 5 * DAY; now += 3 * 3600 + 1) {
      keys = apply(planKeys(keys, now, CONFIG));
      const signing = keys.filter((k) => k.notBefore <= now && now < k.notAfter);
      expect(signing, `at T0+${now - T0}`).toHaveLength(1);
      expect(
        keys.some((k) => k.notBefore === signing[0]?.notAfter),
        `next key at T0+${now - T0}`,
      ).toBe(true);
    }
  });
});

describe('currentKey', () => {
  it('is the key whose window contains now, notBefore inclusive and notAfter exclusive', () => {
    const keys = firstKeys();
    expect(currentKey(keys, T0)?.kid).toBe(`k${T0}`);
    expect(currentKey(keys, T0 + DAY - 1)?.kid).toBe(`k${T0}`);
    expect(currentKey(keys, T0 + DAY)?.kid).toBe(`k${T0 + DAY}`);
  });

  it('is undefined before the first window and after the last', () => {
    const keys = firstKeys();
    expect(currentKey(keys, T0 - 1)).toBeUndefined();
    expect(currentKey(keys, T0 + 2 * DAY)).toBeUndefined();
    expect(currentKey([], T0)).toBeUndefined();
  });
});

describe('publishedKeys', () => {
  it('publishes the next key a whole period before it signs', () => {
    const keys = firstKeys();
    expect(kids(publishedKeys(keys, T0, CONFIG))).toEqual([`k${T0}`, `k${T0 + DAY}`]);
    expect(currentKey(keys, T0)?.kid).not.toBe(`k${T0 + DAY}`);
  });

  it('keeps a retired key published until notAfter + retention, and not from that second on', () => {
    const rotated = apply(planKeys(firstKeys(), T0 + DAY, CONFIG));
    const retiredUntil = T0 + DAY + CONFIG.retention;
    expect(kids(publishedKeys(rotated, retiredUntil - 1, CONFIG))).toContain(`k${T0}`);
    expect(kids(publishedKeys(rotated, retiredUntil, CONFIG))).not.toContain(`k${T0}`);
  });

  it('keeps a retired key long enough to verify the longest token it signed', () => {
    const rotated = apply(planKeys(firstKeys(), T0 + DAY, CONFIG));
    const lastSigned = T0 + DAY - 1;
    const expiresAt = lastSigned + 3600;
    expect(kids(publishedKeys(rotated, expiresAt + 30, CONFIG))).toContain(`k${T0}`);
  });
});

describe('nextChange', () => {
  it('is the end of the current window when no key is retired', () => {
    expect(nextChange(firstKeys(), T0 + 5, CONFIG)).toBe(T0 + DAY);
  });

  it('is the removal of a retired key when that comes before the next rotation', () => {
    const rotated = apply(planKeys(firstKeys(), T0 + DAY, CONFIG));
    expect(nextChange(rotated, T0 + DAY, CONFIG)).toBe(T0 + DAY + CONFIG.retention);
  });

  it('moves on to the next rotation once the retired key is gone', () => {
    const rotated = apply(planKeys(firstKeys(), T0 + DAY, CONFIG));
    const later = apply(planKeys(rotated, T0 + DAY + CONFIG.retention, CONFIG));
    expect(nextChange(later, T0 + DAY + CONFIG.retention, CONFIG)).toBe(T0 + 2 * DAY);
  });

  it('is strictly in the future', () => {
    const keys = firstKeys();
    expect(nextChange(keys, T0 + DAY - 1, CONFIG)).toBe(T0 + DAY);
    expect(nextChange(keys, T0 + DAY, CONFIG)).toBe(T0 + DAY + CONFIG.retention);
  });

  it('is undefined when there is nothing left to change', () => {
    expect(nextChange([], T0, CONFIG)).toBeUndefined();
    expect(nextChange(firstKeys(), T0 + 2 * DAY + CONFIG.retention, CONFIG)).toBeUndefined();
  });
});
