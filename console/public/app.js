/**
 * The on-call console: who is signed in, which pages their role may open, and the page in the URL fragment
 * (`#/approvals`, `#/audit?agent=demo-agent`). Each page is a module in `pages/` that renders into `<main>`
 * and returns what stops its timers when another page opens.
 */
import { ApiError, api, credential, explain } from './lib/api.js';
import { h, pageHref, replace } from './lib/dom.js';
import { agentsPage } from './pages/agents.js';
import { approvalsPage } from './pages/approvals.js';
import { auditPage } from './pages/audit.js';
import { killSwitchPage } from './pages/kill-switch.js';
import { overviewPage } from './pages/overview.js';
import { reviewPage } from './pages/review.js';
import { signInPage } from './pages/sign-in.js';

/** @import { Identity, Role } from './lib/api.js' */

/**
 * What each role may do, as the API's routes allow it (docs/api.md). The console offers only these; the
 * API decides all the same, and a refusal is shown in words.
 * @typedef {'approvals:read' | 'approvals:decide' | 'kill-switch:read' | 'kill-switch:set' | 'agents:read'
 *   | 'agents:act' | 'audit:read' | 'usage:read' | 'review:read'} Capability
 * @type {Record<Capability, readonly Role[]>}
 */
const ALLOWED = {
  'approvals:read': ['approver', 'admin', 'auditor'],
  'approvals:decide': ['approver'],
  'kill-switch:read': ['admin', 'auditor'],
  'kill-switch:set': ['admin'],
  'agents:read': ['admin', 'auditor'],
  'agents:act': ['admin'],
  'audit:read': ['admin', 'auditor'],
  'usage:read': ['admin', 'auditor'],
  'review:read': ['admin', 'auditor'],
};

/**
 * @typedef {object} PageContext
 * @property {Identity} identity
 * @property {(capability: Capability) => boolean} may
 * @property {URLSearchParams} params the query of the URL fragment
 * @typedef {(main: HTMLElement, context: PageContext) => (() => void) | undefined} Page
 */

/** @type {{ id: string, title: string, needs: Capability, render: Page }[]} */
const PAGES = [
  { id: 'overview', title: 'Overview', needs: 'usage:read', render: overviewPage },
  { id: 'approvals', title: 'Approvals', needs: 'approvals:read', render: approvalsPage },
  { id: 'kill-switch', title: 'Kill switch', needs: 'kill-switch:read', render: killSwitchPage },
  { id: 'agents', title: 'Agents', needs: 'agents:read', render: agentsPage },
  { id: 'review', title: 'Review', needs: 'review:read', render: reviewPage },
  { id: 'audit', title: 'Audit', needs: 'audit:read', render: auditPage },
];

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const nav = /** @type {HTMLElement} */ (document.getElementById('nav'));
const who = /** @type {HTMLElement} */ (document.getElementById('identity'));

/** @type {Identity | undefined} */
let identity;
/** @type {(() => void) | undefined} */
let stopPage;

/** @param {Capability} capability */
const may = (capability) => identity !== undefined && ALLOWED[capability].includes(identity.role);

function route() {
  stopPage?.();
  stopPage = undefined;
  if (identity === undefined) return;
  const [path = '', query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const open = PAGES.filter((page) => may(page.needs));
  const page = path === '' ? open[0] : PAGES.find((candidate) => candidate.id === path);
  for (const link of nav.querySelectorAll('a')) {
    link.toggleAttribute('aria-current', link.getAttribute('href') === pageHref(page?.id ?? ''));
  }
  if (page === undefined) {
    replace(main, h('p', { class: 'error', role: 'alert' }, `There is no page “${path}” in the console.`));
    return;
  }
  document.title = `${page.title} · Tessera on call`;
  if (!may(page.needs)) {
    replace(
      main,
      h('h1', {}, page.title),
      h('p', { class: 'error', role: 'alert' }, `Your role (${identity.role}) does not allow this page.`),
    );
    return;
  }
  replace(main);
  stopPage = page.render(main, { identity, may, params: new URLSearchParams(query) });
}

/** @param {Identity} signedIn */
function showConsole(signedIn) {
  identity = signedIn;
  replace(
    nav,
    PAGES.filter((page) => may(page.needs)).map((page) => h('a', { href: pageHref(page.id) }, page.title)),
  );
  const via = signedIn.via === 'cloudflare_access' ? 'Cloudflare Access' : 'admin credential';
  replace(
    who,
    h('span', { class: 'who', 'data-testid': 'identity' }, h('strong', {}, signedIn.id), ` · ${signedIn.role}`),
    signedIn.groups.length > 0 ? h('span', { class: 'muted' }, ` · groups ${signedIn.groups.join(', ')}`) : null,
    h('span', { class: 'muted' }, ` · via ${via}`),
    h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'),
  );
  route();
}

function signOut() {
  const viaAccess = identity?.via === 'cloudflare_access';
  credential.clear();
  identity = undefined;
  stopPage?.();
  stopPage = undefined;
  // An Access session ends at Access; a typed credential ends with this tab's copy of it.
  if (viaAccess) location.assign('/cdn-cgi/access/logout');
  else showSignIn();
}

/** @param {string} [problem] */
function showSignIn(problem) {
  replace(nav);
  replace(who);
  document.title = 'Sign in · Tessera on call';
  signInPage(main, {
    problem,
    async signIn(typed) {
      credential.set(typed);
      try {
        showConsole(await api('/admin/whoami'));
      } catch (error) {
        credential.clear();
        throw error;
      }
    },
  });
}

/** Signs in with what the request already carries (an Access session, or this tab's credential), else asks. */
async function start() {
  try {
    showConsole(await api('/admin/whoami'));
  } catch (error) {
    const typed = credential.get() !== null;
    if (error instanceof ApiError && error.status === 401) {
      credential.clear();
      showSignIn(typed ? 'Your credential is no longer accepted: sign in again.' : undefined);
    } else if (error instanceof ApiError && error.status === 403 && !typed) {
      replace(
        main,
        h('h1', {}, 'No role'),
        h(
          'p',
          { class: 'error', role: 'alert' },
          'Cloudflare Access let you in, but the broker gives your identity no role (policies/admins.yaml, ' +
            'cloudflare_access.roles). Ask an admin of the broker to add you.',
        ),
      );
    } else {
      replace(
        main,
        h('h1', {}, 'The console could not start'),
        h('p', { class: 'error', role: 'alert' }, explain(error)),
      );
    }
  }
}

window.addEventListener('hashchange', route);
start();
