/**
 * `POST /token` as a pipeline: read and parse the request, verify the attestation and the DPoP proof,
 * decide policy, mint and sign, then one call to the agent's Durable Object that admits the request and
 * commits its audit record in the same transaction, and the answer. The token leaves only after that call
 * answers; the kill switch is read from the isolate's lease, so the agent's object is the one storage round
 * trip in series.
 *
 * Every decision is recorded exactly once: by the agent's object when the request reached it (granted, or
 * refused there), else here, in the one catch, where `worker/audit/refusals.ts` says: refusals of a caller
 * not known yet go to the intake, sampled; refusals naming an agent go to its object.
 */
import type { VerifiedDpopProof } from '@tessera/verify';
import { approvalRequired, checkApprovalOwner, pendingApproval } from '../approvals/step-up';
import type { AuditDraft } from '../audit/record';
import { asRefusal, type RefusalStores, recordRefusal, refusalOutcome } from '../audit/refusals';
import {
  type AccessTokenClaims,
  type AccessTokenInput,
  accessTokenClaims,
  type SigningKey,
  signAccessToken,
  taskHash,
} from '../core/access-token';
import { approvalTerms, newApprovalId } from '../core/approval';
import { type KeyResolver, type VerifiedAttestation, verifyAttestation } from '../core/attestation';
import { BrokerError, refuse } from '../core/errors';
import type { ExchangeCall, ExchangeDecision, Grant } from '../core/exchange';
import { proofReplay, refusalError } from '../core/exchange';
import { type Authorization, authorize, type PolicyEngine } from '../core/policy';
import { ACCESS_TOKEN_TYPE, parseTokenRequest, type TokenRequest } from '../core/token-request';
import type { PolicyBundle } from '../policy/bundle';
import type { AgentStore } from '../stores/agents';
import type { Lease } from '../stores/kill-switch';

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
  store: 'agent' | 'lease' | 'keys';
  ms: number;
}

export interface TokenResponse {
  access_token: string;
  issued_token_type: typeof ACCESS_TOKEN_TYPE;
  token_type: 'Bearer' | 'DPoP';
  expires_in: number;
  scope: string;
  task_id: string;
}

export type ExchangeAnswer =
  | { kind: 'issued'; body: TokenResponse; dpopNonce?: string; timings: Timing[] }
  | { kind: 'refused'; refusal: BrokerError; dpopNonce?: string; timings: Timing[] };

interface Parsed {
  request: TokenRequest;
  taskId: string;
  taskHash: string;
}

type Decided =
  | { kind: 'grant'; authorization: Authorization }
  | { kind: 'approval'; authorization: Authorization & { approval: NonNullable<Authorization['approval']> } }
  | { kind: 'refuse'; refusal: BrokerError };

/** The request's record before its decision, from what the pipeline has established so far. */
function exchangeDraft(origin: Origin, parsed?: Parsed, caller?: VerifiedAttestation, target?: string): AuditDraft {
  return {
    ...origin,
    event: 'token.exchange',
    details: {},
    ...(parsed !== undefined && {
      audience: parsed.request.audience,
      requestedActions: parsed.request.actions.join(' '),
      requestedTtl: parsed.request.requestedTtl ?? null,
      taskId: parsed.taskId,
      taskDescription: parsed.request.task.description,
      taskHash: parsed.taskHash,
      justification: parsed.request.task.justification ?? null,
    }),
    ...(caller !== undefined && {
      agent: caller.agent.id,
      owner: caller.agent.owner,
      attestationVia: caller.via,
      attestationJti: caller.jti,
    }),
    ...(target !== undefined && { target }),
  };
}

async function parse(input: ExchangeInput): Promise<Parsed> {
  const request = parseTokenRequest(await input.readFields());
  return {
    request,
    taskId: request.task.id ?? crypto.randomUUID(),
    taskHash: await taskHash(request.task.description),
  };
}

/** A proof is required by the agent, or by the audience, and the request sent none. */
function checkProofRequired(
  caller: VerifiedAttestation,
  audience: string,
  proof: VerifiedDpopProof | undefined,
  bundle: PolicyBundle,
) {
  if (proof !== undefined) return;
  if (caller.agent.requireDpop) throw refuse('dpop_required', { requiredBy: 'agent' });
  if (bundle.settings.dpop.requiredAudiences.includes(audience))
    throw refuse('dpop_required', { requiredBy: 'audience' });
}

