/**
 * Overview (admins and auditors): the fleet at a glance. Tokens issued and refused per day, refusals by
 * reason and the busiest agents over the last 30 days (`GET /admin/usage`, the daily counts kept beside the
 * audit log), as charts; the kill switch, the approvals waiting for a person, and the audit log's health
 * (`GET /admin/audit/backlog`, and the hash chain on request) as tiles. Every read is an audited admin call,
 * so the page reads once when opened and again when asked, not on a timer.
 */
import { api, explain } from '../lib/api.js';
import { COLOURS, chartFigure } from '../lib/charts.js';
import { duration, h, pageHref, replace, time } from '../lib/dom.js';

/** @import { PageContext } from '../app.js' */

/**
 * One day's counts, or one agent's, as `GET /admin/usage` answers them.
 * @typedef {{ issued: number, refused: number, approvals_asked: number, approved: number, denied: number }} Tally
 * @typedef {object} Usage
 * @property {number} days
 * @property {string} from
 * @property {string} to
 * @property {Tally} totals
 * @property {(Tally & { day: string })[]} series every day of the window, oldest first
 * @property {{ reason: string, count: number }[]} refusals_by_reason most frequent first
 * @property {(Tally & { agent: string })[]} top_agents most requests first
 */

/** The days the charts cover, today (UTC) included. */
const DAYS = 30;
/** The agents the top-agents chart names. */
const TOP_AGENTS = 8;

const DAY = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });

const count = (/** @type {number} */ n, /** @type {string} */ one, /** @type {string} */ many) =>
  `${n} ${n === 1 ? one : many}`;

/** @param {Usage} usage */
function overTime(usage) {
  const { issued, refused, approvals_asked: asked } = usage.totals;
  const busiest = usage.series.reduce((top, day) => (day.issued + day.refused > top.issued + top.refused ? day : top));
  return chartFigure({
    title: `Tokens issued and refused per day, last ${DAYS} days`,
    testid: 'chart-over-time',
    summary:
      `Over the last ${DAYS} days, ${count(issued, 'token', 'tokens')} issued, ${refused} refused and ` +
      `${count(asked, 'approval', 'approvals')} asked for. ` +
      (issued + refused === 0
        ? 'No request on any day.'
        : `Busiest day ${busiest.day}: ${busiest.issued} issued, ${busiest.refused} refused.`),
    config: {
      type: 'bar',
      data: {
        labels: usage.series.map((day) => DAY.format(Date.parse(day.day))),
        datasets: [
          { label: 'Issued', data: usage.series.map((day) => day.issued), backgroundColor: COLOURS.granted },
          {
            label: 'Approval asked',
            data: usage.series.map((day) => day.approvals_asked),
            backgroundColor: COLOURS.approval,
          },
          { label: 'Refused', data: usage.series.map((day) => day.refused), backgroundColor: COLOURS.refused },
        ],
      },
      options: {
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
      },
    },
  });
}

/** @param {Usage} usage */
function byReason(usage) {
  const reasons = usage.refusals_by_reason;
  const total = usage.totals.refused;
  return chartFigure({
    title: 'Refusals by reason',
    testid: 'chart-reasons',
    summary:
      total === 0
        ? `No refusal in the last ${DAYS} days.`
        : `${count(total, 'refusal', 'refusals')}: ${reasons.map((r) => `${r.reason} ${r.count}`).join(', ')}.`,
    config: {
      type: 'bar',
      data: {
        labels: reasons.map((r) => r.reason),
        datasets: [
          {
            label: 'Refusals',
            data: reasons.map((r) => r.count),
            backgroundColor: COLOURS.refused,
            maxBarThickness: 28,
          },
        ],
      },
      options: {
        indexAxis: 'y',
        plugins: { legend: { display: false } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    },
  });
}

/** @param {Usage} usage */
function topAgents(usage) {
  const top = usage.top_agents.slice(0, TOP_AGENTS);
  return chartFigure({
    title: `Top agents by requests, last ${DAYS} days`,
    testid: 'chart-agents',
    summary:
      top.length === 0
        ? `No agent asked for a token in the last ${DAYS} days.`
        : `${top.map((a) => `${a.agent}: ${a.issued} issued, ${a.refused} refused`).join('; ')}.`,
    config: {
      type: 'bar',
      data: {
        labels: top.map((a) => a.agent),
        datasets: [
          { label: 'Issued', data: top.map((a) => a.issued), backgroundColor: COLOURS.granted, maxBarThickness: 28 },
          { label: 'Refused', data: top.map((a) => a.refused), backgroundColor: COLOURS.refused, maxBarThickness: 28 },
        ],
      },
      options: {
        indexAxis: 'y',
        scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }, y: { stacked: true } },
      },
    },
  });
}

