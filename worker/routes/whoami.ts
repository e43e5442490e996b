/**
 * `GET /admin/whoami`: who the caller is to the broker, for the on-call console (any role). Behind
 * Cloudflare Access it is how the console learns who signed in; with a credential, how it checks one.
 * Audited like every admin call, so a sign-in to the console is on record: sampled per admin, as the console
 * may ask again and again (the first of each window in full, the rest counted into its summary).
 */
import { Hono } from 'hono';
import { requireRole } from '../admin/auth';
import type { AppEnv } from '../http/app-env';
import { recordRead, startAudit } from '../http/audit-trail';
import { NO_STORE } from '../http/errors';
import { ADMIN_ROLES } from '../policy/bundle';

export const whoamiRoutes = new Hono<AppEnv>();

whoamiRoutes.get('/admin/whoami', startAudit('admin.whoami'), requireRole(...ADMIN_ROLES), async (c) => {
  const { id, role, groups, via } = c.var.admin;
  await recordRead(c);
  return c.json({ id, role, groups, via }, 200, NO_STORE);
});