/** The authorization gate, as a tagged result: granted, granted once humans approve, or refused. */
function decide(
  deps: ExchangeDeps,
  parsed: Parsed,
  caller: VerifiedAttestation,
  approved: boolean,
  now: Date,
): Decided {
  const { request } = parsed;
  try {
    const authorization = authorize(deps.engine, deps.bundle, {
      agent: caller.agent,
      audience: request.audience,
      actions: request.actions,
      requestedTtl: request.requestedTtl,
      justification: request.task.justification !== undefined,
      approved,
      taskId: parsed.taskId,
      via: caller.via,
      now,
    });
    const { approval } = authorization;
    return approval === undefined
      ? { kind: 'grant', authorization }
      : { kind: 'approval', authorization: { ...authorization, approval } };
  } catch (error) {
    if (error instanceof BrokerError) return { kind: 'refuse', refusal: error };
    throw error;
  }
}

/** Awaits a store call that started earlier, noting its round trip when it made one. */
async function awaited<T>(work: Promise<T>, timings: Timing[], timing: (value: T) => Timing | undefined): Promise<T> {
  const value = await work;
  const spent = timing(value);
  if (spent !== undefined) timings.push(spent);
  return value;
}

/** Runs the exchange and returns the answer to give; never throws. */
export async function exchangeToken(input: ExchangeInput, deps: ExchangeDeps): Promise<ExchangeAnswer> {
  const timings: Timing[] = [];
  const nowSeconds = Math.floor(input.now.getTime() / 1000);
  // Started at once, awaited just before admission: both are usually in the isolate already.
  const leased = deps.killSwitch.lease();
  const keyed = deps.signingKey(nowSeconds).catch((error: unknown) => {
    throw refuse('signing_unavailable', { message: String(error) }, { cause: error });
  });
  for (const started of [leased, keyed]) started.catch(() => undefined);

  let parsed: Parsed | undefined;
  let caller: VerifiedAttestation | undefined;
  let target: string | undefined;
  /** Set once the agent's object has recorded the outcome being answered. */
  let recorded = false;
  let dpopNonce: string | undefined;
  try {
    parsed = await parse(input);
    const { request } = parsed;
    const [verified, proven] = await Promise.allSettled([
      verifyAttestation(request.subjectToken, {
        now: input.now,
        brokerIssuer: deps.issuer,
        bundle: deps.bundle,
        keys: deps.keys,
      }),
      deps.verifyProof(input.dpop, input.now),
    ]);
    if (verified.status === 'rejected') throw verified.reason;
    caller = verified.value;
    // Refused after the agent is known, so the refusal's record names it.
    if (proven.status === 'rejected') throw proven.reason;
    const proof = proven.value;
    checkProofRequired(caller, request.audience, proof, deps.bundle);
    const { approvalId } = request;
    if (approvalId !== undefined) {
      target = `approval:${approvalId}`;
      checkApprovalOwner(approvalId, caller.agent.id);
    }
    const decided = decide(deps, parsed, caller, approvalId !== undefined, input.now);

    const { lease } = await awaited(leased, timings, ({ roundTripMs }) =>
      roundTripMs === undefined ? undefined : { store: 'lease', ms: roundTripMs },
    );
    if (lease.engaged) throw refuse('kill_switch_engaged', { version: lease.version });

    const terms = approvalTerms({
      ...request,
      taskId: parsed.taskId,
      taskHash: parsed.taskHash,
      justification: request.task.justification,
    });
    let minted: AccessTokenInput | undefined;
    let claims: AccessTokenClaims | undefined;
    let key: SigningKey | undefined;
    let accessToken: string | undefined;
    let decision: ExchangeDecision;
    let answer: BrokerError | undefined;
    if (decided.kind === 'refuse') {
      decision = {
        kind: 'refuse',
        reason: decided.refusal.reason,
        details: { ...decided.refusal.detail },
        ...(approvalId !== undefined && { approval: { id: approvalId, terms } }),
      };
      answer = decided.refusal;
    } else if (decided.kind === 'approval') {
      const opened = pendingApproval(deps.bundle, {
        id: newApprovalId(caller.agent.id),
        agent: caller.agent,
        terms,
        requirement: decided.authorization.approval,
        ttl: decided.authorization.ttl,
        taskDescription: request.task.description,
        issuer: deps.issuer,
        now: nowSeconds,
      });
      target = `approval:${opened.approval.id}`;
      decision = { kind: 'open', ...opened };
      answer = approvalRequired(opened.approval);
    } else {
      ({ key } = await awaited(keyed, timings, ({ fromStore }) => (fromStore ? { store: 'keys', ms: 0 } : undefined)));
      const { authorization } = decided;
      minted = {
        issuer: deps.issuer,
        agent: caller.agent,
        audience: request.audience,
        actions: authorization.actions,
        task: { id: parsed.taskId, hash: parsed.taskHash },
        policyVersion: deps.bundle.version,
        ttl: authorization.ttl,
        jti: crypto.randomUUID(),
        now: input.now,
        ...(proof !== undefined && { dpopJkt: proof.jkt }),
      };
      claims = accessTokenClaims(minted);
      const grant: Grant = {
        tokenJti: claims.jti,
        tokenExp: claims.exp,
        grantedActions: claims.scope,
        details: {
          grants: authorization.grants,
          ttl: authorization.ttl,
          ...(authorization.ttlCapped && { ttlCapped: true }),
          ...(claims.cnf !== undefined && { cnf: claims.cnf }),
        },
      };
      if (approvalId === undefined) {
        accessToken = await sign(claims, key);
        decision = { kind: 'grant', grant };
      } else {
        // Signed once the object has collected the approval and said who approved.
        decision = { kind: 'collect', approvalId, terms, grant };
      }
    }

    const call: ExchangeCall = {
      draft: exchangeDraft(input.origin, parsed, caller, target),
      admission: {
        replayKey: caller.replayKey,
        replayUntil: caller.replayUntil,
        taskId: parsed.taskId,
        rateLimit: caller.agent.rateLimit ?? deps.bundle.settings.rateLimit,
        ...(proof !== undefined && {
          dpop: {
            ...proofReplay(proof, deps.bundle.settings.dpop.maxAge),
            nonce: proof.nonce,
            requireNonce: deps.bundle.settings.dpop.nonce,
          },
        }),
      },
      decision,
    };
    // The object must answer while the lease still holds: no token leaves on a lease that ran out.
    const deadline = Math.min(deps.killSwitch.admissionDeadlineMs, deps.killSwitch.remainingMs(lease));
    if (deadline <= 0) throw refuse('store_unavailable', { store: 'kill_switch', message: 'the lease ran out' });
    const started = performance.now();
    const result = await deps.agents.exchange(caller.agent.id, call, deadline);
    timings.push({ store: 'agent', ms: performance.now() - started });
    recorded = true;
    dpopNonce = result.dpopNonce;
    if (result.outcome === 'refused') throw refusalError(result.refusal, parsed.taskId);
    if (result.outcome === 'recorded') throw answer;
    recorded = false;
    if (deps.killSwitch.remainingMs(lease) <= 0) {
      throw refuse('store_unavailable', { store: 'kill_switch', message: 'the lease ran out', granted: claims?.jti });
    }
    if (minted === undefined || claims === undefined || key === undefined) throw new Error('a grant without claims');
    if (accessToken === undefined) {
      const approval = { id: approvalId as string, by: result.approvedBy ?? [] };
      const approved = accessTokenClaims({ ...minted, approval });
      try {
        accessToken = await sign(approved, key);
      } catch (error) {
        // The one place a collected approval goes back: no token came of it.
        const failure = asRefusal(error, '/token');
        await deps.agents.releaseApproval(caller.agent.id, approval.id, call.draft, refusalOutcome(failure));
        recorded = true;
        throw failure;
      }
      claims = approved;
    }
    return {
      kind: 'issued',
      body: {
        access_token: accessToken,
        issued_token_type: ACCESS_TOKEN_TYPE,
        token_type: claims.cnf === undefined ? 'Bearer' : 'DPoP',
        expires_in: claims.exp - claims.iat,
        scope: claims.scope,
        task_id: parsed.taskId,
      },
      ...(dpopNonce !== undefined && { dpopNonce }),
      timings,
    };
  } catch (error) {
    const refusal = asRefusal(error, '/token');
    if (!recorded) {
      const draft = exchangeDraft(input.origin, parsed, caller, target);
      await recordRefusal(deps, draft, refusalOutcome(refusal), deps.bundle.version);
    }
    return { kind: 'refused', refusal, ...(dpopNonce !== undefined && { dpopNonce }), timings };
  }
}

/** Signs a token; a key that cannot sign is the signing store's failure, not the request's. */
async function sign(claims: AccessTokenClaims, key: SigningKey): Promise<string> {
  try {
    return await signAccessToken(claims, key);
  } catch (error) {
    throw refuse('signing_unavailable', { message: String(error), jti: claims.jti }, { cause: error });
  }
}
