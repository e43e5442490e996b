/**
 * The clock the suite runs on: the real one, or `clockOffsetMs` ahead of it under `npm run test:next-year`
 * (test/clock/setup.ts). D1 runs in workerd, outside the test isolate, so its clock is the real one.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, inject, it, vi } from 'vitest';
import { nowSeconds } from '../helpers/clock';

/** The real clock in epoch seconds, as SQLite in D1 reads it. */
async function d1Now(): Promise<number> {
  const row = await env.AUDIT_DB.prepare('SELECT unixepoch() AS now').first<{ now: number }>();
  if (row === null) throw new Error('D1 returned no row');
  return row.now;
}

const offsetSeconds = inject('clockOffsetMs') / 1000;

describe('the test clock', () => {
  it('runs the configured offset ahead of the real clock', async () => {
    expect(Math.abs(nowSeconds() - (await d1Now()) - offsetSeconds)).toBeLessThanOrEqual(5);
  });

  it('is where fake timers start and where they return', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      expect(Math.abs(nowSeconds() - (await d1Now()) - offsetSeconds)).toBeLessThanOrEqual(5);
      vi.setSystemTime(0);
      expect(Date.now()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
    expect(Math.abs(nowSeconds() - (await d1Now()) - offsetSeconds)).toBeLessThanOrEqual(5);
  });

  it('moves new Date() and Date() with Date.now(), and leaves parsing alone', () => {
    expect(Math.abs(Date.parse(new Date().toISOString()) - Date.now())).toBeLessThan(5_000);
    expect(Math.abs(Date.parse(Date()) - Date.now())).toBeLessThan(5_000);
    expect(new Date(0).toISOString()).toBe('1970-01-01T00:00:00.000Z');
    expect(Date.parse('1970-01-01T00:00:01Z')).toBe(1_000);
    const later = Date.now() + 86_400_000;
    expect(Date.parse(new Date(later).toISOString())).toBe(later);
    expect(new Date() instanceof Date).toBe(true);
  });
});