/**
 * A tile: a heading, what it shows at a glance, and a link to the page that shows more.
 * @param {string} testid
 * @param {string} title
 * @param {...Child} content
 */
const tile = (testid, title, ...content) =>
  h('section', { class: 'panel tile', 'data-testid': testid, 'aria-live': 'polite' }, h('h2', {}, title), content);

/** @param {{ engaged: boolean, by: string | null, at: string | null }} state */
function killSwitchTile(state) {
  return [
    h(
      'p',
      { class: `badge big ${state.engaged ? 'engaged' : 'released'}` },
      state.engaged ? 'Engaged: no token is issued' : 'Released: tokens are issued',
    ),
    state.at === null
      ? h('p', { class: 'muted' }, 'Never changed')
      : h('p', { class: 'muted' }, `${state.by} · `, time(state.at)),
    h('a', { href: pageHref('kill-switch') }, 'Kill switch'),
  ];
}

/**
 * The first page of `GET /admin/approvals?status=pending`: where the listing counts the approvals of every
 * page per agent (`agents`), the count is theirs; else it is the page's, with a + when more pages follow.
 * @param {{ approvals: { created_at: string }[], next_cursor?: string | null,
 *   agents?: { agent: string, count: number }[] }} listing
 */
function approvalsTile(listing) {
  const pending = listing.approvals;
  const total = listing.agents?.reduce((sum, agent) => sum + agent.count, 0);
  const more = total === undefined && listing.next_cursor !== undefined && listing.next_cursor !== null;
  const waiting = total ?? pending.length;
  const oldest = pending.reduce(
    (first, approval) => (first === undefined || approval.created_at < first ? approval.created_at : first),
    /** @type {string | undefined} */ (undefined),
  );
  return [
    h('p', { class: `figure ${waiting > 0 ? 'warn' : ''}` }, `${waiting}${more ? '+' : ''}`),
    h(
      'p',
      {},
      waiting === 1 ? 'request waits for an approver' : 'requests wait for an approver',
      listing.agents === undefined || waiting === 0 ? '' : `, from ${count(listing.agents.length, 'agent', 'agents')}`,
    ),
    oldest === undefined
      ? null
      : h('p', { class: 'muted' }, `Oldest waiting ${duration((Date.now() - Date.parse(oldest)) / 1000)}`),
    h('a', { href: pageHref('approvals') }, 'Approvals'),
  ];
}

/**
 * The audit log on its way to D1 and in it, as `GET /admin/audit/backlog` answers.
 * @param {{ waiting: number, oldest_waiting_seconds: number | null, dead_letters: { count: number },
 *   hot_window: { size_bytes: number, budget_bytes: number, warning: string | null } }} backlog
 */
function auditTile(backlog) {
  const { hot_window: hot, dead_letters: dead } = backlog;
  const used = Math.round((hot.size_bytes / hot.budget_bytes) * 100);
  const healthy = dead.count === 0 && hot.warning === null;
  return [
    h('p', { class: `badge big ${healthy ? 'released' : 'engaged'}` }, healthy ? 'Healthy' : 'Needs attention'),
    h(
      'p',
      {},
      `${count(backlog.waiting, 'record', 'records')} on the way to D1`,
      backlog.oldest_waiting_seconds === null || backlog.waiting === 0
        ? ''
        : ` (oldest ${duration(backlog.oldest_waiting_seconds)})`,
      ` · ${count(dead.count, 'dead letter', 'dead letters')}`,
    ),
    h('label', { for: 'hot-window' }, `Hot window: ${used} % of its budget`),
    h('meter', {
      id: 'hot-window',
      min: '0',
      max: String(hot.budget_bytes),
      value: String(hot.size_bytes),
      high: String(hot.budget_bytes * 0.8),
      optimum: '0',
    }),
    hot.warning === null ? null : h('p', { class: 'error' }, hot.warning),
  ];
}

