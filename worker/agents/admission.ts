/**
 * The checks an agent's object makes of every `/token` request before it commits anything: suspended?
 * attestation replayed? DPoP nonce current? proof replayed? task finished? rate limited? In this order, and
 * with one storage read for all of them.
 */
import type { Admission, ExchangeRefusal } from '../core/exchange';
import { DpopNonces } from './dpop-nonces';
import { RateBucket } from './rate-bucket';
import type { ReplayMarks } from './replay-marks';
import type { Revocations } from './revocations';

/** A request admitted (no refusal) or refused, with the DPoP nonce to hand out when the policy asks for one. */
export interface AdmissionResult {
  refusal?: ExchangeRefusal;
  dpopNonce?: string;
}

/** The admission of one agent's object: its stored state through its parts, its bucket and nonces in memory. */
export class AdmissionGate {
  readonly #revocations: Revocations;
  readonly #marks: ReplayMarks;
  readonly #bucket = new RateBucket();
  readonly #nonces = new DpopNonces();

  constructor(revocations: Revocations, marks: ReplayMarks) {
    this.#revocations = revocations;
    this.#marks = marks;
  }

  /**
   * The checks every exchange passes, in order, at `now` (epoch seconds); no refusal when admitted.
   *
   * A replay is refused before the rate limit and takes nothing from the agent's bucket, on purpose. Whoever
   * replays holds an attestation the agent has used, not the agent's key: charging the bucket would let them
   * starve the agent of tokens (a lockout for the price of a copied attestation), and a replay refused as
   * `rate_limited` would no longer say it was a replay. Nor would a limit spare the object any work: the call
   * is made either way. What a replay flood could cost is records, and those are sampled per attestation.
   */
  admit(admission: Admission, now: number): AdmissionResult {
    if (this.#revocations.status.suspended) return { refusal: { reason: 'suspended' } };
    const remembered = this.#marks.remembered(admission, Math.floor(now));
    if (remembered.replayed) return { refusal: { reason: 'replayed' } };
    const { dpop } = admission;
    let withNonce: { dpopNonce?: string } = {};
    if (dpop?.requireNonce) {
      const nonce = this.#nonces.check(dpop.nonce, now);
      withNonce = { dpopNonce: nonce.current };
      if (!nonce.accepted) return { refusal: { reason: 'dpop_nonce', dpopNonce: nonce.current }, ...withNonce };
    }
    if (remembered.proofReplayed) return { refusal: { reason: 'dpop_replayed' }, ...withNonce };
    if (remembered.taskFinished) return { refusal: { reason: 'task_finished' }, ...withNonce };
    const retryAfter = this.#bucket.take(admission.rateLimit, now);
    if (retryAfter !== undefined) return { refusal: { reason: 'rate_limited', retryAfter }, ...withNonce };
    return withNonce;
  }
}
