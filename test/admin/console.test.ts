/** `/console`: the on-call console's files and their security headers, and `GET /admin/whoami`, which it signs in with. */
import { exports } from 'cloudflare:workers';
import { beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { type AccessTeam, mockAccessCerts, newAccessTeam, signAccessJwt, viaAccess } from '../helpers/access';
import { adminFetch, bearer, expectInvalidToken } from '../helpers/admin';
import { sendAudited } from '../helpers/audit';
import { ISSUER } from '../helpers/demo';
import { readError } from '../helpers/requests';

const get = (path: string, headers: Record<string, string> = {}) =>
  exports.default.fetch(`${ISSUER}${path}`, { headers, redirect: 'manual' });

/** Checks the headers every console response carries. */
function expectConsoleHeaders(response: Response): void {
  const csp = response.headers.get('content-security-policy') ?? '';
  const directives = new Map(
    csp.split(';').map((directive) => {
      const [name = '', ...values] = directive.trim().split(/\s+/);
      return [name, values.join(' ')] as const;
    }),
  );
  expect(Object.fromEntries(directives)).toEqual({
    'default-src': "'none'",
    'script-src': "'self'",
    'style-src': "'self'",
    'img-src': "'self'",
    'connect-src': "'self'",
    'base-uri': "'none'",
    'form-action': "'none'",
    'frame-ancestors': "'none'",
    'require-trusted-types-for': "'script'",
    'trusted-types': "'none'",
  });
  expect(response.headers.get('x-content-type-options')).toBe('nosniff');
  expect(response.headers.get('referrer-policy')).toBe('no-referrer');
  expect(response.headers.get('x-frame-options')).toBe('DENY');
}

describe('GET /console', () => {
  it('redirects /console to /console/, where the page loads its files from', async () => {
    const response = await get('/console');
    expect(response.status).toBe(308);
    expect(response.headers.get('location')).toBe('/console/');
    expectConsoleHeaders(response);
  });

  it('serves the page with a strict CSP: its own scripts and styles only, no inline script, no framing', async () => {
    const response = await get('/console/');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expectConsoleHeaders(response);
    const page = await response.text();
    expect(page).toContain('<script type="module" src="app.js"></script>');
    // Every script is a file of the console (the chart library vendored beside it): no inline code for the CSP.
    expect(page.match(/<script\b[^>]*>/g)).toEqual([
      '<script src="vendor/chart.umd.min.js" defer>',
      '<script type="module" src="app.js">',
    ]);
    expect(page).not.toMatch(/\son[a-z]+=/i);
  });

  it.each([
    ['/console/app.js', /^(text|application)\/javascript/],
    ['/console/pages/approvals.js', /^(text|application)\/javascript/],
    ['/console/vendor/chart.umd.min.js', /^(text|application)\/javascript/],
    ['/console/console.css', /^text\/css/],
  ])('serves %s with its type and the same headers', async (path, type) => {
    const response = await get(path);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(type);
    expectConsoleHeaders(response);
  });

  it('answers a revalidation with 304 and the same headers', async () => {
    const etag = (await get('/console/app.js')).headers.get('etag');
    expect(etag).toBeTruthy();
    const response = await get('/console/app.js', { 'if-none-match': String(etag) });
    expect(response.status).toBe(304);
    expectConsoleHeaders(response);
  });

  it.each(['/console/nope.js', '/console/../wrangler.toml', '/index.html', '/app.js'])(
    'answers %s with 404 in the API error shape',
    async (path) => {
      const response = await get(path);
      expect(response.status).toBe(404);
      expect((await readError(response)).error).toBe('not_found');
    },
  );

  it('does not serve the console to a POST: 405, secured like every console answer', async () => {
    const response = await exports.default.fetch(`${ISSUER}/console/`, { method: 'POST' });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('GET, HEAD');
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
  });
});

describe('GET /admin/whoami', () => {
  it.each([
    ['admin', creds.admin, { id: 'demo-admin', role: 'admin', groups: [] }],
    ['approver', creds.approver, { id: 'demo-approver', role: 'approver', groups: ['security'] }],
    ['auditor', creds.auditor, { id: 'demo-auditor', role: 'auditor', groups: [] }],
  ])('tells the %s who they are, audited', async (_role, credential, identity) => {
    const { response, audit } = await sendAudited(() => adminFetch('/admin/whoami', { headers: bearer(credential) }));
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual({ ...identity, via: 'credential' });
    expect(audit).toMatchObject({
      event: 'admin.whoami',
      decision: 'granted',
      actor: identity.id,
      actorRole: identity.role,
    });
  });

  it('refuses a request without a credential with 401, audited', async () => {
    const { response, audit } = await sendAudited(() => adminFetch('/admin/whoami'));
    await expectInvalidToken(response, 'Bearer realm="tessera-admin"');
    expect(audit).toMatchObject({ event: 'admin.whoami', decision: 'refused', reason: 'credential_required' });
  });

  describe('through Cloudflare Access', () => {
    let team: AccessTeam;

    beforeAll(async () => {
      team = await newAccessTeam('console-test-key-1');
    });

    beforeEach(() => {
      mockAccessCerts(team);
      return () => vi.restoreAllMocks();
    });

    it('names the Access identity, its role and groups', async () => {
      const jwt = await signAccessJwt(team, 'alice@example.com');
      const response = await adminFetch('/admin/whoami', { headers: viaAccess(jwt) });
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({
        id: 'alice@example.com',
        role: 'approver',
        groups: ['security'],
        via: 'cloudflare_access',
      });
    });

    it('refuses an Access identity with no role with 403 insufficient_scope, audited with who it was', async () => {
      const jwt = await signAccessJwt(team, 'mallory@elsewhere.example');
      const { response, audit } = await sendAudited(() => adminFetch('/admin/whoami', { headers: viaAccess(jwt) }));
      expect(response.status).toBe(403);
      expect((await readError(response)).error).toBe('insufficient_scope');
      expect(audit).toMatchObject({ decision: 'refused', reason: 'role_required', actor: 'mallory@elsewhere.example' });
    });
  });
});
