/**
 * `POST /token`: RFC 8693 token exchange. A workload attestation and a task in; a short-lived access token
 * scoped to one audience, the granted actions and that task out. The work is the pipeline's
 * (`worker/exchange/pipeline.ts`); this route gives it the request and the stores, and renders its answer.
 */
import { Hono } from 'hono';
import { type ExchangeAnswer, type ExchangeDeps, exchangeToken, type Timing } from '../exchange/pipeline';
import type { AppEnv } from '../http/app-env';
import { requestOrigin } from '../http/audit-trail';
import { tokenRequestProof } from '../http/dpop';
import { errorResponse, NO_STORE } from '../http/errors';
import { brokerIssuer } from '../http/issuer';
import { readFields } from '../http/read-body';
import { createKeyResolver } from '../keys/attestation-keys';
import { loadedPolicy } from '../policy/loaded';
import { agentStore } from '../stores/agents';
import { recordInIntake, recordUnverified } from '../stores/audit-log';
import { admissionDeadlineMs, type InBackground, killSwitchLease, leaseRemainingMs } from '../stores/kill-switch';
import { signingKey } from '../stores/signing-keys';
import { statusIndexes } from '../stores/status-lists';

const keyResolver = createKeyResolver(loadedPolicy().bundle);

/** The pipeline's stores, on `env`, with the isolate's policy (a test swaps the bundle for one of its own). */
export function exchangeDeps(env: Env, background: InBackground): ExchangeDeps {
  const { bundle, engine } = loadedPolicy();
  const issuer = brokerIssuer(env);
  return {
    issuer,
    bundle,
    engine,
    keys: keyResolver,
    agents: agentStore(env, background),
    killSwitch: {
      lease: () => killSwitchLease(env, background),
      admissionDeadlineMs: admissionDeadlineMs(env),
      remainingMs: leaseRemainingMs,
    },
    signingKey: (now) => signingKey(env, now),
    statusIndexes: {
      ready: () => statusIndexes(env, admissionDeadlineMs(env)).ready(background),
      take: () => statusIndexes(env, admissionDeadlineMs(env)).take(background),
    },
    verifyProof: (header, now) => tokenRequestProof(header, `${issuer}/token`, bundle.settings.dpop, now),
    recordUnverified: (record) => recordUnverified(env, record),
    recordInIntake: (record) => recordInIntake(env, record),
  };
}

/** `Server-Timing` (W3C): each storage round trip the answer waited for, in series. */
function serverTiming(timings: readonly Timing[]): string {
  return timings.map((timing) => `${timing.store};dur=${timing.ms.toFixed(2)}`).join(', ');
}

function render(answer: ExchangeAnswer): Response {
  const headers: Record<string, string> = {
    ...(answer.dpopNonce !== undefined && { 'DPoP-Nonce': answer.dpopNonce }),
    ...(answer.timings.length > 0 && { 'Server-Timing': serverTiming(answer.timings) }),
  };
  if (answer.kind === 'refused') return errorResponse(answer.refusal, headers);
  return Response.json(answer.body, { status: 200, headers: { ...NO_STORE, ...headers } });
}

export const tokenRoutes = new Hono<AppEnv>();

tokenRoutes.post('/token', async function exchange(c) {
  const answer = await exchangeToken(
    {
      origin: requestOrigin(c.req.raw),
      now: new Date(),
      readFields: () => readFields(c.req.raw),
      dpop: c.req.header('dpop') ?? null,
    },
    exchangeDeps(c.env, (work) => c.executionCtx.waitUntil(work)),
  );
  return render(answer);
});
