/**
 * What the `/token` pipeline (`pipeline.ts`) is given, and what its stages hand on: one request on its way,
 * what each stage established, and the refusal a stage comes to, tagged with whether the agent's object
 * recorded it already.
 */
import type { VerifiedDpopProof } from '@tessera/verify';
import type { RefusalStores } from '../audit/refusals';
import type { AccessTokenClaims, AccessTokenInput, SigningKey } from '../core/access-token';
import type { KeyResolver, VerifiedAttestation } from '../core/attestation';
import { BrokerError } from '../core/errors';
import type { ExchangeDecision } from '../core/exchange';
import type { PolicyEngine } from '../core/policy';
import type { TokenRequest } from '../core/token-request';
import type { PolicyBundle } from '../policy/bundle';
import type { AgentStore } from '../stores/agents';
import type { Lease } from '../stores/kill-switch';
import type { StatusEntry } from '../stores/status-lists';

/** Where a request came from, recorded with its decision. */
export interface Origin {
  /** Epoch ms at which the request arrived. */
  at: number;
  ip: string | null;
  colo: string | null;
  userAgent: string | null;
}

/**
 * What the pipeline reads and calls: the stores and the policy, passed in so tests can fake each. A refusal
 * the agent's object did not record goes to `agents.record`, `recordInIntake` or `recordUnverified`, as
 * `worker/audit/refusals.ts` says.
 */
export interface ExchangeDeps extends RefusalStores {
  issuer: string;
  bundle: PolicyBundle;
  engine: PolicyEngine;
  keys: KeyResolver;
  agents: Pick<AgentStore, 'exchange' | 'record' | 'releaseApproval'>;
  killSwitch: {
    /** The isolate's lease, and the round trip it took when it had to be renewed. */
    lease(): Promise<{ lease: Lease; roundTripMs?: number }>;
    /** The most a request may wait for the agent's object on a fresh lease. */
    admissionDeadlineMs: number;
    /** How much of a lease is left, in ms. */
    remainingMs(lease: Lease): number;
  };
  signingKey(now: number): Promise<{ key: SigningKey; fromStore: boolean }>;
  /** The isolate's block of status list indexes (`stores/status-lists.ts`). */
  statusIndexes: {
    /** Resolves once an index is in hand: at once, unless the isolate holds none (then one reserve). */
    ready(): Promise<{ roundTripMs?: number }>;
    /** The next index, never handed out before. */
    take(): Promise<StatusEntry>;
  };
  /** DPoP proof of `POST {issuer}/token` (RFC 9449 §4.3), or undefined when the request carries none. */
  verifyProof(header: string | null, now: Date): Promise<VerifiedDpopProof | undefined>;
}

export interface ExchangeInput {
  origin: Origin;
  now: Date;
  readFields(): Promise<Record<string, unknown>>;
  /** The `DPoP` request header. */
  dpop: string | null;
}

/** One storage round trip the answer waited for, for `Server-Timing`. */
export interface Timing {
  store: 'agent' | 'lease' | 'keys' | 'status';
  ms: number;
}

/** One request on its way: its input, the stores, what was asked for at once, the round trips it waited for. */
export interface Exchange {
  input: ExchangeInput;
  deps: ExchangeDeps;
  nowSeconds: number;
  /** The kill switch lease, or the refusal it came to; awaited just before the decision needs it. */
  leased: Promise<{ lease: Lease; roundTripMs?: number } | BrokerError>;
  /** The signing key, or `signing_unavailable`; awaited just before a token is signed. */
  keyed: Promise<{ key: SigningKey; fromStore: boolean } | BrokerError>;
  /** An index in hand, or the refusal a reserve came to; awaited just before a token is minted. */
  indexed: Promise<{ roundTripMs?: number } | BrokerError>;
  timings: Timing[];
}

/** What parse establishes: the request, with its task's id (one is made up when it names none) and hash. */
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

/** What verify establishes: the caller, its proof, and the approval it polls, if any. */
export interface Verified extends Reached {
  kind: 'verified';
  parsed: Parsed;
  caller: VerifiedAttestation;
  proof: VerifiedDpopProof | undefined;
  approvalId: string | undefined;
}

/** What decide and mint establish: what the agent's object is to commit, and the lease its call must fit in. */
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
