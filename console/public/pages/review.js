/**
 * Access review (admins and auditors): for each agent, what the policy lets it be granted beside what it was
 * granted over the window (`GET /admin/review`), the entitlements it never used, its refusals and approvals,
 * and its lifecycle (past review, expired, stale, orphaned); and the suggested narrowing, a diff of the
 * policy that takes the unused entitlements away, to copy, apply with `git apply`, check with `npm run
 * policy:check` and commit like any policy change. The console changes no policy itself.
 */
import { api, explain } from '../lib/api.js';
import { COLOURS, chartFigure } from '../lib/charts.js';
import { fields, h, pageHref, replace, time } from '../lib/dom.js';

/** @import { PageContext } from '../app.js' */

/**
 * An entitlement: an action the policy lets the agent be granted on an API, and under which condition.
 * @typedef {object} Entitlement
 * @property {string} audience
 * @property {string} action
 * @property {'allowed' | 'justification' | 'approval' | 'justification_and_approval'} condition
 * @property {'always' | 'some_hours'} hours
 * @property {string[]} grants
 * @property {number} granted
 * @property {boolean} used
 */

/**
 * One agent's review, as `GET /admin/review` answers it.
 * @typedef {object} AgentReview
 * @property {string} agent
 * @property {string} owner
 * @property {string} attestation
 * @property {string | null} review_by
 * @property {string | null} expires
 * @property {boolean} past_review
 * @property {boolean} expired
 * @property {boolean} stale
 * @property {boolean} orphaned
 * @property {number} tokens
 * @property {string | null} last_token_at
 * @property {string | null} last_token_day
 * @property {Entitlement[]} entitlements
 * @property {{ audience: string, action: string, granted: number }[]} granted_outside_policy
 * @property {{ reason: string, count: number }[]} refusals
 * @property {{ asked: number, approved: number, denied: number }} approvals
 */

/**
 * @typedef {object} Review
 * @property {number} days
 * @property {string} from
 * @property {string} to
 * @property {string} policy
 * @property {AgentReview[]} agents
 * @property {{ file: string, diff: string, forbids: number } | null} narrowing
 */

/** The windows offered, in days; the API takes any from 1 to 366. */
const WINDOWS = ['30', '90', '180', '365'];

/** Agents the chart shows at most: those with the most entitlements never used. */
const CHART_AGENTS = 20;
/** Agents a lifecycle tile names at most; the rest it counts. */
const TILE_NAMES = 12;
/** Agent cards shown at once, and each "Show more" adds. */
const CARD_PAGE = 50;

/** Entitlements `agent` never used in the window. */
const unusedCount = (/** @type {AgentReview} */ agent) => agent.entitlements.filter((e) => !e.used).length;
const DEFAULT_DAYS = '90';

/** @type {Record<Entitlement['condition'], string>} */
const CONDITIONS = {
  allowed: 'allowed',
  justification: 'with a justification',
  approval: 'after approval',
  justification_and_approval: 'with a justification, after approval',
};

/** @type {[flag: 'past_review' | 'expired' | 'stale' | 'orphaned', label: string, meaning: string][]} */
const FLAGS = [
  ['expired', 'Expired', 'past its expires date: every request is refused'],
  ['past_review', 'Past review', 'its review_by date has passed'],
  ['stale', 'Stale', 'no token in the window'],
  ['orphaned', 'Orphaned', 'its owner is no admin or approver of the broker'],
];

/**
 * Entitlements used and unused per agent: every agent of a small fleet, else the {@link CHART_AGENTS} with
 * the most never used (in the review's order), so that a fleet of thousands still reads as a chart.
 * @param {Review} review
 */
function usedChart(review) {
  const shown = new Set(
    [...review.agents]
      .sort((a, b) => unusedCount(b) - unusedCount(a))
      .slice(0, CHART_AGENTS)
      .map((a) => a.agent),
  );
  const agents = review.agents.filter((a) => shown.has(a.agent));
  const used = agents.map((a) => a.entitlements.filter((e) => e.used).length);
  const unused = agents.map(unusedCount);
  const of =
    review.agents.length > agents.length
      ? `, the ${agents.length} of ${review.agents.length} agents with the most never used`
      : ' per agent';
  return chartFigure({
    title: `Entitlements used and unused${of}, last ${review.days} days`,
    testid: 'chart-entitlements',
    summary: `${agents.map((a, i) => `${a.agent}: ${used[i]} used, ${unused[i]} unused`).join('; ')}.`,
    config: {
      type: 'bar',
      data: {
        labels: agents.map((a) => a.agent),
        datasets: [
          { label: 'Used', data: used, backgroundColor: COLOURS.granted, maxBarThickness: 28 },
          { label: 'Never used', data: unused, backgroundColor: COLOURS.approval, maxBarThickness: 28 },
        ],
      },
      options: {
        indexAxis: 'y',
        scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }, y: { stacked: true } },
      },
    },
  });
}

