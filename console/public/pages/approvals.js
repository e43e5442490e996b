/**
 * Approvals (approvers decide; admins and auditors read): the step-up requests waiting for a human, oldest
 * first (the closest to expiring on top), a page at a time with a "Show more" control, refreshed every few
 * seconds while the tab is in view, each with what the agent asked for in its own words, what the grant
 * needs, and the time left; how many each agent has waiting, each a link to that agent's alone; decided and
 * expired ones in a second tab.
 */
import { api, explain } from '../lib/api.js';
import { agentText, duration, fields, h, pageHref, replace, time } from '../lib/dom.js';

/** @import { PageContext } from '../app.js' */

/**
 * An approval as `GET /admin/approvals` lists it.
 * @typedef {object} Approval
 * @property {string} id
 * @property {'pending' | 'approved' | 'denied' | 'expired' | 'collected'} status
 * @property {string} agent
 * @property {string} owner
 * @property {string} audience
 * @property {string[]} actions
 * @property {string[]} needs_approval
 * @property {{ id: string, description: string, hash: string }} task
 * @property {string | null} justification
 * @property {number} ttl
 * @property {string} created_at
 * @property {string} expires_at
 * @property {number} approvals_required
 * @property {string[]} approver_groups
 * @property {boolean} four_eyes
 * @property {{ grant: string, runbook?: string, action?: string, none?: string }[]} rollback
 * @property {{ by: string, decision: 'approve' | 'deny', reason: string, at: string }[]} decisions
 */

/**
 * A page of `GET /admin/approvals`.
 * @typedef {object} ApprovalPage
 * @property {Approval[]} approvals
 * @property {string | null} next_cursor
 * @property {{ agent: string, count: number }[]} agents
 */

/** Every listing is an audited admin call: often enough for a person, not a record a second. */
const REFRESH_MS = 10_000;
const DECIDED = /** @type {const} */ (['approved', 'collected', 'denied', 'expired']);
/** @param {Approval[]} approvals */
const newestFirst = (approvals) => [...approvals].sort((a, b) => b.created_at.localeCompare(a.created_at));

/** Approvals a page shows, and each "Show more" adds. */
const PAGE_SIZE = 50;

/**
 * The first `pages` pages of the approvals in `status` (of `agent` alone, if given), following `next_cursor`.
 * @param {string} status
 * @param {string | null} agent
 * @param {number} pages
 * @returns {Promise<{ approvals: Approval[], more: boolean, agents: ApprovalPage['agents'] }>}
 */
async function listPages(status, agent, pages) {
  /** @type {Approval[]} */
  const approvals = [];
  /** @type {ApprovalPage['agents']} */
  let agents = [];
  /** @type {string | null} */
  let cursor = null;
  for (let read = 0; read < pages; read += 1) {
    const query = new URLSearchParams({ status, limit: String(PAGE_SIZE) });
    if (agent !== null) query.set('agent', agent);
    if (cursor !== null) query.set('cursor', cursor);
    /** @type {ApprovalPage} */
    const page = await api(`/admin/approvals?${query}`);
    approvals.push(...page.approvals);
    if (read === 0) agents = page.agents;
    cursor = page.next_cursor;
    if (cursor === null) break;
  }
  return { approvals, more: cursor !== null, agents };
}

/** What the grant needs before the agent gets its token, in words. */
function requirement(/** @type {Approval} */ approval) {
  const count = approval.approvals_required;
  const who = `${count} approval${count === 1 ? '' : 's'} from ${count === 1 ? 'an approver' : 'different approvers'}`;
  const groups = approval.approver_groups.length === 0 ? '' : ` in group ${approval.approver_groups.join(' and ')}`;
  const fourEyes = approval.four_eyes ? `; four-eyes: ${approval.owner}, the owner, may not approve` : '';
  return `${who}${groups}${fourEyes}`;
}

/** The actions asked for, those that need the approval marked. */
function actionList(/** @type {Approval} */ approval) {
  return h(
    'ul',
    { class: 'tags' },
    approval.actions.map((action) =>
      h(
        'li',
        approval.needs_approval.includes(action) ? { class: 'tag needs', title: 'needs approval' } : { class: 'tag' },
        action,
      ),
    ),
  );
}

/** What undoes what the approval allows, as the policy declares it: a runbook, a reverse action, or why none. */
function rollbackList(/** @type {Approval} */ approval) {
  if (approval.rollback.length === 0) return h('span', { class: 'muted' }, 'not declared');
  return h(
    'ul',
    { class: 'rollback' },
    approval.rollback.map((path) =>
      h(
        'li',
        {},
        path.none === undefined
          ? [
              path.runbook === undefined
                ? null
                : h('a', { href: path.runbook, target: '_blank', rel: 'noopener noreferrer' }, path.runbook),
              path.runbook !== undefined && path.action !== undefined ? ', or ' : null,
              path.action === undefined ? null : ['the action ', h('code', {}, path.action)],
            ]
          : `Nothing undoes it: ${path.none}`,
        h('span', { class: 'muted' }, ` (grant ${path.grant})`),
      ),
    ),
  );
}

