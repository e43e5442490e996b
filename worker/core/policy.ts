/**
 * Authorization gate: may this agent take these actions on this audience, now, for this task?
 *
 * Pure over a {@link PolicyEngine} (pre-parsed Cedar). One Cedar request per action, principal `Agent`,
 * action `Action`, resource `Api` (the audience). A denial is explained by asking again under a more
 * permissive context: if the action would be permitted with a justification, the justification is what
 * is missing. The same probing will say "approval needed" once step-up approval lands.
 */
import { type Agent, type PolicyBundle, TTL_CEILING_SECONDS } from '../policy/bundle';
import { refuse } from './errors';

/** A Cedar request's context: the shape `policies/schema.cedarschema` declares as `TaskContext`. */
export interface TaskContext {
  task_id: string;
  justification_present: boolean;
  requested_ttl: number;
  /** Epoch seconds, and the UTC hour (0-23) and weekday (0 = Sunday) for time-of-day policies. */
  now: number;
  hour_utc: number;
  weekday_utc: number;
  /** `self` or the trusted issuer's id that vouched for the agent. */
  attestation: string;
}

export interface CedarQuery {
  agent: Agent;
  action: string;
  audience: string;
  context: TaskContext;
}

export interface CedarAnswer {
  allow: boolean;
  /** Ids of the policies that determined the decision. */
  policies: string[];
}

/** Pre-parsed Cedar policies and schema; see `worker/policy/engine.ts`. */
export interface PolicyEngine {
  evaluate(query: CedarQuery): CedarAnswer;
}

export interface AuthorizationRequest {
  agent: Agent;
  audience: string;
  actions: readonly string[];
  requestedTtl: number | undefined;
  justification: boolean;
  taskId: string;
  via: string;
  now: Date;
}

export interface Authorization {
  actions: readonly string[];
  /** Token lifetime in seconds: the request's, or the policy default, capped by every grant that allowed it. */
  ttl: number;
  /** True when the TTL asked for (or, if none was, the default) was above the cap and was lowered. */
  ttlCapped: boolean;
  /** Ids of the permit policies that allowed the actions. */
  grants: string[];
}

function taskContext(request: AuthorizationRequest, bundle: PolicyBundle): TaskContext {
  return {
    task_id: request.taskId,
    justification_present: request.justification,
    requested_ttl: request.requestedTtl ?? bundle.settings.tokens.defaultTtl,
    now: Math.floor(request.now.getTime() / 1000),
    hour_utc: request.now.getUTCHours(),
    weekday_utc: request.now.getUTCDay(),
    attestation: request.via,
  };
}

/** The longest TTL the satisfied grants allow: the most generous grant wins for one action. */
function grantCap(policies: readonly string[], bundle: PolicyBundle): number {
  // Cedar never allows without a determining permit; if an engine did, refuse rather than guess a lifetime.
  if (policies.length === 0) throw new Error('policy engine allowed an action without a determining policy');
  const caps = policies.map((id) => bundle.cedar.grants[id]?.maxTtl ?? bundle.settings.tokens.maxTtl);
  return Math.min(Math.max(...caps), TTL_CEILING_SECONDS);
}

/**
 * Decides a token request. Every requested action must be allowed; the token's TTL is the smallest cap
 * among them (a TTL above the cap is lowered, not refused).
 *
 * @throws {BrokerError} `invalid_scope` (`action_not_granted`, `justification_required`) or
 *   `invalid_target` (`audience_not_granted`: no action at all is granted on that audience).
 */
export function authorize(engine: PolicyEngine, bundle: PolicyBundle, request: AuthorizationRequest): Authorization {
  const unknown = request.actions.filter((action) => !bundle.cedar.actions.includes(action));
  const context = taskContext(request, bundle);
  const probe = (action: string, ctx: TaskContext) =>
    engine.evaluate({ agent: request.agent, action, audience: request.audience, context: ctx });
  const permissive = { ...context, justification_present: true };

  const denied: string[] = [...unknown];
  const needJustification: string[] = [];
  const grants = new Set<string>();
  let cap = TTL_CEILING_SECONDS;
  for (const action of request.actions) {
    if (unknown.includes(action)) continue;
    const answer = probe(action, context);
    if (answer.allow) {
      for (const id of answer.policies) grants.add(id);
      cap = Math.min(cap, grantCap(answer.policies, bundle));
    } else if (!context.justification_present && probe(action, permissive).allow) {
      needJustification.push(action);
    } else {
      denied.push(action);
    }
  }

  if (denied.length === request.actions.length && needJustification.length === 0) {
    const anyGranted = bundle.cedar.actions.some((action) => probe(action, permissive).allow);
    if (!anyGranted) throw refuse('audience_not_granted', { audience: request.audience });
  }
  if (denied.length > 0) throw refuse('action_not_granted', { actions: denied, unknown });
  if (needJustification.length > 0) throw refuse('justification_required', { actions: needJustification });

  const wanted = request.requestedTtl ?? bundle.settings.tokens.defaultTtl;
  return {
    actions: request.actions,
    ttl: Math.min(wanted, cap),
    ttlCapped: wanted > cap,
    grants: [...grants],
  };
}