/**
 * @param {HTMLElement} main
 * @param {PageContext} _context
 */
export function overviewPage(main, _context) {
  const status = h('p', { class: 'muted status', 'aria-live': 'polite' });
  const killSwitch = tile('tile-kill-switch', 'Kill switch', h('p', { class: 'muted' }, 'Loading…'));
  const approvals = tile('tile-approvals', 'Pending approvals', h('p', { class: 'muted' }, 'Loading…'));
  const audit = tile('tile-audit', 'Audit log', h('p', { class: 'muted' }, 'Loading…'));
  const chainState = h('p', { class: 'muted', 'data-testid': 'chain-state' }, 'Not checked: it reads every record.');
  const chain = tile(
    'tile-chain',
    'Hash chain',
    chainState,
    h('button', { type: 'button', onclick: verify }, 'Verify the chain'),
  );
  const charts = h('div', { class: 'charts', 'aria-live': 'polite' });
  replace(
    main,
    h('h1', {}, 'Overview'),
    status,
    h('div', { class: 'tiles' }, killSwitch, approvals, audit, chain),
    charts,
  );

  /** @type {(() => void)[]} */
  let drawn = [];
  let stopped = false;

  /**
   * Fills `into` with what `read` makes of its answer, or with why it could not.
   * @template T
   * @param {HTMLElement} into
   * @param {string} path
   * @param {(answer: T) => Child} show
   */
  async function section(into, path, show) {
    const heading = into.querySelector('h2');
    try {
      const answer = await api(path);
      if (!stopped) replace(into, heading, show(answer));
    } catch (error) {
      if (!stopped) replace(into, heading, h('p', { class: 'error', role: 'alert' }, explain(error)));
    }
  }

  async function usage() {
    try {
      /** @type {Usage} */
      const usage = await api(`/admin/usage?days=${DAYS}`);
      if (stopped) return;
      for (const destroy of drawn) destroy();
      const figures = [overTime(usage), byReason(usage), topAgents(usage)];
      drawn = figures.map((figure) => figure.destroy);
      replace(
        charts,
        figures.map((figure) => figure.figure),
      );
    } catch (error) {
      if (!stopped) replace(charts, h('p', { class: 'error', role: 'alert' }, explain(error)));
    }
  }

  async function verify() {
    replace(chainState, 'Checking…');
    chainState.className = 'muted';
    try {
      const report = await api('/admin/audit/verify');
      if (stopped) return;
      chainState.className = report.valid ? 'ok' : 'error';
      replace(
        chainState,
        report.valid
          ? `Holds: ${count(report.records, 'record', 'records')} checked.`
          : `BROKEN: ${count(report.problems.length, 'problem', 'problems')}. `,
        report.valid ? null : h('a', { href: pageHref('audit') }, 'Audit'),
      );
    } catch (error) {
      if (!stopped) replace(chainState, h('span', { class: 'error', role: 'alert' }, explain(error)));
    }
  }

  async function load() {
    replace(status, 'Loading…');
    await Promise.all([
      section(killSwitch, '/admin/kill-switch', killSwitchTile),
      section(approvals, '/admin/approvals?status=pending', approvalsTile),
      section(audit, '/admin/audit/backlog', auditTile),
      usage(),
    ]);
    if (!stopped)
      replace(
        status,
        'Updated ',
        time(Date.now()),
        ' · ',
        h('button', { type: 'button', class: 'link', onclick: load }, 'Refresh'),
      );
  }

  load();
  return () => {
    stopped = true;
    for (const destroy of drawn) destroy();
  };
}
