/**
 * What the `/token` pipeline's stages hand on (see `pipeline.ts`): one request on its way, what each stage
 * established, and the refusal a stage comes to, tagged with whether the agent's object recorded it already.
 */
import type { VerifiedDpopProof } from '@tessera/verify';
import type { AccessTokenClaims, AccessTokenInput, SigningKey } from '../core/access-token';
import type { VerifiedAttestation } from '../core/attestation';
import { BrokerError } from '../core/errors';
import type { ExchangeDecision } from '../core/exchange';
import type { TokenRequest } from '../core/token-request';
import type { Lease } from '../stores/kill-switch';
import type { ExchangeDeps, ExchangeInput, Timing } from './pipeline';

/** One request on its way: its input, the stores, what was asked for at once, the round trips it waited for. */
export interface Exchange {
  input: ExchangeInput;
  deps: ExchangeDeps;
  nowSeconds: number;
  /** The kill switch lease, or the refusal it came to; awaited just before the decision needs it. */
  leased: Promise<{ lease: Lease; roundTripMs?: number } | BrokerError>;
  /** The signing key, or `signing_unavailable`; awaited just before a token is signed. */
  keyed: Promise<{ key: SigningKey; fromStore: boolean } | BrokerError>;
  timings: Timing[];
}

/** Steps 1 and 2: the request as parsed, with its task's id (one is made up when it names none) and hash. */
export interface Parsed {
  kind: 'parsed';
  request: TokenRequest;
  taskId: string;
  taskHash: string;
}

/** What a refusal's record can name: what the stages had established when it came. */
export interface Reached {
  parsed?: Parsed;
  caller?: VerifiedAttestation;
  /** `approval:<id>`: the approval polled, or opened. */
  target?: string;
}

/** Step 3: the caller, its proof, and the approval it polls, if any. */
export interface Verified extends Reached {
  kind: 'verified';
  parsed: Parsed;
  caller: VerifiedAttestation;
  proof: VerifiedDpopProof | undefined;
  approvalId: string | undefined;
}

/** Steps 4 to 6: what the agent's object is to commit, with the lease the call must answer within. */
export type Ready = Omit<Verified, 'kind'> & { lease: Lease; decision: ExchangeDecision };

/** Policy refused, or an approval is opened: answered once the object has recorded it. */
export type Answering = Ready & { kind: 'answering'; answer: BrokerError };

/** Granted and signed: the token leaves once the object has recorded the grant. */
export type Signed = Ready & { kind: 'signed'; claims: AccessTokenClaims; accessToken: string };

/** Granted once the object collects the approval: signed then, naming who approved. */
export type Collecting = Ready & {
  kind: 'collecting';
  approvalId: string;
  minted: AccessTokenInput;
  claims: AccessTokenClaims;
  key: SigningKey;
};

export type Prepared = Answering | Signed | Collecting;

/**
 * A refusal, and who records it: the agent's object did with its decision, or the pipeline does, from what
 * the stages had reached.
 */
export type Refused = { kind: 'refused'; refusal: BrokerError; dpopNonce?: string } & (
  | { recorded: true }
  | { recorded: false; reached: Reached }
);

/** A refusal the pipeline records, with what the stages had reached. */
export function refused(refusal: BrokerError, reached: Reached, dpopNonce?: string): Refused {
  return { kind: 'refused', refusal, recorded: false, reached, ...(dpopNonce !== undefined && { dpopNonce }) };
}

/** A refusal a check threw, as a tagged result; anything else is unexpected and goes on to the one catch. */
export function caught(error: unknown, reached: Reached): Refused {
  if (error instanceof BrokerError) return refused(error, reached);
  throw error;
}
