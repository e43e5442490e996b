/**
 * The access review, the pure part: for each agent of the inventory, what the policy lets it be granted
 * (`entitlements.ts`) beside what it was granted in the window (`usage_daily`), what it never used, its
 * refusals and approvals, and its lifecycle: past review, expired, stale, orphaned. And the narrowing that
 * takes the unused entitlements away (`narrowing.ts`). Built from the bundle, the engine and the counts.
 */
import type { UsageDaily } from '../audit/schema';
import { claimMatches } from '../core/claim-match';
import { expiredAgent, pastReview } from '../core/lifecycle';
import type { PolicyEngine } from '../core/policy';
import type { Agent, PolicyBundle } from './bundle';
import { type Entitlement, entitlementClass, entitlements } from './entitlements';
import { type Narrowing, suggestNarrowing, unusedEntitlements } from './narrowing';

/** The window the review covers: whole UTC days, `from` to `to`. */
export interface ReviewWindow {
  days: number;
  from: string;
  to: string;
}

export interface AgentReview {
  agent: string;
  owner: string;
  /** `self_signed`, or `issuer:<id>`. */
  attestation: string;
  review_by: string | null;
  expires: string | null;
  past_review: boolean;
  expired: boolean;
  /** No token in the window. */
  stale: boolean;
  /** The owner is no admin or approver a broker admin can reach (docs/operations.md). */
  orphaned: boolean;
  tokens: number;
  /** The last token the hot log holds (ISO 8601), else null. */
  last_token_at: string | null;
  /** The last day in the window with a token, from the counts, else null. */
  last_token_day: string | null;
  entitlements: (Entitlement & { granted: number; used: boolean })[];
  unused: { audience: string; action: string; condition: Entitlement['condition'] }[];
  /** Granted actions never entitled now (the policy changed in the window). */
  granted_outside_policy: { audience: string; action: string; granted: number }[];
  refusals: { reason: string; count: number }[];
  approvals: { asked: number; approved: number; denied: number };
}

export interface Review {
  days: number;
  from: string;
  to: string;
  policy: string;
  agents: AgentReview[];
  past_review: string[];
  expired: string[];
  stale: string[];
  orphaned: string[];
  narrowing: Narrowing | null;
}

/** Adds `n` to `key`'s count. */
function bump(counts: Map<string, number>, key: string, n: number): void {
  counts.set(key, (counts.get(key) ?? 0) + n);
}

/**
 * Orphaned: the owner is not someone who can act on the agent in the broker. That is, Cloudflare Access is
 * configured and the owner's email, matched against its `roles` as sign-in does (first match wins), gets the
 * role `admin` or `approver`; anything else (no rule, the `auditor` role, no Access at all) is orphaned.
 * Broker credentials name services and people by an id, not an email, so they cannot vouch for an owner.
 */
export function isOrphaned(bundle: Pick<PolicyBundle, 'admins'>, owner: string): boolean {
  const rule = bundle.admins.access?.roles.find((candidate) => claimMatches(candidate.match, owner));
  return rule === undefined || (rule.role !== 'admin' && rule.role !== 'approver');
}

const attestationOf = (agent: Agent): string =>
  agent.attestation.kind === 'self_signed' ? 'self_signed' : `issuer:${agent.attestation.issuer}`;

/** The review of one agent, from its rows of `usage_daily` in the window. */
function reviewAgent(
  agent: Agent,
  rows: readonly UsageDaily[],
  entitled: readonly Entitlement[],
  context: { bundle: PolicyBundle; nowMs: number; lastTokenMs: number | undefined },
): AgentReview {
  const granted = new Map<string, number>();
  const refusals = new Map<string, number>();
  const approvals = { asked: 0, approved: 0, denied: 0 };
  let tokens = 0;
  let lastDay: string | null = null;
  for (const row of rows) {
    if (row.outcome === 'granted') {
      tokens += row.count;
      if (lastDay === null || row.day > lastDay) lastDay = row.day;
      for (const action of new Set(row.actions.split(' '))) {
        if (action !== '') bump(granted, JSON.stringify([row.audience, action]), row.count);
      }
    } else if (row.outcome === 'refused') bump(refusals, row.reason, row.count);
    else if (row.outcome === 'approval_asked') approvals.asked += row.count;
    else if (row.outcome === 'approved') approvals.approved += row.count;
    else if (row.outcome === 'denied') approvals.denied += row.count;
  }
  const counted = entitled.map((e) => {
    const n = granted.get(JSON.stringify([e.audience, e.action])) ?? 0;
    return { ...e, granted: n, used: n > 0 };
  });
  const inPolicy = new Set(entitled.map((e) => JSON.stringify([e.audience, e.action])));
  return {
    agent: agent.id,
    owner: agent.owner,
    attestation: attestationOf(agent),
    review_by: agent.reviewBy ?? null,
    expires: agent.expires ?? null,
    past_review: pastReview(agent, context.nowMs),
    expired: expiredAgent(agent, context.nowMs) !== undefined,
    stale: tokens === 0,
    orphaned: isOrphaned(context.bundle, agent.owner),
    tokens,
    last_token_at: context.lastTokenMs === undefined ? null : new Date(context.lastTokenMs).toISOString(),
    last_token_day: lastDay,
    entitlements: counted,
    unused: counted.filter((e) => !e.used).map(({ audience, action, condition }) => ({ audience, action, condition })),
    granted_outside_policy: [...granted]
      .filter(([key]) => !inPolicy.has(key))
      .map(([key, n]) => {
        const [audience, action] = JSON.parse(key) as [string, string];
        return { audience, action, granted: n };
      }),
    refusals: [...refusals]
      .map(([reason, count]) => ({ reason, count }))
      .sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1)),
    approvals,
  };
}

/**
 * The review of every agent in the inventory over `window`, at `nowMs`: `rows` are `usage_daily`'s rows of
 * the window, `lastTokens` the time (epoch ms) of each agent's last token the hot log holds.
 */
export function accessReview(
  engine: PolicyEngine,
  bundle: PolicyBundle,
  rows: readonly UsageDaily[],
  lastTokens: ReadonlyMap<string, number>,
  window: ReviewWindow,
  nowMs: number,
): Review {
  const byAgent = new Map<string, UsageDaily[]>();
  for (const row of rows) {
    const of = byAgent.get(row.agent);
    if (of === undefined) byAgent.set(row.agent, [row]);
    else of.push(row);
  }
  const byClass = new Map<string, Entitlement[]>();
  const entitled = (agent: Agent): Entitlement[] => {
    const key = entitlementClass(bundle, agent);
    let found = byClass.get(key);
    if (found === undefined) {
      found = entitlements(engine, bundle, agent, nowMs);
      byClass.set(key, found);
    }
    return found;
  };
  const agents = Object.values(bundle.agents)
    .sort((a, b) => (a.id < b.id ? -1 : 1))
    .map((agent) =>
      reviewAgent(agent, byAgent.get(agent.id) ?? [], entitled(agent), {
        bundle,
        nowMs,
        lastTokenMs: lastTokens.get(agent.id),
      }),
    );
  const named = (flag: 'past_review' | 'expired' | 'stale' | 'orphaned') =>
    agents.filter((review) => review[flag]).map((review) => review.agent);
  return {
    ...window,
    policy: bundle.version,
    agents,
    past_review: named('past_review'),
    expired: named('expired'),
    stale: named('stale'),
    orphaned: named('orphaned'),
    narrowing: suggestNarrowing(unusedEntitlements(agents), window.to, window.days),
  };
}
