/**
 * What the fleet did, from the counts that outlive the audit log (`usage_daily`): `GET /admin/usage`, the
 * console Overview's series.
 */
import { Hono } from 'hono';
import { requireRole } from '../admin/auth';
import { dayWindow, queryProblem, UsageQuery, usageReport } from '../audit/usage';
import { refuse } from '../core/errors';
import type { AppEnv } from '../http/app-env';
import { recordRead, startAudit } from '../http/audit-trail';
import { NO_STORE } from '../http/errors';
import { readQuery } from '../http/read-body';
import { auditDb } from '../stores/audit-log';

export const usageRoutes = new Hono<AppEnv>();

usageRoutes.get('/admin/usage', startAudit('admin.usage.read'), requireRole('admin', 'auditor'), async (c) => {
  const query = UsageQuery.safeParse(readQuery(c.req.raw));
  if (!query.success) {
    throw refuse('invalid_field', { field: 'query' }, { description: queryProblem(query.error) });
  }
  const { days, agent } = query.data;
  const window = dayWindow(days, Date.now());
  const rows = await auditDb(c.env).usage(window, agent);
  Object.assign(c.var.audit, { ...(agent !== undefined && { agent }), details: { days } });
  // The console's Overview polls this: sampled per admin (docs/audit-log.md).
  await recordRead(c);
  return c.json({ agent: agent ?? null, ...usageReport(rows, window) }, 200, NO_STORE);
});
