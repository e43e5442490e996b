/**
 * `GET /healthz`: liveness. The isolate is up and its policy bundle loaded (a bundle that does not validate
 * stops the worker before it serves anything). It touches no store: it says nothing about Durable Objects,
 * D1 or the signing keys, which `/token` checks on every request and refuses with 503 when they fail.
 */
import { Hono } from 'hono';
import type { AppEnv } from '../http/app-env';
import { NO_STORE } from '../http/errors';
import { brokerIssuer } from '../http/issuer';
import { loadedPolicy } from '../policy/loaded';

export const healthRoutes = new Hono<AppEnv>();

healthRoutes.get('/healthz', (c) =>
  c.json({ status: 'ok', issuer: brokerIssuer(c.env), policy: loadedPolicy().bundle.version }, 200, NO_STORE),
);
