/**
 * `POST /token` as a pipeline of stages: parse the request and verify the attestation and the DPoP proof
 * (`verify.ts`); decide policy, read the kill switch from the isolate's lease, mint and sign (`decide.ts`);
 * then, here, admit (one call to the agent's Durable Object that admits the request and commits its audit
 * record in the same transaction) and answer. The token leaves only after that call answers, so the agent's object
 * is the one storage round trip in series.
 *
 * Each stage returns a tagged result (`stage.ts`): what it established, or a refusal that says whether the
 * agent's object recorded it already. Every decision is recorded exactly once: by the agent's object when the
 * request reached it (granted, or refused there), else here, once the stages have come to their refusal,
 * where `worker/audit/refusals.ts` says (the agent's chain when the attestation named the agent, else the
 * intake, sampled). The one catch is for what no stage expected: a logged, generic internal error.
 */
import type { AuditDraft } from '../audit/record';
import { asRefusal, recordRefusal, refusalOutcome } from '../audit/refusals';
import { type AccessTokenClaims, accessTokenClaims } from '../core/access-token';
import { BrokerError, refuse } from '../core/errors';
import { type ExchangeCall, type ExchangeResult, proofReplay, refusalError } from '../core/exchange';
import { ACCESS_TOKEN_TYPE } from '../core/token-request';
import { decide, sign } from './decide';
import {
  type Collecting,
  caught,
  type Exchange,
  type ExchangeDeps,
  type ExchangeInput,
  type Origin,
  type Parsed,
  type Prepared,
  type Reached,
  type Refused,
  refused,
  type Signed,
  type Timing,
} from './stage';
import { parse, verify } from './verify';

export type { ExchangeDeps, ExchangeInput, Origin, Timing } from './stage';

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

/** What the stages come to. */
type Outcome = Extract<ExchangeAnswer, { kind: 'issued' }> | Refused;

/**
 * Runs the exchange (RFC 8693 §2) and returns the answer to give; never throws. The kill switch lease and the
 * signing key are asked for at once and awaited just before they are needed: both are usually in the
 * isolate already.
 */
export async function exchangeToken(input: ExchangeInput, deps: ExchangeDeps): Promise<ExchangeAnswer> {
  const nowSeconds = Math.floor(input.now.getTime() / 1000);
  const exchange: Exchange = {
    input,
    deps,
    nowSeconds,
    leased: deps.killSwitch.lease().catch((error: unknown) => asRefusal(error, '/token')),
    keyed: deps.signingKey(nowSeconds).catch((error: unknown) =>
      // The key store's own refusal says which store and why (a failure, or no answer within its deadline).
      refuse('signing_unavailable', error instanceof BrokerError ? error.detail : { message: String(error) }, {
        cause: error,
      }),
    ),
    // Usually at once: the isolate holds a block of indexes; a cold one reserves it beside the lease.
    indexed: deps.statusIndexes.ready().catch((error: unknown) => asRefusal(error, '/token')),
    timings: [],
  };
  const outcome = await stages(exchange);
  if (outcome.kind === 'issued') return outcome;
  if (!outcome.recorded) {
    const draft = exchangeDraft(input.origin, outcome.reached);
    await recordRefusal(deps, draft, refusalOutcome(outcome.refusal), deps.bundle.version);
  }
  const { refusal, dpopNonce } = outcome;
  return { kind: 'refused', refusal, ...(dpopNonce !== undefined && { dpopNonce }), timings: exchange.timings };
}

/** The stages in order, each ending the exchange with its refusal or handing on what it established. */
async function stages(exchange: Exchange): Promise<Outcome> {
  // How far the request got: what the record of a failure no stage expected can name.
  let reached: Reached = {};
  try {
    const parsed = await parse(exchange.input);
    if (parsed.kind === 'refused') return parsed;
    reached = { parsed };
    const verified = await verify(exchange, parsed);
    if (verified.kind === 'refused') return verified;
    reached = verified;
    const prepared = await decide(exchange, verified);
    if (prepared.kind === 'refused') return prepared;
    reached = prepared;
    return await admit(exchange, prepared);
  } catch (error) {
    return { kind: 'refused', refusal: asRefusal(error, '/token'), recorded: false, reached };
  }
}

