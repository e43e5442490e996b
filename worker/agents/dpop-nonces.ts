/**
 * The DPoP nonces an agent's object hands out (RFC 9449 §8), in its memory: after an eviction, the agent's
 * next proof is asked for the new one.
 */

/** A nonce is handed out for this long, and accepted for up to twice as long (RFC 9449 §8). */
const DPOP_NONCE_LIFETIME_SECONDS = 300;

/** The nonce handed out now and the one before it, rotated every {@link DPOP_NONCE_LIFETIME_SECONDS}. */
export class DpopNonces {
  #nonces: { current: string; previous: string | undefined; issuedAt: number } | undefined;

  /**
   * Whether a proof's `nonce` is one the object accepts at `now` (epoch seconds): the current one or the one
   * before; with the nonce to hand out.
   */
  check(nonce: string | undefined, now: number): { accepted: boolean; current: string } {
    const { current, previous } = this.#rotated(now);
    return { accepted: nonce !== undefined && (nonce === current || nonce === previous), current };
  }

  #rotated(now: number): { current: string; previous: string | undefined } {
    const nonces = this.#nonces;
    const age = nonces === undefined ? Number.POSITIVE_INFINITY : now - nonces.issuedAt;
    if (nonces !== undefined && age < DPOP_NONCE_LIFETIME_SECONDS) return nonces;
    // The one handed out until now stays good for one more lifetime, not for however long nobody asked.
    const previous = age < 2 * DPOP_NONCE_LIFETIME_SECONDS ? nonces?.current : undefined;
    this.#nonces = { current: crypto.randomUUID(), previous, issuedAt: now };
    return this.#nonces;
  }
}
