/**
 * RFC 9110 §15.5.6 (issue 12 §7): every route answers a method it does not serve with `405` and an `Allow`
 * header listing the methods it serves, in the spec's error shape; a path no route serves is `404`.
 */
import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { app } from '../../worker/index';
import { ISSUER } from '../helpers/demo';
import { expectError } from '../helpers/requests';

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
const METER_PATH = '/admin/meter';

/** A concrete URL path for a route's pattern. */
function concrete(pattern: string): string {
  return pattern
    .replace(':agent', 'demo-agent')
    .replace(':jti', crypto.randomUUID())
    .replace(':task_id', 'task-1')
    .replace(':id', `${crypto.randomUUID()}.demo-agent`)
    .replace(':segment', '1')
    .replace('*', 'index.html');
}

/**
 * Every route's pattern and the methods it serves (a GET route also answers HEAD). `/admin/meter` is left out:
 * with the billing meter off, as here, it is no route at all (404 for every method; test/admin/meter-off.test.ts).
 */
function servedByPattern(): Map<string, Set<string>> {
  const served = new Map<string, Set<string>>();
  for (const route of app.routes) {
    if (route.path === METER_PATH) continue;
    const methods = served.get(route.path) ?? new Set<string>();
    methods.add(route.method);
    if (route.method === 'GET') methods.add('HEAD');
    served.set(route.path, methods);
  }
  return served;
}

function send(method: string, path: string): Promise<Response> {
  return exports.default.fetch(`${ISSUER}${path}`, { method });
}

describe('a method a route does not serve', () => {
  it.each([
    { path: '/token', allow: 'POST' },
    { path: '/introspect', allow: 'POST' },
    { path: '/revoke', allow: 'POST' },
    { path: '/tasks/task-1/complete', allow: 'POST' },
    { path: '/admin/kill-switch', allow: 'GET, HEAD, PUT' },
    { path: `/admin/approvals/${crypto.randomUUID()}.demo-agent`, allow: 'GET, HEAD, POST' },
    { path: '/.well-known/jwks.json', allow: 'GET, HEAD' },
  ])('is 405 at $path with Allow: $allow', async ({ path, allow }) => {
    const wrong = allow.includes('GET') ? 'DELETE' : 'GET';
    const response = await send(wrong, path);
    await expectError(response, 405, 'method_not_allowed');
    expect(response.headers.get('allow')).toBe(allow);
  });

  it('is 405 with the route’s Allow on every route, for every method it does not serve', async () => {
    const patterns = servedByPattern();
    expect(patterns.size).toBeGreaterThan(15);
    for (const [pattern, served] of patterns) {
      const path = concrete(pattern);
      const allow = METHODS.filter((method) => served.has(method)).join(', ');
      for (const method of METHODS.filter((candidate) => !served.has(candidate))) {
        const response = await send(method, path);
        expect(response.status, `${method} ${path}`).toBe(405);
        expect(response.headers.get('allow'), `${method} ${path}`).toBe(allow);
        expect(response.headers.get('cache-control')).toBe('no-store');
        if (method !== 'HEAD') expect(((await response.json()) as { error: string }).error).toBe('method_not_allowed');
      }
    }
  });

  it('is still 404 on a path no route serves, with any method', async () => {
    for (const method of METHODS) {
      const response = await send(method, '/nope');
      expect(response.status, method).toBe(404);
      expect(response.headers.get('allow')).toBeNull();
    }
  });
});
