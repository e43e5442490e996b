/**
 * Agents (admins act; auditors read): the inventory from policies/agents.yaml with each agent's live state,
 * and suspend, resume and revoke, each with a reason.
 */
import { api, explain } from '../lib/api.js';
import { h, pageHref, replace, time } from '../lib/dom.js';

/** @import { PageContext } from '../app.js' */

/**
 * An agent as `GET /admin/agents` lists it.
 * @typedef {object} Agent
 * @property {string} agent
 * @property {string} owner
 * @property {string | undefined} description
 * @property {string[]} labels
 * @property {{ method: 'self_signed', keys: string[] } | { method: 'issuer', issuer: string, subject: string, claims: Record<string, string> }} attestation
 * @property {boolean} dpop_required
 * @property {boolean} suspended
 * @property {string | null} revoked_before
 * @property {{ action: string, by: string, reason: string, at: string } | null} last_change
 */

/** @typedef {'suspend' | 'resume' | 'revoke' | 'contain'} AgentAction */

/**
 * Each action and the route it posts to: `contain` is a revoke that suspends in the same step.
 * @type {Record<AgentAction, { route: string, suspend?: true, button: string, confirm: string, done: string }>}
 */
const ACTIONS = {
  suspend: {
    route: 'suspend',
    button: 'Suspend',
    confirm: 'Suspend: refuse all its token requests and hold every token it has inactive until resumed',
    done: 'is suspended: its token requests are refused and its tokens inactive until resumed',
  },
  resume: {
    route: 'resume',
    button: 'Resume',
    confirm: 'Resume: let it request tokens again; the tokens it held come back unless revoked',
    done: 'is resumed: it may request tokens again',
  },
  revoke: {
    route: 'revoke',
    button: 'Revoke tokens',
    confirm: 'Revoke every token it holds now (it may get new ones)',
    done: 'had every token it held revoked',
  },
  contain: {
    route: 'revoke',
    suspend: true,
    button: 'Revoke and suspend',
    confirm:
      'Revoke every token it holds and suspend it, in one step: no token outlives this (for a compromised agent)',
    done: 'had every token it held revoked and is suspended',
  },
};

function attestation(/** @type {Agent} */ agent) {
  const { attestation: how } = agent;
  if (how.method === 'self_signed') return ['self-signed, keys ', how.keys.map((kid) => h('code', {}, kid))];
  return [`issuer ${how.issuer}, subject `, h('code', {}, how.subject)];
}

function liveState(/** @type {Agent} */ agent) {
  const change = agent.last_change;
  return [
    h('span', { class: `badge ${agent.suspended ? 'engaged' : 'released'}` }, agent.suspended ? 'Suspended' : 'Active'),
    agent.revoked_before === null
      ? null
      : h('div', {}, 'Tokens issued before ', time(agent.revoked_before), ' revoked'),
    change === null
      ? null
      : h(
          'div',
          { class: 'muted' },
          `${change.action} by ${change.by}, `,
          time(change.at),
          ': ',
          h('q', {}, change.reason),
        ),
  ];
}

/**
 * @param {HTMLElement} main
 * @param {PageContext} context
 */
