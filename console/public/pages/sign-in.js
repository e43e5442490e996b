/**
 * Sign-in with an admin credential, where Cloudflare Access does not sign people in. The credential stays in
 * this tab (sessionStorage) and goes to the broker only in a Bearer header. The input has no `name` and the
 * CSP forbids form submission, so even without this script it could never end up in a URL.
 */
import { ApiError, explain } from '../lib/api.js';
import { h, replace } from '../lib/dom.js';

/**
 * @param {HTMLElement} main
 * @param {{ problem?: string | undefined, signIn: (credential: string) => Promise<void> }} options
 */
export function signInPage(main, { problem, signIn }) {
  const input = h('input', {
    id: 'credential',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    placeholder: 'tessera_admin.<id>.<secret>',
  });
  const message = h('p', { class: 'error', role: 'alert', 'data-testid': 'sign-in-error' }, problem ?? '');
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'panel sign-in',
      onsubmit: async (event) => {
        event.preventDefault();
        const typed = input.value.trim();
        if (typed === '') {
          replace(message, 'Type your admin credential.');
          return;
        }
        button.disabled = true;
        replace(message);
        try {
          await signIn(typed);
        } catch (error) {
          replace(
            message,
            error instanceof ApiError && error.status === 401
              ? 'The broker did not accept this credential. Check that you copied all of it, and that it is still listed in policies/admins.yaml.'
              : explain(error),
          );
          button.disabled = false;
          input.select();
        }
      },
    },
    h('h1', {}, 'Sign in'),
    h(
      'p',
      {},
      'Behind Cloudflare Access you are signed in already. Here, sign in with an admin credential: it is kept ' +
        'for this tab only and forgotten when you sign out or close the tab.',
    ),
    h('label', { for: 'credential' }, 'Admin credential'),
    input,
    button,
    message,
  );
  replace(main, form);
  input.focus();
}
