/**
 * Audit (admins and auditors): the log with the filters of `GET /admin/audit`, newest first, a page at a
 * time; any record in full; and the state of the hash chain from `GET /admin/audit/verify`.
 */
import { api, explain } from '../lib/api.js';
import { agentText, fields, h, pageHref, replace, time } from '../lib/dom.js';

/** @import { PageContext } from '../app.js' */

/** @typedef {Record<string, unknown> & { seq: number, at: number, event: string, decision: 'granted' | 'refused' }} AuditRecord */

const FILTERS = /** @type {const} */ (['agent', 'task', 'decision', 'event', 'since', 'until', 'limit']);

/** What a chain problem means. */
const PROBLEMS = {
  record_changed: 'the record was changed after it was sealed',
  record_missing: 'a sealed record is gone',
  seal_missing: 'the record has no seal',
  chain_rewritten: 'the seals before this record were rewritten',
  head_mismatch: 'the chain does not end at the head the sealer anchored',
};

/** A `datetime-local` value (local time) from an ISO 8601 time, or '' */
function localInput(/** @type {string | null} */ iso) {
  if (iso === null || Number.isNaN(Date.parse(iso))) return '';
  const date = new Date(iso);
  return new Date(date.getTime() - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
}

/** @param {unknown} value */
const text = (value) => (value === null || value === undefined ? h('span', { class: 'muted' }, '–') : String(value));

/** Every field of a record, the agent's own words as such, the detail as JSON. */
function recordDetail(/** @type {AuditRecord} */ record) {
  const agentWords = new Set(['task_description', 'justification', 'user_agent']);
  /** @type {[string, Child][]} */
  const rows = [];
  for (const [name, value] of Object.entries(record)) {
    if (name === 'detail') continue;
    if (name === 'at') rows.push([name, time(record.at)]);
    else if (name === 'token_exp' && typeof value === 'number') rows.push([name, time(value * 1000)]);
    else if (agentWords.has(name)) rows.push([name, value === null ? text(null) : agentText(String(value))]);
    else if (name === 'prev_hash' || name === 'hash')
      rows.push([
        name,
        value === null
          ? h('span', { class: 'muted' }, 'not sealed yet (sealed every minute)')
          : h('code', {}, String(value)),
      ]);
    else rows.push([name, text(value)]);
  }
  rows.push(['detail', h('pre', { class: 'json' }, JSON.stringify(record.detail, null, 2))]);
  return fields(rows);
}

/**
 * @param {HTMLElement} main
 * @param {PageContext} context
 */
export function auditPage(main, context) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, context.params.get(name) ?? '']));
  /** @param {string} name @param {string} label @param {HTMLInputElement | HTMLSelectElement} input */
  const field = (name, label, input) => {
    input.id = `filter-${name}`;
    return h('div', { class: 'field' }, h('label', { for: input.id }, label), input);
  };
  const inputs = {
    agent: h('input', { value: filters.agent, spellcheck: 'false' }),
    task: h('input', { value: filters.task, spellcheck: 'false' }),
    decision: h(
      'select',
      {},
      ['', 'granted', 'refused'].map((value) =>
        h('option', { value, ...(filters.decision === value && { selected: true }) }, value === '' ? 'any' : value),
      ),
    ),
    event: h('input', { value: filters.event, spellcheck: 'false', placeholder: 'token.exchange' }),
    since: h('input', { type: 'datetime-local', value: localInput(filters.since ?? null) }),
    until: h('input', { type: 'datetime-local', value: localInput(filters.until ?? null) }),
    limit: h('input', { type: 'number', min: '1', max: '500', value: filters.limit || '50' }),
  };
  const filterForm = h(
    'form',
    {
      class: 'filters panel',
      onsubmit: (event) => {
        event.preventDefault();
        /** @type {Record<string, string>} */
        const query = {};
        for (const name of FILTERS) {
          const value = inputs[name].value.trim();
          if (value === '') continue;
          query[name] = name === 'since' || name === 'until' ? new Date(value).toISOString() : value;
        }
        location.hash = pageHref('audit', query);
      },
    },
    field('agent', 'Agent', inputs.agent),
    field('task', 'Task id', inputs.task),
    field('decision', 'Decision', inputs.decision),
    field('event', 'Event', inputs.event),
    field('since', 'Since', inputs.since),
    field('until', 'Until', inputs.until),
    field('limit', 'Per page', inputs.limit),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'submit' }, 'Apply'),
      h('a', { href: pageHref('audit'), class: 'button link' }, 'Clear'),
    ),
  );

  const chain = h(
    'section',
    { class: 'panel chain', 'aria-live': 'polite' },
    h('strong', {}, 'Hash chain: '),
    h('span', { 'data-testid': 'chain-state', class: 'muted' }, 'not checked'),
    ' ',
    h('button', { type: 'button', onclick: verify }, 'Verify the chain'),
  );
  const detail = h('section', { class: 'panel detail', hidden: true, 'aria-live': 'polite' });
  const problem = h('p', { class: 'error', role: 'alert' });
  const rows = h('tbody');
  const pager = h('div', { class: 'actions pager' });
  const status = h('p', { class: 'muted status' });
  replace(
    main,
    h('h1', {}, 'Audit'),
    chain,
    filterForm,
    h(
      'p',
      { class: 'muted' },
      'A record reaches the log a moment after its decision: refresh to see the newest. ',
      h('button', { type: 'button', class: 'link', onclick: () => load(cursors.at(-1) ?? null) }, 'Refresh'),
    ),
    detail,
    problem,
    status,
    h(
      'table',
      { class: 'audit' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['#', 'Time', 'Event', 'Decision', 'Agent', 'Actor', 'Task', 'Reason'].map((title) =>
            h('th', { scope: 'col' }, title),
          ),
        ),
      ),
      rows,
    ),
    pager,
  );

  /** Cursors of the pages shown so far: the last is the current page's (null for the newest). */
  /** @type {(string | null)[]} */
  const cursors = [];
  let stopped = false;

  async function verify() {
    const state = /** @type {HTMLElement} */ (chain.querySelector('[data-testid="chain-state"]'));
    replace(state, 'checking…');
    try {
      const report = await api('/admin/audit/verify');
      if (stopped) return;
      state.className = report.valid ? 'ok' : 'error';
      replace(
        state,
        report.valid
          ? `holds: ${report.records} records checked, head #${report.head.seq} ${String(report.head.hash).slice(0, 16)}…`
          : `BROKEN: ${report.problems
              .map(
                (/** @type {{ seq: number, problem: keyof PROBLEMS }} */ p) =>
                  `#${p.seq} ${PROBLEMS[p.problem] ?? p.problem}`,
              )
              .join('; ')}`,
      );
    } catch (error) {
      if (!stopped) replace(state, explain(error));
    }
  }

  /** @param {AuditRecord} record */
  function open(record) {
    replace(
      detail,
      h('h2', {}, `Record #${record.seq}: ${record.event}, ${record.decision}`),
      recordDetail(record),
      h('button', { type: 'button', onclick: () => detail.setAttribute('hidden', '') }, 'Close'),
    );
    detail.removeAttribute('hidden');
    detail.scrollIntoView({ block: 'nearest' });
  }

  /** @param {string | null} cursor */
  async function load(cursor) {
    /** @type {Record<string, string>} */
    const query = {};
    for (const name of FILTERS) if (filters[name] !== '') query[name] = String(filters[name]);
    if (cursor !== null) query.cursor = cursor;
    replace(problem);
    try {
      const page = await api(`/admin/audit?${new URLSearchParams(query)}`);
      if (stopped) return;
      /** @type {AuditRecord[]} */
      const records = page.records;
      replace(
        rows,
        records.map((record) =>
          h(
            'tr',
            { class: record.decision, 'data-seq': String(record.seq) },
            h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => open(record) }, `#${record.seq}`)),
            h('td', {}, time(record.at)),
            h('td', {}, record.event),
            h('td', {}, record.decision),
            h(
              'td',
              {},
              record.agent === null
                ? text(null)
                : h('a', { href: pageHref('audit', { agent: String(record.agent) }) }, String(record.agent)),
            ),
            h('td', {}, text(record.actor)),
            h(
              'td',
              {},
              record.task_id === null
                ? text(null)
                : h('a', { href: pageHref('audit', { task: String(record.task_id) }) }, String(record.task_id)),
            ),
            h('td', {}, text(record.reason ?? record.admin_reason)),
          ),
        ),
      );
      replace(
        status,
        records.length === 0 ? 'No record matches.' : `${records.length} records, newest first`,
        cursors.length > 0 ? ` (page ${cursors.length + 1})` : '',
      );
      replace(
        pager,
        cursors.length > 0
          ? h(
              'button',
              {
                type: 'button',
                onclick: () => {
                  cursors.pop();
                  load(cursors.at(-1) ?? null);
                },
              },
              '← Newer',
            )
          : null,
        page.next_cursor === null
          ? null
          : h(
              'button',
              {
                type: 'button',
                onclick: () => {
                  cursors.push(page.next_cursor);
                  load(page.next_cursor);
                },
              },
              'Older →',
            ),
      );
    } catch (error) {
      if (!stopped) replace(problem, explain(error));
    }
  }

  load(null);
  return () => {
    stopped = true;
  };
}