export function agentsPage(main, context) {
  const notice = h('div', { class: 'notices', 'aria-live': 'polite' });
  const rows = h('tbody');
  const more = h('div', { class: 'actions' });
  const problem = h('p', { class: 'error', role: 'alert' });
  replace(
    main,
    h('h1', {}, 'Agents'),
    context.may('agents:act')
      ? null
      : h('p', { class: 'muted' }, `Your role (${context.identity.role}) can read agents; only admins act on them.`),
    notice,
    problem,
    h(
      'table',
      { class: 'agents' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Agent', 'Owner', 'Attestation', 'Labels', 'DPoP', 'Status'].map((title) =>
            h('th', { scope: 'col' }, title),
          ),
          context.may('agents:act') ? h('th', { scope: 'col' }, 'Act') : null,
        ),
      ),
      rows,
    ),
    more,
  );
  let stopped = false;

  /**
   * The row of one agent, and the reason form of the action chosen on it.
   * @param {Agent} agent
   */
  function row(agent) {
    const tr = h('tr', { 'data-agent': agent.agent });
    const form = h('tr', { class: 'act', hidden: true });
    /** @param {Agent} updated */
    const update = (updated) => {
      const next = row(updated);
      tr.replaceWith(next.tr);
      form.replaceWith(next.form);
    };
    /** @param {AgentAction} action */
    const choose = (action) => {
      replace(
        form,
        h(
          'td',
          { colspan: '7' },
          actionForm(agent, action, update, () => form.setAttribute('hidden', '')),
        ),
      );
      form.removeAttribute('hidden');
      form.querySelector('textarea')?.focus();
    };
    replace(
      tr,
      h(
        'td',
        {},
        h('strong', {}, agent.agent),
        agent.description === undefined ? null : h('div', { class: 'muted' }, agent.description),
        context.may('audit:read') ? h('a', { href: pageHref('audit', { agent: agent.agent }) }, 'Audit records') : null,
      ),
      h('td', {}, agent.owner),
      h('td', {}, attestation(agent)),
      h(
        'td',
        {},
        h(
          'ul',
          { class: 'tags' },
          agent.labels.map((label) => h('li', { class: 'tag' }, label)),
        ),
      ),
      h('td', {}, agent.dpop_required ? 'required' : 'optional'),
      h('td', {}, liveState(agent)),
      context.may('agents:act')
        ? h(
            'td',
            {},
            h(
              'div',
              { class: 'actions' },
              agent.suspended
                ? h('button', { type: 'button', onclick: () => choose('resume') }, ACTIONS.resume.button)
                : h(
                    'button',
                    { type: 'button', class: 'danger', onclick: () => choose('suspend') },
                    ACTIONS.suspend.button,
                  ),
              h('button', { type: 'button', onclick: () => choose('revoke') }, ACTIONS.revoke.button),
              agent.suspended
                ? null
                : h(
                    'button',
                    { type: 'button', class: 'danger', onclick: () => choose('contain') },
                    ACTIONS.contain.button,
                  ),
            ),
          )
        : null,
    );
    return { tr, form };
  }

  /**
   * @param {Agent} agent
   * @param {AgentAction} action
   * @param {(updated: Agent) => void} update
   * @param {() => void} cancel
   */
  function actionForm(agent, action, update, cancel) {
    const id = `reason-${action}-${agent.agent}`;
    const reason = h('textarea', { id, rows: '2', required: true, maxlength: '1000' });
    const failure = h('p', { class: 'error', role: 'alert' });
    const confirm = h(
      'button',
      { type: 'submit', class: action === 'resume' ? '' : 'danger' },
      `${ACTIONS[action].button} ${agent.agent}`,
    );
    return h(
      'form',
      {
        novalidate: true,
        onsubmit: async (event) => {
          event.preventDefault();
          const why = reason.value.trim();
          if (why === '') {
            replace(failure, 'A reason is required.');
            return;
          }
          confirm.disabled = true;
          replace(failure, 'Waiting for the broker…');
          try {
            const { route, suspend } = ACTIONS[action];
            /** @type {Agent} */
            const updated = await api(`/admin/agents/${encodeURIComponent(agent.agent)}/${route}`, {
              method: 'POST',
              body: { reason: why, ...(suspend && { suspend }) },
            });
            if (stopped) return;
            notice.prepend(h('p', { class: 'notice', role: 'status' }, `${agent.agent} ${ACTIONS[action].done}.`));
            update(updated);
          } catch (error) {
            replace(failure, explain(error));
            confirm.disabled = false;
          }
        },
      },
      h('label', { for: id }, `${ACTIONS[action].confirm}. Reason (recorded in the audit log with your name)`),
      reason,
      h(
        'div',
        { class: 'actions' },
        confirm,
        h('button', { type: 'button', class: 'link', onclick: cancel }, 'Cancel'),
      ),
      failure,
    );
  }

  /** @param {string | null} cursor */
  async function load(cursor) {
    replace(more);
    try {
      const page = await api(
        `/admin/agents?limit=100${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`,
      );
      if (stopped) return;
      for (const agent of /** @type {Agent[]} */ (page.agents)) {
        const { tr, form } = row(agent);
        rows.append(tr, form);
      }
      if (page.next_cursor !== null)
        replace(more, h('button', { type: 'button', onclick: () => load(page.next_cursor) }, 'More agents'));
    } catch (error) {
      if (!stopped) replace(problem, explain(error));
    }
  }

  load(null);
  return () => {
    stopped = true;
  };
}