function decisionList(/** @type {Approval} */ approval) {
  if (approval.decisions.length === 0) return h('span', { class: 'muted' }, 'none yet');
  return h(
    'ul',
    { class: 'decisions' },
    approval.decisions.map((d) =>
      h(
        'li',
        {},
        h('strong', {}, d.decision === 'approve' ? 'Approved' : 'Denied'),
        ` by ${d.by}, `,
        time(d.at),
        ': ',
        h('q', {}, d.reason),
      ),
    ),
  );
}

/**
 * The approval's facts, as the agent asked and as the grant requires.
 * @param {Approval} approval
 * @param {PageContext} context
 * @param {HTMLElement} [timeLeft] where the time left is shown, for a pending one
 */
function approvalFacts(approval, context, timeLeft) {
  return [
    h(
      'h2',
      {},
      h('span', { class: 'agent' }, approval.agent),
      ' asks for ',
      approval.needs_approval.join(', '),
      ' on ',
      approval.audience,
    ),
    fields([
      ['Owner', approval.owner],
      ['Audience', approval.audience],
      ['Actions', actionList(approval)],
      ['Task, as the agent wrote it', agentText(approval.task.description)],
      ['Justification, as the agent wrote it', agentText(approval.justification)],
      ['Task id', h('code', {}, approval.task.id)],
      ['Needs', requirement(approval)],
      ['Token lifetime', duration(approval.ttl)],
      ['Undone by', rollbackList(approval)],
      ['Asked', time(approval.created_at)],
      ['Time left', timeLeft],
      ['Decisions', decisionList(approval)],
      ['Approval id', h('code', {}, approval.id)],
    ]),
    context.may('audit:read')
      ? h('a', { href: pageHref('audit', { task: approval.task.id }) }, 'Audit records of this task')
      : null,
  ];
}

/**
 * The approve and deny form of a pending approval; the reason is required.
 * @param {Approval} approval
 * @param {(text: string) => void} done called with what was decided, once the API has answered
 */
function decisionForm(approval, done) {
  const reason = h('textarea', { id: `reason-${approval.id}`, rows: '2', required: true, maxlength: '1000' });
  const problem = h('p', { class: 'error', role: 'alert' });
  const approve = h('button', { type: 'submit', value: 'approve' }, 'Approve');
  const deny = h('button', { type: 'submit', value: 'deny', class: 'danger' }, 'Deny');
  return h(
    'form',
    {
      class: 'decide',
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const submitter = /** @type {SubmitEvent} */ (event).submitter;
        const decision = submitter === deny ? 'deny' : 'approve';
        const why = reason.value.trim();
        if (why === '') {
          replace(problem, `A reason is required to ${decision}.`);
          reason.focus();
          return;
        }
        approve.disabled = true;
        deny.disabled = true;
        replace(problem, 'Sending…');
        try {
          /** @type {Approval} */
          const after = await api(`/admin/approvals/${encodeURIComponent(approval.id)}`, {
            method: 'POST',
            body: { decision, reason: why },
          });
          const approvals = after.decisions.filter((d) => d.decision === 'approve').length;
          done(
            decision === 'deny'
              ? `You denied ${approval.agent}'s request (${approval.needs_approval.join(', ')}): the agent gets no token.`
              : after.status === 'approved'
                ? `You approved ${approval.agent}'s request (${approval.needs_approval.join(', ')}): the agent can now collect exactly one token.`
                : `You approved ${approval.agent}'s request: ${approvals} of ${after.approvals_required} approvals so far.`,
          );
        } catch (error) {
          replace(problem, explain(error));
          approve.disabled = false;
          deny.disabled = false;
        }
      },
    },
    h('label', { for: `reason-${approval.id}` }, 'Reason (recorded in the audit log with your name)'),
    reason,
    h('div', { class: 'actions' }, approve, deny),
    problem,
  );
}

/**
 * @param {HTMLElement} main
 * @param {PageContext} context
 */
