/**
 * The `/token` pipeline's decide and mint stages: the policy decision, the kill switch from the isolate's
 * lease, and what the agent's object is to commit: a refusal, an approval to open, or a token minted (and
 * signed, unless an approval is to be collected first).
 */
import { approvalRequired, pendingApproval } from '../approvals/step-up';
import {
  type AccessTokenClaims,
  type AccessTokenInput,
  accessTokenClaims,
  type SigningKey,
  signAccessToken,
} from '../core/access-token';
import { type ApprovalTerms, approvalTerms, newApprovalId } from '../core/approval';
import { BrokerError, refuse } from '../core/errors';
import type { ExchangeDecision, Grant } from '../core/exchange';
import { type Authorization, authorize } from '../core/policy';
import type { Lease } from '../stores/kill-switch';
import type { StatusEntry } from '../stores/status-lists';
import { caught, type Exchange, type Parsed, type Prepared, type Refused, refused, type Verified } from './stage';

type Decided =
  | { kind: 'grant'; authorization: Authorization }
  | { kind: 'approval'; authorization: Authorization & { approval: NonNullable<Authorization['approval']> } }
  | { kind: 'refuse'; refusal: BrokerError };

/**
 * Decide and mint: the policy decision, the kill switch from the isolate's lease (engaged refuses before
 * anything is used up), and what the agent's object is to commit.
 */
export async function decide(exchange: Exchange, verified: Verified): Promise<Prepared | Refused> {
  const decided = decidePolicy(exchange, verified);
  const held = await exchange.leased;
  if (held instanceof BrokerError) return refused(held, verified);
  if (held.roundTripMs !== undefined) exchange.timings.push({ store: 'lease', ms: held.roundTripMs });
  const { lease } = held;
  if (lease.engaged) return refused(refuse('kill_switch_engaged', { version: lease.version }), verified);
  switch (decided.kind) {
    case 'refuse':
      return refusing(verified, lease, decided.refusal);
    case 'approval':
      return opening(exchange, verified, lease, decided.authorization);
    case 'grant':
      return await granting(exchange, verified, lease, decided.authorization);
  }
}

/** The authorization gate, as a tagged result: granted, granted once humans approve, or refused. */
function decidePolicy({ input, deps }: Exchange, verified: Verified): Decided {
  const { parsed, caller } = verified;
  const { request } = parsed;
  try {
    const authorization = authorize(deps.engine, deps.bundle, {
      agent: caller.agent,
      audience: request.audience,
      actions: request.actions,
      requestedTtl: request.requestedTtl,
      justification: request.task.justification !== undefined,
      approved: verified.approvalId !== undefined,
      taskId: parsed.taskId,
      via: caller.via,
      now: input.now,
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

/** The terms an approval is for: what the request asks, exactly. */
function termsOf({ request, taskId, taskHash }: Parsed): ApprovalTerms {
  return approvalTerms({ ...request, taskId, taskHash, justification: request.task.justification });
}

/** Policy refused: the object records it (the attestation counts as used); a polled approval answers first. */
function refusing(verified: Verified, lease: Lease, refusal: BrokerError): Prepared {
  const { approvalId } = verified;
  const decision: ExchangeDecision = {
    kind: 'refuse',
    reason: refusal.reason,
    details: { ...refusal.detail },
    ...(approvalId !== undefined && { approval: { id: approvalId, terms: termsOf(verified.parsed) } }),
  };
  return { ...verified, kind: 'answering', lease, decision, answer: refusal };
}

/** Policy needs approval: the object opens it, and the agent is told what to poll with. */
function opening(
  { deps, nowSeconds }: Exchange,
  verified: Verified,
  lease: Lease,
  authorization: Extract<Decided, { kind: 'approval' }>['authorization'],
): Prepared {
  const { parsed, caller } = verified;
  const opened = pendingApproval(deps.bundle, {
    id: newApprovalId(caller.agent.id),
    agent: caller.agent,
    terms: termsOf(parsed),
    requirement: authorization.approval,
    ttl: authorization.ttl,
    taskDescription: parsed.request.task.description,
    issuer: deps.issuer,
    now: nowSeconds,
  });
  const { approval } = opened;
  const decision: ExchangeDecision = { kind: 'open', ...opened };
  return {
    ...verified,
    kind: 'answering',
    lease,
    target: `approval:${approval.id}`,
    decision,
    answer: approvalRequired(approval),
  };
}

/** Policy granted: the token minted, and signed now unless an approval is to be collected first. */
async function granting(
  exchange: Exchange,
  verified: Verified,
  lease: Lease,
  authorization: Authorization,
): Promise<Prepared | Refused> {
  const keyed = await exchange.keyed;
  if (keyed instanceof BrokerError) return refused(keyed, verified);
  if (keyed.fromStore) exchange.timings.push({ store: 'keys', ms: 0 });
  const indexed = await exchange.indexed;
  if (indexed instanceof BrokerError) return refused(indexed, verified);
  // A reserve the request waited for is a round trip in series, unless the lease's renewal overlapped it.
  const leaseRenewed = exchange.timings.some((timing) => timing.store === 'lease');
  if (indexed.roundTripMs !== undefined && !leaseRenewed) {
    exchange.timings.push({ store: 'status', ms: indexed.roundTripMs });
  }
  let entry: StatusEntry;
  try {
    entry = await exchange.deps.statusIndexes.take();
  } catch (error) {
    return caught(error, verified);
  }
  const minted = mint(exchange, verified, authorization, entry);
  const claims = accessTokenClaims(minted);
  const grant = grantOf(authorization, claims, entry);
  const { approvalId } = verified;
  if (approvalId !== undefined) {
    // Signed once the object has collected the approval and said who approved.
    const decision: ExchangeDecision = { kind: 'collect', approvalId, terms: termsOf(verified.parsed), grant };
    return { ...verified, kind: 'collecting', lease, decision, approvalId, minted, claims, key: keyed.key };
  }
  const accessToken = await sign(claims, keyed.key);
  if (accessToken instanceof BrokerError) return refused(accessToken, verified);
  return { ...verified, kind: 'signed', lease, decision: { kind: 'grant', grant }, claims, accessToken };
}

/** The token to mint for a grant. */
function mint(
  { input, deps }: Exchange,
  verified: Verified,
  authorization: Authorization,
  entry: StatusEntry,
): AccessTokenInput {
  const { parsed, caller, proof } = verified;
  return {
    issuer: deps.issuer,
    agent: caller.agent,
    audience: parsed.request.audience,
    actions: authorization.actions,
    task: { id: parsed.taskId, hash: parsed.taskHash },
    policyVersion: deps.bundle.version,
    ttl: authorization.ttl,
    jti: crypto.randomUUID(),
    now: input.now,
    ...(proof !== undefined && { dpopJkt: proof.jkt }),
    status: { idx: entry.idx, uri: `${deps.issuer}/status/${entry.list}` },
  };
}

/** What the grant's record adds to the draft. */
function grantOf(authorization: Authorization, claims: AccessTokenClaims, entry: StatusEntry): Grant {
  return {
    status: { list: entry.list, idx: entry.idx },
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
}

/** Signs a token, or says why not: a key that cannot sign is the signing store's failure (503), not the request's. */
export async function sign(claims: AccessTokenClaims, key: SigningKey): Promise<string | BrokerError> {
  try {
    return await signAccessToken(claims, key);
  } catch (error) {
    return refuse('signing_unavailable', { message: String(error), jti: claims.jti }, { cause: error });
  }
}
