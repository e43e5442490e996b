/**
 * Authorization gate: may this agent take these actions on this audience, now, for this task?
 *
 * Pure over a {@link PolicyEngine} (pre-parsed Cedar). One Cedar request per action, principal `Agent`,
 * action `Action`, resource `Api` (the audience). A denial is explained by asking again under a more
 * permissive context: if the action would be permitted with a justification, the justification is what
 * is missing; if it would be permitted once humans approve (`context.approved`), approval is what is
 * missing, and the grant's annotations say who must approve.
 */
import { type Agent, type PolicyBundle, type Rollback, TTL_CEILING_SECONDS } from '../policy/bundle';
import { refuse } from './errors';

/** A Cedar request's context: the shape `policies/schema.cedarschema` declares as `TaskContext`. */
export interface TaskContext {
  task_id: string;
  justification_present: boolean;
  /** True when humans approved this exact request (step-up approval). */
  approved: boolean;
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
  /** True when the request collects an approval humans granted for exactly this request. */
  approved: boolean;
  taskId: string;
  via: string;
  now: Date;
}

/** Who must approve: merged over every grant that needs approval (the strictest of them wins). */
export interface ApprovalRequirement {
  /** Distinct approvers needed. */
  count: number;
  /** Groups every approver must belong to. */
  groups: string[];
  /** The agent's owner may not approve. */
  fourEyes: boolean;
  /** The requested actions that need the approval. */
  actions: string[];
  /**
   * What undoes each grant that needs the approval, or why nothing does, by grant id (an approval stored
   * before grants declared it reads as none: `Approvals.get`).
   */
  rollback: RollbackPath[];
}

/** A grant's rollback path, as approvers see it: the grant, and its runbook, reverse action, or why none. */
export type RollbackPath = { grant: string } & Rollback;

export interface Authorization {
  actions: readonly string[];
  /** Token lifetime in seconds: the request's, or the policy default, capped by every grant that allowed it. */
  ttl: number;
  /** True when the TTL asked for (or, if none was, the default) was above the cap and was lowered. */
  ttlCapped: boolean;
  /** Ids of the permit policies that allowed the actions. */
  grants: string[];
  /** Set when some action is allowed only after approval: no token until humans approve. */
  approval?: ApprovalRequirement;
}

function taskContext(request: AuthorizationRequest, bundle: PolicyBundle): TaskContext {
  return {
    task_id: request.taskId,
    justification_present: request.justification,
    approved: request.approved,
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

type Requirement = Omit<ApprovalRequirement, 'actions'>;

function mergeRequirement(
  into: Requirement | undefined,
  policies: readonly string[],
  bundle: PolicyBundle,
): Requirement {
  // A grant that needs approval without saying who: one approver, any group, owner allowed.
  const found = policies.map((id) => ({
    id,
    grant: bundle.cedar.grants[id],
    approval: bundle.cedar.grants[id]?.approval ?? { count: 1, fourEyes: false },
  }));
  return found.reduce<Requirement>(
    (merged, { id, grant, approval: next }) => ({
      count: Math.max(merged.count, next.count),
      groups:
        'group' in next && next.group !== undefined && !merged.groups.includes(next.group)
          ? [...merged.groups, next.group]
          : merged.groups,
      fourEyes: merged.fourEyes || next.fourEyes,
      rollback:
        grant?.rollback === undefined || merged.rollback.some((path) => path.grant === id)
          ? merged.rollback
          : [...merged.rollback, { grant: id, ...grant.rollback }],
    }),
    into ?? { count: 1, groups: [], fourEyes: false, rollback: [] },
  );
}

/**
 * Decides a token request. Every requested action must be allowed (or allowed after approval); the
 * token's TTL is the smallest cap among them (a TTL above the cap is lowered, not refused).
 *
 * @returns the authorization; with `approval` set when humans must approve before a token is issued.
 * @throws {BrokerError} `invalid_scope` (`action_not_granted`, `justification_required`) or
 *   `invalid_target` (`audience_not_granted`: no action at all is granted on that audience).
 */
export function authorize(engine: PolicyEngine, bundle: PolicyBundle, request: AuthorizationRequest): Authorization {
  const unknown = request.actions.filter((action) => !bundle.cedar.actions.includes(action));
  const context = taskContext(request, bundle);
  const probe = (action: string, ctx: TaskContext) =>
    engine.evaluate({ agent: request.agent, action, audience: request.audience, context: ctx });
  const justified = { ...context, justification_present: true };
  const approved = { ...context, approved: true };
  const permissive = { ...context, justification_present: true, approved: true };

  const denied: string[] = [...unknown];
  const needJustification: string[] = [];
  const needApproval: string[] = [];
  let approval: Requirement | undefined;
  const grants = new Set<string>();
  let cap = TTL_CEILING_SECONDS;
  const allow = (policies: readonly string[]) => {
    for (const id of policies) grants.add(id);
    cap = Math.min(cap, grantCap(policies, bundle));
  };
  for (const action of request.actions) {
    if (unknown.includes(action)) continue;
    const answer = probe(action, context);
    if (answer.allow) {
      allow(answer.policies);
      continue;
    }
    if (!context.justification_present && probe(action, justified).allow) {
      needJustification.push(action);
      continue;
    }
    const afterApproval = context.approved ? undefined : probe(action, approved);
    if (afterApproval?.allow) {
      needApproval.push(action);
      allow(afterApproval.policies);
      approval = mergeRequirement(approval, afterApproval.policies, bundle);
    } else if (!context.justification_present && !context.approved && probe(action, permissive).allow) {
      // Needs both: the justification first, so the approvers read it.
      needJustification.push(action);
    } else {
      denied.push(action);
    }
  }

  if (denied.length === request.actions.length) {
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
    ...(approval !== undefined && { approval: { ...approval, actions: needApproval } }),
  };
}
