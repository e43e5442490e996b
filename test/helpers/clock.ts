/** Time in the tests: now in epoch seconds, and a fake `Date` that only moves forward. */
import { afterEach, beforeEach, vi } from 'vitest';

/** The time in epoch seconds (the fake time while `Date` is faked). */
export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** A fake `Date` that never goes back, even across tests: each test starts it 5 s past where it stood (or later). */
export interface ForwardClock {
  /** The time it shows, in epoch milliseconds. */
  readonly ms: number;
  /** Moves the clock `seconds` on. */
  advance(seconds: number): void;
  /** Sets the clock to `ms`, in epoch milliseconds. */
  set(ms: number): void;
}

/** Fakes `Date` in each test of the calling file, `leadMs` ahead of real time; call before the file's `beforeEach`. */
export function useForwardClock(leadMs = 0): ForwardClock {
  let ms = 0;
  const set = (to: number): void => {
    ms = to;
    vi.setSystemTime(ms);
  };
  beforeEach(() => {
    const from = Math.max(ms, Date.now() + leadMs) + 5_000;
    vi.useFakeTimers({ toFake: ['Date'] });
    set(from);
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  return {
    get ms() {
      return ms;
    },
    advance: (seconds) => set(ms + seconds * 1000),
    set,
  };
}
