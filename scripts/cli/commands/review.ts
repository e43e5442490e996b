/**
 * `review`: the access review (`GET /admin/review`) for a person (a table), for an auditor's file (Markdown,
 * CSV) or for a tool (JSON); and the suggested narrowing as a diff to `git apply`.
 */
import { cp, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { z } from 'zod';
import { type Narrowing, suggestNarrowing, type Unused, unusedEntitlements } from '../../../worker/policy/narrowing';
import { compilePolicyFolder } from '../../policy/compile';
import { runPolicyTests } from '../../policy/tests';
import { CliError } from '../errors';
import { request } from '../http';
import { instant, jsonText, table } from '../render';
import type { Session } from '../session';

const ROLE = 'admin or auditor';

const Entitlement = z.object({
  audience: z.string(),
  action: z.string(),
  condition: z.string(),
  hours: z.string(),
  grants: z.array(z.string()),
  granted: z.number(),
  used: z.boolean(),
});

const AgentReview = z.object({
  agent: z.string(),
  owner: z.string(),
  attestation: z.string(),
  review_by: z.string().nullable(),
  expires: z.string().nullable(),
  past_review: z.boolean(),
  expired: z.boolean(),
  stale: z.boolean(),
  orphaned: z.boolean(),
  tokens: z.number(),
  last_token_at: z.string().nullable(),
  last_token_day: z.string().nullable(),
  entitlements: z.array(Entitlement),
  unused: z.array(z.object({ audience: z.string(), action: z.string(), condition: z.string() })),
  granted_outside_policy: z.array(z.object({ audience: z.string(), action: z.string(), granted: z.number() })),
  refusals: z.array(z.object({ reason: z.string(), count: z.number() })),
  approvals: z.object({ asked: z.number(), approved: z.number(), denied: z.number() }),
});
type AgentReview = z.infer<typeof AgentReview>;

export const Review = z.object({
  days: z.number(),
  from: z.string(),
  to: z.string(),
  policy: z.string(),
  agents: z.array(AgentReview),
  past_review: z.array(z.string()),
  expired: z.array(z.string()),
  stale: z.array(z.string()),
  orphaned: z.array(z.string()),
  narrowing: z.object({ file: z.string(), cedar: z.string(), diff: z.string(), forbids: z.number() }).nullable(),
});
export type Review = z.infer<typeof Review>;

const FORMATS = ['table', 'md', 'csv', 'json'] as const;
type Format = (typeof FORMATS)[number];

function days(value: string): number {
  if (!/^[0-9]{1,3}$/.test(value) || Number(value) < 1 || Number(value) > 366)
    throw new InvalidArgumentError('expected a whole number of days from 1 to 366.');
  return Number(value);
}

/** What needs a look about an agent, in words. */
function flags(agent: AgentReview): string {
  const said = [
    agent.expired && 'expired',
    agent.past_review && 'past review',
    agent.stale && 'stale',
    agent.orphaned && 'orphaned',
    agent.unused.length > 0 && `${agent.unused.length} unused`,
  ].filter((flag): flag is string => flag !== false);
  return said.join(', ') || 'ok';
}

const lastToken = (agent: AgentReview) =>
  agent.last_token_at === null ? (agent.last_token_day ?? 'none in window') : instant(agent.last_token_at);
const refusals = (agent: AgentReview) => agent.refusals.map((r) => `${r.reason} ${r.count}`).join(', ') || '-';
const approvals = ({ approvals: a }: AgentReview) =>
  a.asked + a.approved + a.denied === 0 ? '-' : `${a.asked} asked, ${a.approved} approved, ${a.denied} denied`;
const listed = (ids: readonly string[]) => ids.join(', ') || 'none';

function entitlementRows(review: Review): string[][] {
  return review.agents.flatMap((agent) =>
    agent.entitlements.map((e) => [
      agent.agent,
      e.audience,
      e.action,
      e.condition,
      e.hours,
      String(e.granted),
      e.used ? '' : 'UNUSED',
    ]),
  );
}

const ENTITLEMENT_HEADERS = ['agent', 'api', 'action', 'condition', 'hours', 'granted', ''];

const AGENT_HEADERS = [
  'agent',
  'owner',
  'attests',
  'tokens',
  'last token',
  'review by',
  'expires',
  'refusals',
  'approvals',
  'needs a look',
];

/** One agent's row under {@link AGENT_HEADERS}. */
function agentRow(agent: AgentReview): string[] {
  return [
    agent.agent,
    agent.owner,
    agent.attestation,
    String(agent.tokens),
    lastToken(agent),
    agent.review_by ?? 'not set',
    agent.expires ?? '-',
    refusals(agent),
    approvals(agent),
    flags(agent),
  ];
}

/** The review for a person: agents, the lists that need action, every entitlement, what to do next. */
export function reviewTable(review: Review): string {
  const agents = table(AGENT_HEADERS, review.agents.map(agentRow), 'no agents in the inventory');
  const lists = [
    `past review: ${listed(review.past_review)}`,
    `stale (no token in ${review.days} days): ${listed(review.stale)}`,
    `orphaned (owner is no admin or approver): ${listed(review.orphaned)}`,
    `expired: ${listed(review.expired)}`,
  ].join('\n');
  const narrowing =
    review.narrowing === null
      ? 'every entitlement was used: nothing to narrow'
      : `${review.narrowing.forbids} unused entitlements: --narrowing FILE writes a diff that forbids them (git apply FILE, then npm run policy:check)`;
  return [
    `access review of ${review.days} days, ${review.from} to ${review.to} (policy ${review.policy})\n`,
    agents,
    `${lists}\n`,
    table(ENTITLEMENT_HEADERS, entitlementRows(review), 'no agent is entitled to anything'),
    `${narrowing}\n`,
  ].join('\n');
}

/** A Markdown table cell: no pipe or line break breaks the row. */
const mdCell = (text: string) => text.replaceAll('\\', '\\\\').replaceAll('|', '\\|').replace(/\s+/g, ' ');

function mdTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.map(mdCell).join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

/** The review for an auditor's file, in Markdown. */
export function reviewMarkdown(review: Review): string {
  const sections = [
    `# Access review, ${review.from} to ${review.to}`,
    `${review.days} days; policy \`${review.policy}\`.`,
    '## Agents',
    mdTable(AGENT_HEADERS, review.agents.map(agentRow)),
    [
      `- **Past review**: ${listed(review.past_review)}`,
      `- **Stale** (no token in the window): ${listed(review.stale)}`,
      `- **Orphaned** (the owner is no admin or approver under Cloudflare Access): ${listed(review.orphaned)}`,
      `- **Expired**: ${listed(review.expired)}`,
    ].join('\n'),
    '## Entitlements',
    mdTable(
      ENTITLEMENT_HEADERS.slice(0, -1).concat('used'),
      entitlementRows(review).map((row) => [...row.slice(0, -1), row.at(-1) === '' ? 'yes' : '**no**']),
    ),
    '## Suggested narrowing',
    review.narrowing === null
      ? 'Every entitlement was used in the window: nothing to narrow.'
      : `A \`forbid\` for each of the ${review.narrowing.forbids} unused entitlements, in \`${review.narrowing.file}\` (\`git apply\`, then \`npm run policy:check\`):\n\n\`\`\`diff\n${review.narrowing.diff}\`\`\``,
  ];
  return `${sections.join('\n\n')}\n`;
}

/** A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break. */
const csvField = (value: string) => (/[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value);

/** The review as CSV: a line per entitlement, and one for an agent entitled to nothing. */
export function reviewCsv(review: Review): string {
  const headers = [
    'agent',
    'owner',
    'attestation',
    'review_by',
    'expires',
    'past_review',
    'expired',
    'stale',
    'orphaned',
    'tokens',
    'last_token',
    'audience',
    'action',
    'condition',
    'hours',
    'granted',
    'used',
  ];
  const lines = review.agents.flatMap((agent) => {
    const about = [
      agent.agent,
      agent.owner,
      agent.attestation,
      agent.review_by ?? '',
      agent.expires ?? '',
      String(agent.past_review),
      String(agent.expired),
      String(agent.stale),
      String(agent.orphaned),
      String(agent.tokens),
      agent.last_token_at ?? agent.last_token_day ?? '',
    ];
    if (agent.entitlements.length === 0) return [[...about, '', '', '', '', '', '']];
    return agent.entitlements.map((e) => [
      ...about,
      e.audience,
      e.action,
      e.condition,
      e.hours,
      String(e.granted),
      String(e.used),
    ]);
  });
  return [headers, ...lines].map((line) => `${line.map(csvField).join(',')}\r\n`).join('');
}

/** Whether `agent` asks for a reviewer's attention: a lifecycle flag, or an entitlement never used. */
const needsAttention = (agent: AgentReview): boolean =>
  agent.expired || agent.past_review || agent.stale || agent.orphaned || agent.unused.length > 0;

/**
 * The review of some agents only: those `only` names (every agent when it names none) and, with `attention`,
 * those among them that need it. The lists keep those agents, and the narrowing takes away only their unused
 * entitlements, as the broker suggests it for the whole fleet.
 *
 * @throws {CliError} when `only` names an agent the review does not hold.
 */
export function reviewOf(review: Review, only: readonly string[], attention: boolean): Review {
  const unknown = only.filter((id) => !review.agents.some((agent) => agent.agent === id));
  if (unknown.length > 0) throw new CliError(`no agent ${unknown.join(', ')} in the review`);
  const agents = review.agents.filter(
    (agent) => (only.length === 0 || only.includes(agent.agent)) && (!attention || needsAttention(agent)),
  );
  const kept = new Set(agents.map((agent) => agent.agent));
  const keep = (ids: readonly string[]) => ids.filter((id) => kept.has(id));
  return {
    ...review,
    agents,
    past_review: keep(review.past_review),
    expired: keep(review.expired),
    stale: keep(review.stale),
    orphaned: keep(review.orphaned),
    narrowing: suggestNarrowing(unusedEntitlements(agents), review.to, review.days),
  };
}

/** What `policy:check` says of the policy folder `dir` with `narrowing` added: the agents of failing tests. */
async function failingAgents(dir: string, narrowing: Narrowing): Promise<Set<string> | 'does_not_compile'> {
  const copy = await mkdtemp(join(tmpdir(), 'tessera-narrowing-'));
  try {
    await cp(dir, join(copy, 'policies'), { recursive: true });
    await writeFile(join(copy, narrowing.file), narrowing.cedar);
    const { bundle } = await compilePolicyFolder(join(copy, 'policies'));
    if (bundle === undefined) return 'does_not_compile';
    const { outcomes } = await runPolicyTests(join(copy, 'policies/tests'), bundle);
    return new Set(outcomes.filter((outcome) => outcome.failure !== undefined).map((outcome) => outcome.agent));
  } finally {
    await rm(copy, { recursive: true, force: true });
  }
}

/**
 * The review's narrowing, checked as `npm run policy:check` would against the policy folder `dir`. A forbid
 * that alone makes a policy test of its agent fail is left out (that test says the agent keeps it); forbids
 * that fail only together (one agent left nothing on an API changes a refusal's reason) are left out for
 * that agent, until the rest passes. Unchecked when there is no such folder here.
 */
export async function checkedNarrowing(
  review: Review,
  dir: string,
): Promise<{ narrowing: Narrowing | null; left_out: Unused[]; checked: boolean }> {
  const unused = unusedEntitlements(review.agents);
  const isDir = await stat(dir).then(
    (found) => found.isDirectory(),
    () => false,
  );
  if (!isDir) return { narrowing: review.narrowing, left_out: [], checked: false };
  const failing = async (forbids: readonly Unused[]) => {
    const narrowing = suggestNarrowing(forbids, review.to, review.days);
    if (narrowing === null) return { narrowing, agents: new Set<string>() };
    const agents = await failingAgents(dir, narrowing);
    if (agents === 'does_not_compile') throw new CliError(`the suggested narrowing does not compile with ${dir}`);
    return { narrowing, agents };
  };
  const done = (narrowing: Narrowing | null, kept: readonly Unused[]) => ({
    narrowing,
    left_out: unused.filter((u) => !kept.includes(u)),
    checked: true,
  });
  let kept: Unused[] = unused;
  let check = await failing(kept);
  if (check.agents.size > 0) {
    const suspects = kept.filter((u) => check.agents.has(u.agent));
    const alone = await Promise.all(suspects.map(async (u) => ((await failing([u])).agents.has(u.agent) ? u : null)));
    kept = kept.filter((u) => !alone.includes(u));
    check = await failing(kept);
  }
  while (check.agents.size > 0) {
    const { agents } = check;
    kept = kept.filter((u) => !agents.has(u.agent));
    check = await failing(kept);
  }
  return done(check.narrowing, kept);
}

const RENDER: Record<Exclude<Format, 'json'>, (review: Review) => string> = {
  table: reviewTable,
  md: reviewMarkdown,
  csv: reviewCsv,
};

export function reviewCommand(open: () => Session): Command {
  return new Command('review')
    .description(
      "the access review: each agent's entitlements beside what it used, and the agents to look at (role admin or auditor)",
    )
    .option('--days <n>', 'the window, in whole days up to today, 1 to 366 (default 90)', days)
    .addOption(new Option('--format <format>', 'table, md, csv or json').choices(FORMATS).default('table' as Format))
    .option('--out <file>', 'write the review to this file (default: standard output)')
    .option('--narrowing <file>', 'write the suggested narrowing, a diff to git apply, to this file')
    .option('--policies <dir>', 'the policy folder the narrowing is checked against (default policies)', 'policies')
    .option('--agent <id...>', 'review these agents only (the narrowing too)')
    .option('--attention', 'review only the agents that need a look: a flag, or an entitlement never used')
    .addHelpText(
      'after',
      `
Unused: an action the policy lets the agent be granted and that no token carried in the window. Stale: no
token in the window. Orphaned: the owner gets no admin or approver role from cloudflare_access.roles.

Examples:
  npm run cli -- review
  npm run cli -- review --days 30 --format md --out review.md
  npm run cli -- review --narrowing review.diff && git apply review.diff && npm run policy:check
  npm run cli -- review --attention --format csv --out attention.csv
  npm run cli -- review --agent graph-indexer release-bot --narrowing narrow.diff`,
    )
    .action(async (options) => {
      const session = open();
      const whole = await request(
        session,
        {
          method: 'GET',
          path: '/admin/review',
          query: { days: options.days?.toString() },
          bearer: session.adminToken(ROLE),
        },
        { schema: Review, role: ROLE },
      );
      const only = options.agent ?? [];
      const review =
        only.length === 0 && options.attention !== true ? whole : reviewOf(whole, only, options.attention === true);
      const text = options.format === 'json' ? jsonText(review) : RENDER[options.format](review);
      if (options.out === undefined) session.io.out(text);
      else {
        await writeFile(options.out, text);
        session.io.out(`the review of ${review.agents.length} agents written to ${options.out}\n`);
      }
      if (options.narrowing !== undefined) {
        const { narrowing, left_out, checked } = await checkedNarrowing(review, options.policies);
        for (const u of left_out)
          session.io.err(
            `left out: ${u.agent} ${u.action} on ${u.audience}, which a policy test of ${u.agent} needs\n`,
          );
        if (!checked)
          session.io.err(`${options.policies} is not here: the narrowing is not checked with policy:check\n`);
        if (narrowing === null) session.io.out('no entitlement to narrow: no narrowing written\n');
        else {
          await writeFile(options.narrowing, narrowing.diff);
          session.io.out(
            `${narrowing.forbids} forbids written to ${options.narrowing}: git apply ${options.narrowing}, then npm run policy:check\n`,
          );
        }
      }
    });
}
