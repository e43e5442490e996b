/**
 * What the fleet did, from the counts that outlive the audit log (`usage_daily`): `GET /admin/usage`, the
 * console Overview's series, and `GET /admin/review`, the access review: each agent's entitlements beside
 * what it used, its lifecycle, and the narrowing that takes away what it did not use.
 */
import { Hono } from 'hono';
import { requireRole } from '../admin/auth';
import { dayWindow, queryProblem, REVIEW_HINTS, ReviewQuery, UsageQuery, usageReport } from '../audit/usage';
import { refuse } from '../core/errors';
import type { AppEnv } from '../http/app-env';
import { recordGranted, recordRead, startAudit } from '../http/audit-trail';
import { NO_STORE } from '../http/errors';
import { readQuery } from '../http/read-body';
import { loadedPolicy } from '../policy/loaded';
import { accessReview } from '../policy/review';
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

usageRoutes.get('/admin/review', startAudit('admin.review.read'), requireRole('admin', 'auditor'), async (c) => {
  const query = ReviewQuery.safeParse(readQuery(c.req.raw));
  if (!query.success) {
    throw refuse('invalid_field', { field: 'query' }, { description: queryProblem(query.error, REVIEW_HINTS) });
  }
  const { days } = query.data;
  const now = Date.now();
  const window = dayWindow(days, now);
  const { bundle, engine } = loadedPolicy();
  const db = auditDb(c.env);
  const [rows, last] = await Promise.all([db.usage(window), db.lastTokens(Object.keys(bundle.agents))]);
  const review = accessReview(engine, bundle, rows, last, window, now);
  c.var.audit.details = { days, unused: review.narrowing?.forbids ?? 0 };
  // Recorded in full: a review is read for an auditor's file, not polled.
  await recordGranted(c);
  return c.json(review, 200, NO_STORE);
});
