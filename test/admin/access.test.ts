/** Cloudflare Access in front of /admin/*: Cf-Access-Jwt-Assertion verified and mapped to a role. */
import { base64url, generateKeyPair } from 'jose';
import { afterEach, beforeAll, beforeEach, describe, expect, it, type MockInstance, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import {
  ACCESS_AUD,
  ACCESS_CERTS_URL,
  ACCESS_TEAM_DOMAIN,
  type AccessJwtOptions,
  type AccessTeam,
  mockAccessCerts,
  newAccessTeam,
  signAccessJwt,
  viaAccess,
} from '../helpers/access';
import { adminFetch, bearer, expectInvalidToken, INSUFFICIENT_SCOPE_CHALLENGE } from '../helpers/admin';
import { lastAudit, sendAudited } from '../helpers/audit';
import { nowSeconds } from '../helpers/clock';
import { ISSUER } from '../helpers/demo';
import { readError } from '../helpers/requests';

const ACCESS_KID = 'access-test-key-1';

/** The team's signing key: created once, as the broker caches the team's certs per isolate. */
let team: AccessTeam;

beforeAll(async () => {
  team = await newAccessTeam(ACCESS_KID);
});

/** Signs an Access JWT with the team's key; by default a fresh, valid one for `email`. */
const accessJwt = (email: string, options?: AccessJwtOptions) => signAccessJwt(team, email, options);

let clockJumps = 0;

/**
 * Moves the clock past the broker's cache of the team certs (jose caches a JWKS for 10 minutes), so that the
 * next verification must fetch them. Each jump goes an hour further than the last, past any certs cached at
 * the previous jump's time.
 */
function jumpPastCertsCache(): void {
  clockJumps += 1;
  const target = Date.now() + clockJumps * 3600 * 1000;
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(target);
}

/** Outbound `fetch`, mocked for every test: the team's certs URL serves the team's key. */
let certs: MockInstance<typeof fetch>;

beforeEach(() => {
  certs = mockAccessCerts(team);
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('/admin/*: Cloudflare Access identities', () => {
  it('verifies against the team certs and lets frank@example.com, an admin, engage and release the kill switch', async () => {
    const jwt = await accessJwt('frank@example.com');
    try {
      const { response, audit } = await sendAudited(() =>
        adminFetch('/admin/kill-switch', {
          method: 'PUT',
          body: { engaged: true, reason: 'frank drills the kill switch' },
          headers: viaAccess(jwt),
        }),
      );
      expect(response.status, await response.clone().text()).toBe(200);
      expect(await response.json()).toMatchObject({ engaged: true, by: 'frank@example.com' });
      expect(audit).toMatchObject({
        event: 'admin.kill_switch.set',
        decision: 'granted',
        actor: 'frank@example.com',
        actorRole: 'admin',
        adminReason: 'frank drills the kill switch',
      });
    } finally {
      const release = await adminFetch('/admin/kill-switch', {
        method: 'PUT',
        body: { engaged: false, reason: 'drill over' },
        headers: viaAccess(jwt),
      });
      expect(release.status).toBe(200);
      expect(await release.json()).toMatchObject({ engaged: false, by: 'frank@example.com' });
    }
    const state = await adminFetch('/admin/kill-switch', { headers: bearer(creds.auditor) });
    expect(await state.json()).toMatchObject({ engaged: false });
  });

  it('fetches the certs from the team domain', async () => {
    jumpPastCertsCache();
    const response = await adminFetch('/admin/kill-switch', { headers: viaAccess(await accessJwt('bob@example.com')) });
    expect(response.status).toBe(200);
    expect(certs).toHaveBeenCalled();
    const [input] = certs.mock.calls[0] ?? [];
    expect(input instanceof Request ? input.url : String(input)).toBe(ACCESS_CERTS_URL);
  });

  it('accepts the audience as a string as well as an array', async () => {
    const jwt = await accessJwt('frank@example.com', { claims: { aud: ACCESS_AUD } });
    const response = await adminFetch('/admin/kill-switch', { headers: viaAccess(jwt) });
    expect(response.status).toBe(200);
  });

  it('maps any other @example.com identity to auditor: it may read, not change', async () => {
    const jwt = await accessJwt('bob@example.com');
    const read = await sendAudited(() => adminFetch('/admin/kill-switch', { headers: viaAccess(jwt) }));
    expect(read.response.status).toBe(200);
    expect(read.audit).toMatchObject({ decision: 'granted', actor: 'bob@example.com', actorRole: 'auditor' });

    const change = await sendAudited(() =>
      adminFetch('/admin/kill-switch', {
        method: 'PUT',
        body: { engaged: true, reason: 'bob should not be able to' },
        headers: viaAccess(jwt),
      }),
    );
    expect(change.response.status).toBe(403);
    expect((await readError(change.response)).error).toBe('insufficient_scope');
    expect(change.response.headers.get('www-authenticate')).toBe(INSUFFICIENT_SCOPE_CHALLENGE);
    expect(change.audit).toMatchObject({
      decision: 'refused',
      reason: 'role_required',
      actor: 'bob@example.com',
      actorRole: 'auditor',
    });
  });

  it('applies the first matching rule: erin@example.com is an approver, not an auditor', async () => {
    const jwt = await accessJwt('erin@example.com');
    const { response, audit } = await sendAudited(() => adminFetch('/admin/kill-switch', { headers: viaAccess(jwt) }));
    expect(response.status).toBe(403);
    expect((await readError(response)).error).toBe('insufficient_scope');
    expect(audit).toMatchObject({ reason: 'role_required', actor: 'erin@example.com', actorRole: 'approver' });
  });

  it('refuses an authenticated identity that no rule maps to a role, and records her email', async () => {
    const jwt = await accessJwt('mallory@evil.example');
    const { response, audit } = await sendAudited(() => adminFetch('/admin/kill-switch', { headers: viaAccess(jwt) }));
    expect(response.status).toBe(403);
    expect((await readError(response)).error).toBe('insufficient_scope');
    expect(response.headers.get('www-authenticate')).toBe(INSUFFICIENT_SCOPE_CHALLENGE);
    expect(audit).toMatchObject({
      event: 'admin.kill_switch.read',
      decision: 'refused',
      errorCode: 'insufficient_scope',
      reason: 'role_required',
      actor: 'mallory@evil.example',
      actorRole: null,
    });
  });

  it('does not match a look-alike domain against *@example.com', async () => {
    const jwt = await accessJwt('mallory@example.com.evil.example');
    const { response, audit } = await sendAudited(() => adminFetch('/admin/kill-switch', { headers: viaAccess(jwt) }));
    expect(response.status).toBe(403);
    expect(audit).toMatchObject({ reason: 'role_required', actorRole: null });
  });
});

describe('/admin/*: Cloudflare Access JWTs that must be refused', () => {
  it.each<[string, () => Promise<string>]>([
    ['for another application audience', () => accessJwt('frank@example.com', { claims: { aud: ['other-app-aud'] } })],
    ['without an audience', () => accessJwt('frank@example.com', { omit: ['aud'] })],
    [
      'from another team (wrong iss)',
      () => accessJwt('frank@example.com', { claims: { iss: 'https://evil.cloudflareaccess.com' } }),
    ],
    ['without an issuer', () => accessJwt('frank@example.com', { omit: ['iss'] })],
    ['that has expired', () => accessJwt('frank@example.com', { now: nowSeconds() - 7200 })],
    ['that is not yet valid', () => accessJwt('frank@example.com', { claims: { nbf: nowSeconds() + 3600 } })],
    ['without an expiry', () => accessJwt('frank@example.com', { omit: ['exp'] })],
    [
      'signed by an unknown key under the team kid',
      async () => accessJwt('frank@example.com', { key: (await generateKeyPair('RS256')).privateKey }),
    ],
    [
      'signed by an unknown key with an unknown kid',
      async () =>
        accessJwt('frank@example.com', {
          key: (await generateKeyPair('RS256')).privateKey,
          header: { kid: 'attacker-kid' },
        }),
    ],
    [
      'signed with HS256 (alg confusion)',
      () =>
        accessJwt('frank@example.com', {
          header: { alg: 'HS256' },
          key: new TextEncoder().encode(JSON.stringify(team.publicJwk)),
        }),
    ],
    [
      'that is unsigned (alg none)',
      async () => {
        const signed = await accessJwt('frank@example.com');
        const [, payload] = signed.split('.');
        return `${base64url.encode(JSON.stringify({ alg: 'none', kid: ACCESS_KID }))}.${payload}.`;
      },
    ],
    [
      'whose email was changed after signing',
      async () => {
        const [header, , signature] = (await accessJwt('bob@example.com')).split('.');
        const claims = {
          iss: ACCESS_TEAM_DOMAIN,
          aud: [ACCESS_AUD],
          email: 'frank@example.com',
          exp: nowSeconds() + 600,
        };
        return `${header}.${base64url.encode(JSON.stringify(claims))}.${signature}`;
      },
    ],
    ['without an email or common name', () => accessJwt('frank@example.com', { omit: ['email'] })],
    ['that is not a JWT', async () => 'not-a-jwt'],
  ])('refuses one %s with 401 invalid_token', async (_name, token) => {
    const jwt = await token();
    const { response, audit } = await sendAudited(() => adminFetch('/admin/kill-switch', { headers: viaAccess(jwt) }));
    await expectInvalidToken(response);
    expect(audit).toMatchObject({
      event: 'admin.kill_switch.read',
      decision: 'refused',
      errorCode: 'invalid_token',
      reason: 'credential_invalid',
      actor: null,
      actorRole: null,
    });
  });

  it.each<[string, () => Promise<Response>]>([
    ['answers 500', async () => new Response('upstream error', { status: 500 })],
    ['is unreachable', async () => Promise.reject(new TypeError('network connection lost'))],
    ['answers with something that is not JSON', async () => new Response('<html>', { status: 200 })],
    ['answers with a JSON document that is not a key set', async () => Response.json({ keys: 'none' })],
  ])('fails closed with 401, never 500, when the certs endpoint %s', async (_name, answer) => {
    jumpPastCertsCache();
    certs.mockImplementation(answer);
    const jwt = await accessJwt('frank@example.com');
    const { response, audit } = await sendAudited(() => adminFetch('/admin/kill-switch', { headers: viaAccess(jwt) }));
    expect(certs).toHaveBeenCalled();
    await expectInvalidToken(response);
    expect(audit).toMatchObject({ decision: 'refused', reason: 'credential_invalid', actor: null });
  });

  it('lets a broker credential decide when both a credential and an Access JWT are sent', async () => {
    const response = await adminFetch('/admin/kill-switch', {
      method: 'PUT',
      body: { engaged: false, reason: 'precedence check' },
      headers: { ...bearer(creds.auditor), ...viaAccess(await accessJwt('frank@example.com')) },
    });
    expect(response.status).toBe(403);
    expect(await lastAudit()).toMatchObject({ actor: 'demo-auditor', actorRole: 'auditor' });
  });
});

describe('/admin/*: a write a browser sends from another origin (CSRF behind Access)', () => {
  /** Status of the kill switch as an auditor reads it. */
  async function killSwitchEngaged(): Promise<boolean> {
    const response = await adminFetch('/admin/kill-switch', { headers: bearer(creds.auditor) });
    return ((await response.json()) as { engaged: boolean }).engaged;
  }

  it.each<[string, Record<string, string>]>([
    ['Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site: same-site', { 'sec-fetch-site': 'same-site' }],
    ['an Origin of another site', { origin: 'https://attacker.example' }],
    ['Origin: null (a sandboxed page)', { origin: 'null' }],
  ])('refuses %s with 403 before the Access session counts, and changes nothing', async (_name, browser) => {
    expect(await killSwitchEngaged()).toBe(false);
    const jwt = await accessJwt('frank@example.com');
    const { response, audit } = await sendAudited(() =>
      adminFetch('/admin/kill-switch', {
        method: 'PUT',
        body: { engaged: true, reason: 'a form on another site' },
        headers: { ...viaAccess(jwt), ...browser },
      }),
    );
    expect(response.status).toBe(403);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await readError(response)).toEqual({
      error: 'access_denied',
      error_description:
        'an admin change is taken from the console on this origin or from a client that is not a browser',
    });
    expect(audit).toMatchObject({ event: 'admin.kill_switch.set', decision: 'refused', reason: 'cross_origin' });
    expect(await killSwitchEngaged()).toBe(false);
  });

  it('takes a write from a page of its own origin, and reads from anywhere', async () => {
    const jwt = await accessJwt('frank@example.com');
    const sameOrigin = { origin: new URL(ISSUER).origin, 'sec-fetch-site': 'same-origin' };
    for (const action of ['suspend', 'resume']) {
      const response = await adminFetch(`/admin/agents/graph-indexer/${action}`, {
        method: 'POST',
        body: { reason: `console ${action} drill` },
        headers: { ...viaAccess(jwt), ...sameOrigin },
      });
      expect(response.status, await response.clone().text()).toBe(200);
    }
    const read = await adminFetch('/admin/agents/graph-indexer', {
      headers: { ...viaAccess(jwt), origin: 'https://attacker.example', 'sec-fetch-site': 'cross-site' },
    });
    expect(read.status).toBe(200);
  });
});
