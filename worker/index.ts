/**
 * Tessera: the Worker's wiring. Routes, the error handler, the cron trigger, the audit queues' handler (all
 * behind the billing meter, off unless `BILLING_METER` is on), and the Durable Object classes wrangler binds.
 */
import { Hono } from 'hono';
import { consumeAuditBatch, consumeDeadLetters, type RecordBatch } from './audit/writer';
import { meteredHandler } from './durable/meter';
import type { AppEnv } from './http/app-env';
import { errorResponse, handleError } from './http/errors';
import { unrouted } from './http/methods';
import { adminRoutes } from './routes/admin';
import { auditRoutes } from './routes/admin-audit';
import { usageRoutes } from './routes/admin-usage';
import { approvalRoutes } from './routes/approvals';
import { consoleRoutes } from './routes/console';
import { discoveryRoutes } from './routes/discovery';
import { healthRoutes } from './routes/health';
import { introspectionRoutes } from './routes/introspection';
import { meterRoutes } from './routes/meter';
import { revocationRoutes } from './routes/revocation';
import { statusListRoutes } from './routes/status-list';
import { tokenRoutes } from './routes/token';
import { whoamiRoutes } from './routes/whoami';
import { maintainAuditLog } from './stores/audit-log';

/** The queue that takes the audit messages D1 kept refusing (wrangler.toml). */
const DEAD_LETTER_QUEUE = 'tessera-audit-dead';

/** The HTTP routes; the default export adds the cron trigger. */
export const app = new Hono<AppEnv>();
app.route('/', discoveryRoutes);
app.route('/', healthRoutes);
app.route('/', tokenRoutes);
app.route('/', revocationRoutes);
app.route('/', statusListRoutes);
app.route('/', introspectionRoutes);
app.route('/', adminRoutes);
app.route('/', auditRoutes);
app.route('/', usageRoutes);
app.route('/', approvalRoutes);
app.route('/', whoamiRoutes);
app.route('/', consoleRoutes);
app.route('/', meterRoutes);
// A path no route serves is 404; one served with other methods is 405 with Allow (RFC 9110 §15.5.6).
app.notFound((c) => errorResponse(unrouted(app, c.req.path)));
app.onError(handleError);

export default meteredHandler({
  fetch: app.fetch,
  /** The cron trigger: seal new audit records into the hash chain, and move what is due to the archive. */
  async scheduled(_controller, env, ctx) {
    ctx.waitUntil(maintainAuditLog(env).then(() => undefined));
  },
  /** The audit queue: records to D1; its dead-letter queue: what D1 would not take, to R2. */
  async queue(batch, env) {
    if (batch.queue === DEAD_LETTER_QUEUE) await consumeDeadLetters(batch as MessageBatch<RecordBatch>, env);
    else await consumeAuditBatch(batch as MessageBatch<RecordBatch>, env);
  },
});
export { AgentState } from './agents/agent-state';
export { AuditIntake } from './audit/intake';
export { AuditSealer } from './audit/sealer';
export { KillSwitchControl, KillSwitchShard } from './control/kill-switch';
export { SigningKeys } from './keys/signing-keys';
export { StatusList } from './status/status-list';
