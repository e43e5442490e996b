/**
 * The global kill switch (admins flip it; auditors read it): engaged or not, by whom, when, why, and how
 * many shards hold the change. Engaging or releasing needs a reason and the word typed out. The page shows
 * the new state only once the API has answered: from that answer on, no token is issued anywhere (an
 * engage may take a few seconds, while every instance's lease runs out), so until then it says it waits.
 */
import { ApiError, api, explain } from '../lib/api.js';
import { fields, h, replace, time } from '../lib/dom.js';

/** @import { PageContext } from '../app.js' */

/** How often the page rereads the state, in case another admin changed it. */
const REFRESH_MS = 15_000;

/**
 * The kill switch as `GET` and `PUT /admin/kill-switch` answer.
 * @typedef {object} KillSwitch
 * @property {boolean} engaged
 * @property {string | null} reason
 * @property {string | null} by
 * @property {string | null} at
 * @property {number} version
 * @property {{ total: number, current: number } | undefined} shards
 */

/** @param {KillSwitch} state */
function stateView(state) {
  const shards = state.shards;
  return [
    h(
      'p',
      { class: `badge big ${state.engaged ? 'engaged' : 'released'}`, 'data-testid': 'kill-switch-state' },
      state.engaged ? 'Engaged: no token is issued' : 'Released: tokens are issued',
    ),
    fields([
      [state.engaged ? 'Engaged' : 'Last change', time(state.at)],
      ['By', state.by ?? h('span', { class: 'muted' }, 'never changed')],
      ['Reason', state.reason === null ? h('span', { class: 'muted' }, '–') : h('q', {}, state.reason)],
      ['Shards reached', shards === undefined ? undefined : `${shards.current} of ${shards.total}`],
      ['Version', String(state.version)],
    ]),
  ];
}

/**
 * @param {HTMLElement} main
 * @param {PageContext} context
 */
export function killSwitchPage(main, context) {
  const current = h('section', { class: 'panel', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
  const form = h('div');
  const notice = h('div', { class: 'notices', 'aria-live': 'polite' });
  replace(main, h('h1', {}, 'Kill switch'), notice, current, form);
  /** @type {ReturnType<typeof setInterval> | undefined} */
  let waiting;
  let stopped = false;

  /** @param {KillSwitch} state */
  function show(state) {
    shown = state.version;
    replace(current, stateView(state));
    replace(form, context.may('kill-switch:set') ? changeForm(state) : null);
  }

  /** @param {KillSwitch} state */
  function changeForm(state) {
    const engage = !state.engaged;
    const word = engage ? 'ENGAGE' : 'RELEASE';
    const reason = h('textarea', { id: 'kill-switch-reason', rows: '2', required: true, maxlength: '1000' });
    const confirm = h('input', { id: 'kill-switch-confirm', autocomplete: 'off', spellcheck: 'false' });
    const button = h(
      'button',
      { type: 'submit', class: engage ? 'danger' : '', disabled: true },
      engage ? 'Engage the kill switch' : 'Release the kill switch',
    );
    const problem = h('p', { class: 'error', role: 'alert' });
    const progress = h('p', { class: 'waiting', role: 'status', 'data-testid': 'kill-switch-waiting' });
    const ready = () => {
      button.disabled = confirm.value.trim() !== word || reason.value.trim() === '';
    };
    reason.addEventListener('input', ready);
    confirm.addEventListener('input', ready);
    return h(
      'form',
      {
        class: 'panel',
        onsubmit: async (event) => {
          event.preventDefault();
          if (button.disabled) return;
          button.disabled = true;
          reason.disabled = true;
          confirm.disabled = true;
          replace(problem);
          const started = Date.now();
          const say = () =>
            replace(
              progress,
              `Waiting for the broker to confirm the ${engage ? 'engage' : 'release'} on every shard… ${Math.floor((Date.now() - started) / 1000)} s. `,
              engage ? 'Until it answers, a token may still be issued somewhere.' : '',
            );
          say();
          waiting = setInterval(say, 1_000);
          try {
            /** @type {KillSwitch} */
            const after = await api('/admin/kill-switch', {
              method: 'PUT',
              body: { engaged: engage, reason: reason.value.trim() },
            });
            if (stopped) return;
            notice.prepend(
              h(
                'p',
                { class: 'notice', role: 'status' },
                after.engaged
                  ? 'The broker confirmed: the kill switch is engaged on every shard. No token is issued from now on.'
                  : 'The broker confirmed: the kill switch is released. Tokens are issued again.',
              ),
            );
            show(after);
          } catch (error) {
            if (stopped) return;
            replace(progress);
            replace(
              problem,
              error instanceof ApiError && error.status === 503
                ? `Not every shard confirmed in time; those that did already ${engage ? 'refuse' : 'issue'}. Repeat it to complete the change. ${explain(error)}`
                : explain(error),
            );
            reason.disabled = false;
            confirm.disabled = false;
            ready();
          } finally {
            clearInterval(waiting);
            waiting = undefined;
          }
        },
      },
      h('h2', {}, engage ? 'Engage: stop all issuance' : 'Release: let tokens through again'),
      h(
        'p',
        {},
        engage
          ? 'Every /token request is refused and every token introspects as inactive until it is released.'
          : 'Tokens are issued again. Tokens that were revoked stay revoked; unexpired ones nothing else revoked are active again.',
      ),
      h('label', { for: 'kill-switch-reason' }, 'Reason (recorded in the audit log with your name)'),
      reason,
      h('label', { for: 'kill-switch-confirm' }, `Type ${word} to confirm`),
      confirm,
      h('div', { class: 'actions' }, button),
      progress,
      problem,
    );
  }

  /** @type {number | undefined} */
  let shown;
  /** Reads the state; shows it when it changed (another admin may flip it), except while a change waits. */
  async function load() {
    if (waiting !== undefined || document.hidden) return;
    try {
      /** @type {KillSwitch} */
      const state = await api('/admin/kill-switch');
      if (stopped || waiting !== undefined || state.version === shown) return;
      if (shown !== undefined)
        notice.prepend(
          h(
            'p',
            { class: 'notice', role: 'status' },
            `${state.by ?? 'Someone'} ${state.engaged ? 'engaged' : 'released'} the kill switch.`,
          ),
        );
      show(state);
    } catch (error) {
      if (!stopped) replace(current, h('p', { class: 'error', role: 'alert' }, explain(error)));
    }
  }

  load();
  const refresh = setInterval(load, REFRESH_MS);
  return () => {
    stopped = true;
    clearInterval(waiting);
    clearInterval(refresh);
  };
}
