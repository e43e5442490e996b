/**
 * `/console`: the on-call console, served by the broker itself on the origin of `/admin/*`. Its files are
 * static (`console/public`, Workers Static Assets) and hold no data and no secret: the page calls `/admin/*`
 * as the signed-in identity, so it can do nothing the API would not allow. Every file goes out with a strict
 * Content-Security-Policy: scripts and styles from this origin only, no inline script, no `eval`, no
 * framing, and Trusted Types required, so that assigning a string to `innerHTML` throws instead of parsing.
 */
import { Hono } from 'hono';
import { createMiddleware } from 'hono/factory';
import { refuse } from '../core/errors';
import type { AppEnv } from '../http/app-env';
import { errorResponse } from '../http/errors';

const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

/** Headers on every console response, files and refusals alike. */
export const CONSOLE_HEADERS = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
} as const;

export const consoleRoutes = new Hono<AppEnv>();

// Every answer under /console, whatever the method (a refusal of another method included), goes out secured.
const secure = createMiddleware<AppEnv>(async function consoleHeaders(c, next) {
  await next();
  const secured = new Response(c.res.body, c.res);
  for (const [name, value] of Object.entries(CONSOLE_HEADERS)) secured.headers.set(name, value);
  // The files are revalidated on every load (they carry an ETag), so a deploy reaches every open console at
  // once; an error, like every error of the broker, keeps its no-store.
  if (secured.status < 400) secured.headers.set('Cache-Control', 'no-cache');
  c.res = secured;
});
consoleRoutes.use('/console', secure);
consoleRoutes.use('/console/*', secure);

// The page loads its files by relative URL, so it must be opened as /console/.
consoleRoutes.get('/console', (c) => c.redirect('/console/', 308));

consoleRoutes.get('/console/*', async (c) => {
  const path = c.req.path.slice('/console'.length);
  const revalidate = c.req.header('if-none-match');
  const file = await c.env.ASSETS.fetch(new URL(path === '/' ? '/index.html' : path, c.req.url), {
    headers: revalidate === undefined ? {} : { 'if-none-match': revalidate },
  });
  // 304 answers a revalidation with the file's ETag; anything else that is not the file is not found.
  if (file.status !== 200 && file.status !== 304) return errorResponse(refuse('not_found'));
  return file;
});
