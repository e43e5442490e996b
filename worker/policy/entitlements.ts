/**
 * What each agent may be granted, read from the Cedar engine itself, not from the policy text: every API and
 * every action the schema declares, asked under each condition a request can meet (as asked, with a written
 * justification, after an approval, with both) and, where a policy that reads the time may apply (its scope,
 * `Grant.timed`), at every hour of a week; elsewhere at the review's own hour.
 * The access review (`GET /admin/review`) compares this with what the agent used.
 */
import type { PolicyEngine, TaskContext } from '../core/policy';
import type { Agent, PolicyBundle } from './bundle';
import { decisionSubject } from './engine';

/** The least a request must bring for the action to be granted. */
export type Condition = 'allowed' | 'justification' | 'approval' | 'justification_and_approval';

/** One action an agent may be granted on one API. */
export interface Entitlement {
  audience: string;
  action: string;
  condition: Condition;
  /** `always`, or `some_hours` when the grant depends on the hour or the weekday (UTC). */
  hours: 'always' | 'some_hours';
  /** The permit policies that grant it, under its condition. */
  grants: string[];
}

/** Each condition with the context flags that meet it, the least demanding first. */
const CONDITIONS: readonly { condition: Condition; justification: boolean; approved: boolean }[] = [
  { condition: 'allowed', justification: false, approved: false },
  { condition: 'justification', justification: true, approved: false },
  { condition: 'approval', justification: false, approved: true },
  { condition: 'justification_and_approval', justification: true, approved: true },
];

interface TimePoint {
  hour: number;
  weekday: number;
}

/** Every hour of a week, UTC. */
const WEEK: readonly TimePoint[] = Array.from({ length: 7 * 24 }, (_, i) => ({
  hour: i % 24,
  weekday: Math.floor(i / 24),
}));

/** Whether a policy that reads the time may apply to `action` on `audience`. */
function timed(bundle: PolicyBundle, audience: string, action: string): boolean {
  return Object.values(bundle.cedar.grants).some(
    ({ timed }) =>
      timed !== undefined &&
      (timed.actions === undefined || timed.actions.includes(action)) &&
      (timed.audience === undefined || timed.audience === audience),
  );
}

/** How the agent attests, as the context's `attestation` says it: `self` or its issuer's id. */
const attestationVia = (agent: Agent): string =>
  agent.attestation.kind === 'self_signed' ? 'self' : agent.attestation.issuer;

/**
 * What {@link entitlements} depend on of `agent`: its decision subject and how it attests. Agents with one
 * class have the same entitlements, so a review asks the engine once per class, not once per agent.
 */
export const entitlementClass = (bundle: Pick<PolicyBundle, 'cedar'>, agent: Agent): string =>
  JSON.stringify([decisionSubject(bundle, agent), attestationVia(agent)]);

/**
 * Every entitlement of `agent`: for each API the bundle declares and each action of the schema, the least
 * demanding condition under which the engine grants it at some hour, or nothing when it never does. `now`
 * (epoch ms) is the context's `now`; the hour and weekday vary when a policy reads them.
 */
export function entitlements(engine: PolicyEngine, bundle: PolicyBundle, agent: Agent, nowMs: number): Entitlement[] {
  const now = new Date(nowMs);
  const here: readonly TimePoint[] = [{ hour: now.getUTCHours(), weekday: now.getUTCDay() }];
  const base: Omit<TaskContext, 'justification_present' | 'approved' | 'hour_utc' | 'weekday_utc'> = {
    task_id: 'access-review',
    requested_ttl: bundle.settings.tokens.defaultTtl,
    now: Math.floor(nowMs / 1000),
    attestation: attestationVia(agent),
  };
  const found: Entitlement[] = [];
  for (const audience of Object.keys(bundle.apis).sort()) {
    for (const action of bundle.cedar.actions) {
      const points = timed(bundle, audience, action) ? WEEK : here;
      const ask = (justification: boolean, approved: boolean, point: TimePoint) =>
        engine.evaluate({
          agent,
          action,
          audience,
          context: {
            ...base,
            justification_present: justification,
            approved,
            hour_utc: point.hour,
            weekday_utc: point.weekday,
          },
        });
      // The most permissive condition first: an action it never grants is no entitlement (most are not).
      if (!points.some((point) => ask(true, true, point).allow)) continue;
      for (const { condition, justification, approved } of CONDITIONS) {
        const answers = points.map((point) => ask(justification, approved, point));
        const allowed = answers.filter((answer) => answer.allow);
        if (allowed.length === 0) continue;
        found.push({
          audience,
          action,
          condition,
          hours: allowed.length === answers.length ? 'always' : 'some_hours',
          grants: [...new Set(allowed.flatMap((answer) => answer.policies))].sort(),
        });
        break;
      }
    }
  }
  return found;
}
