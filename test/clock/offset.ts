/**
 * A clock ahead of the real one, for `npm run test:next-year`: the suite runs a year ahead, so that a test
 * which only passes around some calendar date fails today instead of on that date.
 *
 * `shiftClock` replaces `Date` in the isolate (or Node process) it runs in. The worker, its Durable Objects
 * and the worker tests share one isolate, so `test/clock/setup.ts` moves the clock for all of them; D1 and
 * workerd itself keep the real one. `vi.useFakeTimers({ toFake: ['Date'] })` starts from the shifted clock
 * and `vi.useRealTimers()` returns to it, so tests that fake time work unchanged.
 */

declare module 'vitest' {
  export interface ProvidedContext {
    /** How far ahead of the real clock the tests run, in milliseconds (vitest.config.ts). */
    clockOffsetMs: number;
  }
}

/**
 * Replaces `Date` with one that reads the real clock plus `offsetMs`; parsing and formatting are unchanged.
 * Self-contained (it refers to nothing outside its body), so that its source can be run as a prelude in the
 * local broker's bundle. Installs once per isolate: setup files run again for each file that shares one.
 */
export function shiftClock(offsetMs: number): void {
  const SHIFTED = Symbol.for('tessera.test.clockOffsetMs');
  const holder = globalThis as unknown as Record<symbol, number | undefined>;
  if (offsetMs === 0 || holder[SHIFTED] !== undefined) return;
  const RealDate = Date;
  const now = () => RealDate.now() + offsetMs;
  globalThis.Date = new Proxy(RealDate, {
    // `new Date()` is now; `new Date(x)` is x, as ever.
    construct: (target, args, newTarget) => Reflect.construct(target, args.length === 0 ? [now()] : args, newTarget),
    // `Date()` called as a function returns the current time as a string.
    apply: () => new RealDate(now()).toString(),
    get: (target, property, receiver) => (property === 'now' ? now : Reflect.get(target, property, receiver)),
  });
  holder[SHIFTED] = offsetMs;
}