/** @param {Review} review */
function flagTiles(review) {
  return h(
    'div',
    { class: 'tiles' },
    FLAGS.map(([flag, label, meaning]) => {
      const named = review.agents.filter((a) => a[flag]).map((a) => a.agent);
      return h(
        'section',
        { class: 'panel tile', 'data-testid': `flag-${flag}` },
        h('h2', {}, label),
        h('p', { class: `figure ${named.length > 0 ? 'warn' : ''}` }, String(named.length)),
        h('p', { class: 'muted' }, meaning),
        named.length === 0
          ? null
          : h(
              'ul',
              { class: 'tags' },
              named.slice(0, TILE_NAMES).map((agent) => h('li', { class: 'tag' }, agent)),
            ),
        named.length > TILE_NAMES
          ? h('p', { class: 'muted', 'data-testid': `flag-${flag}-more` }, `and ${named.length - TILE_NAMES} more`)
          : null,
      );
    }),
  );
}

/** @param {AgentReview} agent */
function entitlementTable(agent) {
  if (agent.entitlements.length === 0) return h('p', { class: 'muted' }, 'The policy grants it nothing.');
  return h(
    'table',
    { class: 'entitlements' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['API', 'Action', 'Granted when', 'Tokens in the window'].map((title) => h('th', { scope: 'col' }, title)),
      ),
    ),
    h(
      'tbody',
      {},
      agent.entitlements.map((e) =>
        h(
          'tr',
          { class: e.used ? 'used' : 'unused', 'data-entitlement': `${e.audience} ${e.action}` },
          h('td', {}, e.audience),
          h('td', {}, h('code', {}, e.action)),
          h(
            'td',
            {},
            CONDITIONS[e.condition],
            e.hours === 'some_hours' ? h('span', { class: 'muted' }, ', some hours only') : null,
          ),
          h('td', {}, e.used ? String(e.granted) : h('span', { class: 'tag unused' }, 'never used')),
        ),
      ),
    ),
  );
}

/** @param {{ reason: string, count: number }[]} refusals */
const refusalTags = (refusals) =>
  refusals.length === 0
    ? h('span', { class: 'muted' }, 'none')
    : h(
        'ul',
        { class: 'tags' },
        refusals.map((r) => h('li', { class: 'tag' }, `${r.reason} × ${r.count}`)),
      );

/**
 * @param {AgentReview} agent
 * @param {PageContext} context
 */
function agentCard(agent, context) {
  const flags = FLAGS.filter(([flag]) => agent[flag]);
  return h(
    'article',
    { class: 'card', 'data-agent': agent.agent },
    h('h2', {}, h('span', { class: 'agent' }, agent.agent)),
    flags.length === 0
      ? null
      : h(
          'ul',
          { class: 'tags' },
          flags.map(([, label, meaning]) => h('li', { class: 'tag flag', title: meaning }, label)),
        ),
    fields([
      ['Owner', agent.owner],
      ['Attestation', agent.attestation],
      ['Review by', agent.review_by ?? h('span', { class: 'muted' }, 'no date set')],
      ['Expires', agent.expires ?? undefined],
      ['Tokens in the window', String(agent.tokens)],
      [
        'Last token',
        agent.last_token_at !== null
          ? time(agent.last_token_at)
          : (agent.last_token_day ?? h('span', { class: 'muted' }, 'none in the window')),
      ],
      ['Refusals', refusalTags(agent.refusals)],
      [
        'Approvals',
        `${agent.approvals.asked} asked, ${agent.approvals.approved} approved, ${agent.approvals.denied} denied`,
      ],
      [
        'Granted outside today’s policy',
        agent.granted_outside_policy.length === 0
          ? undefined
          : h(
              'ul',
              { class: 'tags' },
              agent.granted_outside_policy.map((g) =>
                h('li', { class: 'tag' }, `${g.action} on ${g.audience} × ${g.granted}`),
              ),
            ),
      ],
    ]),
    entitlementTable(agent),
    context.may('audit:read')
      ? h('p', {}, h('a', { href: pageHref('audit', { agent: agent.agent }) }, 'Audit records of this agent'))
      : null,
  );
}

/** @param {NonNullable<Review['narrowing']>} narrowing */
function narrowingPanel(narrowing) {
  const copied = h('span', { class: 'muted', role: 'status' });
  return h(
    'section',
    { class: 'panel', 'data-testid': 'narrowing' },
    h('h2', {}, 'Suggested narrowing'),
    h(
      'p',
      {},
      `${narrowing.forbids} forbid ${narrowing.forbids === 1 ? 'policy takes' : 'policies take'} away what no agent used, in a new file, `,
      h('code', {}, narrowing.file),
      '. Review it, delete a block to keep that entitlement, then apply it with ',
      h('code', {}, 'git apply'),
      ', run ',
      h('code', {}, 'npm run policy:check'),
      ' and commit it like any policy change.',
    ),
    h(
      'div',
      { class: 'actions' },
      h(
        'button',
        {
          type: 'button',
          onclick: async () => {
            try {
              await navigator.clipboard.writeText(narrowing.diff);
              replace(copied, 'Copied.');
            } catch {
              replace(copied, 'The browser did not allow copying: select the text below.');
            }
          },
        },
        'Copy the diff',
      ),
      copied,
    ),
    h(
      'pre',
      {
        class: 'diff',
        'data-testid': 'narrowing-diff',
        tabindex: '0',
        'aria-label': `Diff creating ${narrowing.file}`,
      },
      narrowing.diff
        .replace(/\n$/, '')
        .split('\n')
        .map((line) =>
          h(
            'span',
            { class: line.startsWith('+') && !line.startsWith('+++') ? 'add' : line.startsWith('@@') ? 'hunk' : '' },
            `${line}\n`,
          ),
        ),
    ),
  );
}

