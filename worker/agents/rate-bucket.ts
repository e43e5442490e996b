/**
 * An agent's rate limit: a token bucket in the object's memory. An evicted object starts again with a full
 * bucket, which errs towards availability by at most one burst.
 */
import type { RateLimit } from '../policy/bundle';

/** The bucket of one agent's object. */
export class RateBucket {
  /** Tokens left at `at` (epoch seconds); undefined until the first take: a full bucket. */
  #bucket: { tokens: number; at: number } | undefined;

  /** Takes one request from the bucket at `now` (epoch seconds), or says how many seconds until one is there. */
  take(limit: RateLimit, now: number): number | undefined {
    const perSecond = limit.perMinute / 60;
    const previous = this.#bucket ?? { tokens: limit.burst, at: now };
    const tokens = Math.min(limit.burst, previous.tokens + (now - previous.at) * perSecond);
    if (tokens < 1) {
      this.#bucket = { tokens, at: now };
      return Math.max(1, Math.ceil((1 - tokens) / perSecond));
    }
    this.#bucket = { tokens: tokens - 1, at: now };
    return undefined;
  }
}
