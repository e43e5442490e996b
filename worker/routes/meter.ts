/**
 * `GET /admin/meter`: the billing meter's counts so far (`worker/durable/meter.ts`), for `npm run bench`'s
 * cost model. The route exists only while the Worker var `BILLING_METER` is `"on"`: otherwise every method
 * is answered as a path no route serves (404), as if it were not there.
 */
import { Hono } from 'hono';
import { requireRole } from '../admin/auth';
import { refuse } from '../core/errors';
import { meterOn, meterSnapshot } from '../durable/meter';
import type { AppEnv } from '../http/app-env';
import { startAudit } from '../http/audit-trail';
import { done } from './admin';

export const meterRoutes = new Hono<AppEnv>();

meterRoutes.use('/admin/meter', async function meterExists(c, next) {
  if (!meterOn(c.env)) throw refuse('not_found');
  await next();
});

meterRoutes.get('/admin/meter', startAudit('admin.meter.read'), requireRole('admin'), (c) =>
  done(c, { counts: meterSnapshot() }),
);