/** The request's record before its decision, from what the stages had reached. */
function exchangeDraft(origin: Origin, { parsed, caller, target }: Reached): AuditDraft {
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

/** The one call's data: the record so far, what the object is to admit, and what was decided. */
function exchangeCall({ input, deps }: Exchange, prepared: Prepared): ExchangeCall {
  const { parsed, caller, proof } = prepared;
  const { settings } = deps.bundle;
  return {
    draft: exchangeDraft(input.origin, prepared),
    admission: {
      replayKey: caller.replayKey,
      replayUntil: caller.replayUntil,
      taskId: parsed.taskId,
      rateLimit: caller.agent.rateLimit ?? settings.rateLimit,
      ...(proof !== undefined && {
        dpop: {
          ...proofReplay(proof, settings.dpop.maxAge),
          nonce: proof.nonce,
          requireNonce: settings.dpop.nonce,
        },
      }),
    },
    decision: prepared.decision,
  };
}

/** The kill switch lease ran out: no token leaves on it (`granted`: the token the object recorded, if any). */
function leaseRanOut(granted?: string): BrokerError {
  return refuse('store_unavailable', {
    store: 'kill_switch',
    message: 'the lease ran out',
    ...(granted !== undefined && { granted }),
  });
}

/** Admit, the one call: the agent's object admits the request and commits the decision with its record. */
async function admit(exchange: Exchange, prepared: Prepared): Promise<Outcome> {
  const { agents, killSwitch } = exchange.deps;
  const call = exchangeCall(exchange, prepared);
  // The object must answer while the lease still holds: no token leaves on a lease that ran out.
  const deadline = Math.min(killSwitch.admissionDeadlineMs, killSwitch.remainingMs(prepared.lease));
  if (deadline <= 0) return refused(leaseRanOut(), prepared);
  const started = performance.now();
  let result: ExchangeResult;
  try {
    result = await agents.exchange(prepared.caller.agent.id, call, deadline);
  } catch (error) {
    return caught(error, prepared);
  }
  exchange.timings.push({ store: 'agent', ms: performance.now() - started });
  const { dpopNonce } = result;
  if (result.outcome === 'refused') {
    const refusal = refusalError(result.refusal, prepared.parsed.taskId);
    return { kind: 'refused', refusal, recorded: true, dpopNonce };
  }
  if (prepared.kind === 'answering' && result.outcome === 'recorded') {
    return { kind: 'refused', refusal: prepared.answer, recorded: true, dpopNonce };
  }
  if (prepared.kind !== 'answering' && result.outcome === 'granted') {
    return issue(exchange, prepared, call.draft, result.approvedBy, dpopNonce);
  }
  throw new Error(`the agent object answered ${result.outcome} to a ${prepared.decision.kind}`);
}

/** Answer: the token leaves only while the lease still holds. */
function issue(
  exchange: Exchange,
  prepared: Signed | Collecting,
  draft: AuditDraft,
  approvedBy: string[] | undefined,
  dpopNonce: string | undefined,
): Outcome | Promise<Outcome> {
  if (exchange.deps.killSwitch.remainingMs(prepared.lease) <= 0) {
    return refused(leaseRanOut(prepared.claims.jti), prepared, dpopNonce);
  }
  if (prepared.kind === 'signed') {
    return issued(exchange, prepared.parsed, prepared.claims, prepared.accessToken, dpopNonce);
  }
  return collected(exchange, prepared, draft, approvedBy ?? [], dpopNonce);
}

/** A collected approval's token, signed now and naming who approved; or, if it cannot be signed, released. */
async function collected(
  exchange: Exchange,
  prepared: Collecting,
  draft: AuditDraft,
  approvedBy: string[],
  dpopNonce: string | undefined,
): Promise<Outcome> {
  const claims = accessTokenClaims({ ...prepared.minted, approval: { id: prepared.approvalId, by: approvedBy } });
  const accessToken = await sign(claims, prepared.key);
  if (accessToken instanceof BrokerError) return release(exchange, prepared, draft, accessToken, dpopNonce);
  return issued(exchange, prepared.parsed, claims, accessToken, dpopNonce);
}

/**
 * The one compensating action: a collected approval whose token could not be signed goes back to approved,
 * and its object records why. A release that fails is the pipeline's refusal to record.
 */
async function release(
  exchange: Exchange,
  prepared: Collecting,
  draft: AuditDraft,
  failure: BrokerError,
  dpopNonce: string | undefined,
): Promise<Refused> {
  try {
    const outcome = refusalOutcome(failure);
    await exchange.deps.agents.releaseApproval(prepared.caller.agent.id, prepared.approvalId, draft, outcome);
  } catch (error) {
    return refused(asRefusal(error, '/token'), prepared, dpopNonce);
  }
  return { kind: 'refused', refusal: failure, recorded: true, dpopNonce };
}

/** The token response (RFC 8693 §2.2.1). */
function issued(
  { timings }: Exchange,
  parsed: Parsed,
  claims: AccessTokenClaims,
  accessToken: string,
  dpopNonce: string | undefined,
): Outcome {
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
}
