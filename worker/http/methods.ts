/**
 * RFC 9110 §15.5.6: a request with a method the target does not serve is answered `405` with an `Allow`
 * header listing the methods it does serve; a path no route serves is `404`. One mechanism for the whole app,
 * asked when no route matched: the app's own router says which methods it serves at the path.
 */
import type { Hono } from 'hono';
import { type BrokerError, refuse } from '../core/errors';

/** Methods in the order `Allow` lists them; Hono answers `HEAD` with the `GET` route. */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/** The methods some route of `app` serves at `path` (its routes, not middleware that runs for every method). */
export function allowedMethods(app: Pick<Hono, 'router'>, path: string): string[] {
  const served = METHODS.filter((method) => {
    const asked = method === 'HEAD' ? 'GET' : method;
    const [matched] = app.router.match(asked, path);
    return matched.some(([[, route]]) => route.method === asked);
  });
  return [...served];
}

/** What a request no route matched gets: 405 with `Allow` when the path is served by other methods, else 404. */
export function unrouted(app: Pick<Hono, 'router'>, path: string): BrokerError {
  const allowed = allowedMethods(app, path);
  if (allowed.length === 0) return refuse('not_found');
  return refuse('method_not_allowed', { allowed }, { headers: { Allow: allowed.join(', ') } });
}
