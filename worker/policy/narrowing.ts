/**
 * The access review's suggested narrowing: a Cedar `forbid` for each entitlement an agent did not use in the
 * window, in a new policy file, as a unified diff an admin reads, applies (`git apply`) and commits like any
 * policy change. A `forbid` names exactly one agent, action and API, and always wins over a `permit`: applied,
 * it refuses that action and nothing else.
 */

/** An entitlement to take away. */
export interface Unused {
  agent: string;
  audience: string;
  action: string;
}

/**
 * What a narrowing takes away from reviewed agents: each unused entitlement of an agent not expired (an
 * expired agent is refused everything already), agent by agent in the order given.
 */
export function unusedEntitlements(
  agents: readonly { agent: string; expired: boolean; unused: readonly { audience: string; action: string }[] }[],
): Unused[] {
  return agents.flatMap((review) =>
    review.expired ? [] : review.unused.map(({ audience, action }) => ({ agent: review.agent, audience, action })),
  );
}

export interface Narrowing {
  /** The policy file the diff creates. */
  file: string;
  /** Its Cedar text. */
  cedar: string;
  /** A unified diff (`git apply`) that creates it. */
  diff: string;
  forbids: number;
}

/** A Cedar string literal: the ids and audiences the policy compiler admits need no escape but these two. */
const cedarString = (value: string): string => `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;

/** A policy id from a review day, an agent and an action: the `a-z0-9-` of them, numbered to keep it unique. */
function policyId(day: string, unused: Unused, n: number): string {
  const slug = `${unused.agent}-${unused.action}`.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  return `review-${day}-${n}-${slug}`.slice(0, 120);
}

/**
 * The narrowing for `unused` (in the order given), reviewed on `day` (`YYYY-MM-DD`) over `days` days; null
 * when nothing is unused. Entries whose text would hold a line break are left out: no id or audience the
 * policy compiler admits has one.
 */
export function suggestNarrowing(unused: readonly Unused[], day: string, days: number): Narrowing | null {
  const safe = unused.filter((u) => !/[\r\n]/.test(`${u.agent}${u.audience}${u.action}`));
  if (safe.length === 0) return null;
  const file = `policies/review-${day}.cedar`;
  const blocks = safe.map((u, i) =>
    [
      `// Access review ${day}: ${u.agent} was not granted ${u.action} on ${u.audience} in ${days} days.`,
      `@id(${cedarString(policyId(day, u, i + 1))})`,
      'forbid (',
      `  principal == Agent::${cedarString(u.agent)},`,
      `  action == Action::${cedarString(u.action)},`,
      `  resource == Api::${cedarString(u.audience)}`,
      ');',
    ].join('\n'),
  );
  const header = [
    `// Suggested by the access review of ${day} (npm run cli -- review): entitlements not used in ${days} days.`,
    '// Each forbid takes away one action of one agent on one API. Delete a block to keep that entitlement.',
  ];
  const lines = [...header, '', ...blocks.join('\n\n').split('\n')];
  const cedar = `${lines.join('\n')}\n`;
  const diff = [
    `diff --git a/${file} b/${file}`,
    'new file mode 100644',
    '--- /dev/null',
    `+++ b/${file}`,
    `@@ -0,0 +1,${lines.length} @@`,
    ...lines.map((line) => `+${line}`),
    '',
  ].join('\n');
  return { file, cedar, diff, forbids: safe.length };
}