export function approvalsPage(main, context) {
  const tab = context.params.get('tab') === 'decided' ? 'decided' : 'pending';
  const agent = context.params.get('agent') || null;
  const status = h('p', { class: 'muted status', 'aria-live': 'polite' });
  const notice = h('div', { class: 'notices', 'aria-live': 'polite' });
  const byAgent = h('nav', { class: 'by-agent', 'aria-label': 'Pending by agent', 'data-testid': 'by-agent' });
  const list = h('div', { class: 'cards', 'data-testid': 'approvals' });
  const more = h('p', { class: 'more' });
  const tabHref = (/** @type {string | undefined} */ name) =>
    pageHref('approvals', { tab: name, agent: agent ?? undefined });
  replace(
    main,
    h('h1', {}, agent === null ? 'Approvals' : `Approvals of ${agent}`),
    h(
      'nav',
      { class: 'tabs', 'aria-label': 'Approvals' },
      h('a', { href: tabHref(undefined), ...(tab === 'pending' && { 'aria-current': 'page' }) }, 'Pending'),
      h('a', { href: tabHref('decided'), ...(tab === 'decided' && { 'aria-current': 'page' }) }, 'Decided and expired'),
    ),
    context.may('approvals:decide')
      ? null
      : h(
          'p',
          { class: 'muted' },
          `Your role (${context.identity.role}) can read approvals; only approvers decide them.`,
        ),
    notice,
    byAgent,
    status,
    list,
    more,
  );

  /** Cards of pending approvals by id, kept across refreshes so that a reason being typed is not lost. */
  /** @type {Map<string, { card: HTMLElement, expiresAt: number, timeLeft: HTMLElement }>} */
  const cards = new Map();
  let stopped = false;
  /** Pages shown: each "Show more" adds one, and a refresh reads them all again. */
  let pages = 1;

  /** @param {string} text */
  const announce = (text) => {
    notice.prepend(h('p', { class: 'notice', role: 'status' }, text));
    load();
  };

  function tick() {
    const now = Date.now();
    for (const { expiresAt, timeLeft } of cards.values()) {
      replace(timeLeft, expiresAt > now ? duration((expiresAt - now) / 1000) : 'expired');
    }
  }

  /** @param {Approval[]} pending */
  function showPending(pending) {
    const ids = new Set(pending.map((approval) => approval.id));
    for (const [id, { card }] of cards) {
      if (!ids.has(id)) {
        card.remove();
        cards.delete(id);
      }
    }
    for (const approval of pending) {
      if (cards.has(approval.id)) continue;
      const timeLeft = h('span', { class: 'time-left' });
      const card = h(
        'article',
        { class: 'card', 'data-approval': approval.id },
        approvalFacts(approval, context, timeLeft),
        approval.four_eyes && approval.owner.toLowerCase() === context.identity.id.toLowerCase()
          ? h('p', { class: 'hint' }, 'You own this agent: under four-eyes another approver must decide.')
          : null,
        context.may('approvals:decide') ? decisionForm(approval, announce) : null,
      );
      cards.set(approval.id, { card, expiresAt: Date.parse(approval.expires_at), timeLeft });
    }
    // In the listing's order, oldest first: append in order (moves the kept cards too).
    for (const approval of pending) list.append(/** @type {HTMLElement} */ (cards.get(approval.id)?.card));
    const empty = list.querySelector('.empty');
    if (pending.length === 0 && empty === null)
      list.append(h('p', { class: 'empty muted' }, 'Nothing waits for a decision.'));
    if (pending.length > 0) empty?.remove();
    tick();
  }

  /** @param {Approval[]} decided */
  function showDecided(decided) {
    replace(
      list,
      decided.length === 0
        ? h('p', { class: 'empty muted' }, 'No approval was decided or expired in the last day.')
        : null,
      decided.map((approval) =>
        h(
          'article',
          { class: `card ${approval.status}`, 'data-approval': approval.id },
          h('p', { class: `badge ${approval.status}` }, approval.status),
          approvalFacts(approval, context),
        ),
      ),
    );
  }

  /** How many approvals wait per agent, each a link to that agent's alone. @param {ApprovalPage['agents']} agents */
  function showAgents(agents) {
    replace(
      byAgent,
      agents.length === 0 && agent === null ? null : 'Waiting, by agent: ',
      agents.map(({ agent: name, count }, index) => [
        index === 0 ? '' : ' · ',
        name === agent
          ? h('strong', {}, `${name} (${count})`)
          : h('a', { href: pageHref('approvals', { agent: name }) }, `${name} (${count})`),
      ]),
      agent === null ? null : [' · ', h('a', { href: pageHref('approvals') }, 'every agent')],
    );
  }

  /** @param {boolean} hasMore */
  function showMore(hasMore) {
    replace(
      more,
      hasMore
        ? h(
            'button',
            {
              type: 'button',
              onclick: () => {
                pages += 1;
                load();
              },
            },
            'Show more',
          )
        : null,
    );
  }

  async function load() {
    try {
      if (tab === 'pending') {
        const { approvals, more: hasMore, agents } = await listPages('pending', agent, pages);
        if (stopped) return;
        showPending(approvals);
        showAgents(agents);
        showMore(hasMore);
      } else {
        const lists = await Promise.all(DECIDED.map((s) => listPages(s, agent, pages)));
        if (stopped) return;
        showDecided(newestFirst(lists.flatMap((answer) => answer.approvals)));
        showMore(lists.some((answer) => answer.more));
      }
      replace(
        status,
        'Updated ',
        time(Date.now()),
        tab === 'pending' ? ' · refreshes every 10 s · ' : ' · ',
        h('button', { type: 'button', class: 'link', onclick: load }, 'Refresh'),
      );
    } catch (error) {
      if (!stopped) replace(status, h('span', { class: 'error', role: 'alert' }, explain(error)));
    }
  }

  const refreshInView = () => {
    if (!document.hidden) load();
  };
  load();
  // The decided tab changes only as pending ones do: it refreshes when asked.
  const refresh = tab === 'pending' ? setInterval(refreshInView, REFRESH_MS) : undefined;
  const clock = setInterval(tick, 1_000);
  document.addEventListener('visibilitychange', refreshInView);
  return () => {
    stopped = true;
    clearInterval(refresh);
    clearInterval(clock);
    document.removeEventListener('visibilitychange', refreshInView);
  };
}