/** Whether `agent` asks for a reviewer's attention: a lifecycle flag, or an entitlement never used. */
const needsAttention = (/** @type {AgentReview} */ agent) =>
  FLAGS.some(([flag]) => agent[flag]) || agent.entitlements.some((e) => !e.used);

/**
 * Every agent's card, a page at a time ("Show more"), narrowed by a text (in its id or owner) and to those
 * that need attention, so that a fleet of thousands stays a page a reviewer can work through.
 * @param {Review} review
 * @param {PageContext} context
 */
function agentCards(review, context) {
  const search = h('input', { id: 'review-search', type: 'search', placeholder: 'agent or owner' });
  const which = h(
    'select',
    { id: 'review-which' },
    h('option', { value: 'all' }, 'every agent'),
    h('option', { value: 'attention' }, 'needing attention'),
  );
  const count = h('p', { class: 'muted', 'aria-live': 'polite', 'data-testid': 'review-count' });
  const cards = h('div', { class: 'cards' });
  const more = h('p', { class: 'more' });
  let shown = CARD_PAGE;

  function show() {
    const text = /** @type {HTMLInputElement} */ (search).value.trim().toLowerCase();
    const attention = /** @type {HTMLSelectElement} */ (which).value === 'attention';
    const matching = review.agents.filter(
      (agent) =>
        (!attention || needsAttention(agent)) &&
        (text === '' || agent.agent.toLowerCase().includes(text) || agent.owner.toLowerCase().includes(text)),
    );
    const page = matching.slice(0, shown);
    replace(count, `${page.length} of ${matching.length} agents shown`);
    replace(
      cards,
      page.map((agent) => agentCard(agent, context)),
    );
    replace(
      more,
      matching.length > page.length
        ? h(
            'button',
            {
              type: 'button',
              onclick: () => {
                shown += CARD_PAGE;
                show();
              },
            },
            'Show more',
          )
        : null,
    );
  }
  const restart = () => {
    shown = CARD_PAGE;
    show();
  };
  search.addEventListener('input', restart);
  which.addEventListener('change', restart);
  show();
  return h(
    'section',
    { 'data-testid': 'review-agents' },
    h(
      'div',
      { class: 'filters' },
      h('div', { class: 'field' }, h('label', { for: 'review-search' }, 'Find'), search),
      h('div', { class: 'field' }, h('label', { for: 'review-which' }, 'Show'), which),
    ),
    count,
    cards,
    more,
  );
}

/**
 * @param {HTMLElement} main
 * @param {PageContext} context
 */
export function reviewPage(main, context) {
  const asked = context.params.get('days') ?? DEFAULT_DAYS;
  const days = WINDOWS.includes(asked) ? asked : DEFAULT_DAYS;
  const select = h(
    'select',
    {
      id: 'review-days',
      onchange: () => {
        location.hash = pageHref('review', { days: select.value });
      },
    },
    WINDOWS.map((n) => h('option', { value: n, ...(n === days && { selected: true }) }, `last ${n} days`)),
  );
  const status = h('p', { class: 'muted status', 'aria-live': 'polite' }, 'Loading…');
  const body = h('div');
  replace(
    main,
    h('h1', {}, 'Access review'),
    h('div', { class: 'field window' }, h('label', { for: 'review-days' }, 'Window'), select),
    status,
    body,
  );
  /** @type {(() => void) | undefined} */
  let destroy;
  let stopped = false;

  (async () => {
    try {
      /** @type {Review} */
      const review = await api(`/admin/review?days=${days}`);
      if (stopped) return;
      const chart = usedChart(review);
      destroy = chart.destroy;
      replace(
        status,
        `${review.from} to ${review.to} (UTC), ${review.agents.length} agents, policy ${review.policy.slice(0, 12)}`,
      );
      replace(
        body,
        flagTiles(review),
        chart.figure,
        review.narrowing === null
          ? h('p', { class: 'panel', 'data-testid': 'narrowing' }, 'Every entitlement was used: nothing to narrow.')
          : narrowingPanel(review.narrowing),
        agentCards(review, context),
      );
    } catch (error) {
      if (!stopped) replace(status, h('span', { class: 'error', role: 'alert' }, explain(error)));
    }
  })();
  return () => {
    stopped = true;
    destroy?.();
  };
}
