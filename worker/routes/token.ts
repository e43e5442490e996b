/**
 * `POST /token`: RFC 8693 token exchange. A workload attestation and a task in; a short-lived access token
 * scoped to one audience, the granted actions and that task out. Both gates run here, and the decision is
 * audited: a granted token is returned only after its audit record is committed.
 */
import { DPOP_CLOCK_TOLERANCE_SECONDS } from '@tessera/verify';
import { Hono } from 'hono';
import { approvedBy, checkApprovalOwner, openApproval, releaseApproval } from '../approvals/step-up';
import { accessTokenClaims, signAccessToken, taskHash } from '../core/access-token';
import { approvalTerms, newApprovalId } from '../core/approval';
import { verifyAttestation } from '../core/attestation';
import { refuse } from '../core/errors';
import { type Authorization, authorize } from '../core/policy';
import { ACCESS_TOKEN_TYPE, parseTokenRequest } from '../core/token-request';
import type { AppEnv } from '../http/app-env';
import { commitAudit, startAudit } from '../http/audit-trail';
import { tokenRequestProof } from '../http/dpop';
import { NO_STORE } from '../http/errors';
import { brokerIssuer } from '../http/issuer';
import { limitBody } from '../http/limits';
import { readFields } from '../http/read-body';
import { createKeyResolver } from '../keys/attestation-keys';
import { signingKey } from '../keys/signing';
import { loadedPolicy } from '../policy/loaded';
import { admitExchange } from '../state/gates';

const keyResolver = createKeyResolver(loadedPolicy().bundle);

export const tokenRoutes = new Hono<AppEnv>();

tokenRoutes.post('/token', startAudit('token.exchange'), limitBody, async function exchangeToken(c) {
  const audit = c.var.audit;
  const { bundle, engine } = loadedPolicy();
  const now = new Date();
  const issuer = brokerIssuer(c.env);

  const request = parseTokenRequest(await readFields(c.req.raw));
  const taskId = request.task.id ?? crypto.randomUUID();
  const hash = await taskHash(request.task.description);
  Object.assign(audit, {
    audience: request.audience,
    requestedActions: request.actions.join(' '),
    requestedTtl: request.requestedTtl ?? null,
    taskId,
    taskDescription: request.task.description,
    taskHash: hash,
    justification: request.task.justification ?? null,
  });

  // Verification gate: the attestation, and the DPoP proof of the key the token will be bound to.
  const [verified, proven] = await Promise.allSettled([
    verifyAttestation(request.subjectToken, { now, brokerIssuer: issuer, bundle, keys: keyResolver }),
    tokenRequestProof(c, `${issuer}/token`, bundle.settings.dpop, now),
  ]);
  if (verified.status === 'rejected') throw verified.reason;
  const attestation = verified.value;
  Object.assign(audit, {
    agent: attestation.agent.id,
    owner: attestation.agent.owner,
    attestationVia: attestation.via,
    attestationJti: attestation.jti,
  });
  // Refused after the agent is known, so the refusal's audit record names it.
  if (proven.status === 'rejected') throw proven.reason;
  const proof = proven.value;
  if (proof === undefined) {
    if (attestation.agent.requireDpop) throw refuse('dpop_required', { requiredBy: 'agent' });
    if (bundle.settings.dpop.requiredAudiences.includes(request.audience))
      throw refuse('dpop_required', { requiredBy: 'audience' });
  }

  const terms = approvalTerms({ ...request, taskId, taskHash: hash, justification: request.task.justification });
  const { approvalId } = request;
  if (approvalId !== undefined) {
    checkApprovalOwner(approvalId, attestation.agent.id);
    audit.target = `approval:${approvalId}`;
  }
  const decide = (approved: boolean) =>
    authorize(engine, bundle, {
      agent: attestation.agent,
      audience: request.audience,
      actions: request.actions,
      requestedTtl: request.requestedTtl,
      justification: request.task.justification !== undefined,
      approved,
      taskId,
      via: attestation.via,
      now,
    });

  // The durable state gates and the signing key are I/O: start them, decide policy meanwhile.
  const admission = admitExchange(c.env, {
    agentId: attestation.agent.id,
    replayKey: attestation.replayKey,
    replayUntil: attestation.replayUntil,
    taskId,
    rateLimit: attestation.agent.rateLimit ?? bundle.settings.rateLimit,
    ...(approvalId !== undefined && { approval: { id: approvalId, terms } }),
    ...(proof !== undefined && {
      dpop: {
        replayKey: `dpop:${proof.jkt}:${proof.jti}`,
        replayUntil: proof.iat + bundle.settings.dpop.maxAge + DPOP_CLOCK_TOLERANCE_SECONDS,
        nonce: proof.nonce,
        requireNonce: bundle.settings.dpop.nonce,
      },
    }),
  });
  const key = signingKey(c.env, Math.floor(now.getTime() / 1000)).catch((error: unknown) => {
    throw refuse('signing_unavailable', { message: String(error) }, { cause: error });
  });
  key.catch(() => undefined); // awaited below; do not let an early refusal leave it unhandled
  let authorization: Authorization | undefined;
  let denial: unknown;
  if (approvalId === undefined) {
    try {
      authorization = decide(false);
    } catch (error) {
      denial = error;
    }
  }
  const admitted = await admission;

  let approval: { id: string; by: string[] } | undefined;
  if (approvalId !== undefined) {
    // Collected (single use) by the poll: from here on, a failure must put it back.
    approval = { id: approvalId, by: approvedBy(approvalId, admitted.approval) };
    audit.details = { approval };
    try {
      authorization = decide(true);
    } catch (error) {
      await releaseApproval(c.env, attestation.agent.id, approvalId);
      throw error;
    }
  }
  if (authorization === undefined) throw denial;
  if (authorization.approval !== undefined) {
    const pendingId = newApprovalId(attestation.agent.id);
    audit.target = `approval:${pendingId}`;
    await openApproval(c.env, bundle, {
      id: pendingId,
      agent: attestation.agent,
      terms,
      requirement: authorization.approval,
      ttl: authorization.ttl,
      taskDescription: request.task.description,
      issuer,
      now: Math.floor(now.getTime() / 1000),
    });
  }

  const claims = accessTokenClaims({
    issuer,
    agent: attestation.agent,
    audience: request.audience,
    actions: authorization.actions,
    task: { id: taskId, hash },
    policyVersion: bundle.version,
    ttl: authorization.ttl,
    jti: crypto.randomUUID(),
    now,
    ...(approval !== undefined && { approval }),
    ...(proof !== undefined && { dpopJkt: proof.jkt }),
  });
  try {
    const accessToken = await signAccessToken(claims, await key);
    Object.assign(audit, { grantedActions: claims.scope, tokenJti: claims.jti, tokenExp: claims.exp });
    audit.details = {
      grants: authorization.grants,
      ttl: authorization.ttl,
      ...(authorization.ttlCapped && { ttlCapped: true }),
      ...(approval !== undefined && { approval }),
      ...(claims.cnf !== undefined && { cnf: claims.cnf }),
    };
    await commitAudit(c);
    return c.json(
      {
        access_token: accessToken,
        issued_token_type: ACCESS_TOKEN_TYPE,
        token_type: claims.cnf === undefined ? 'Bearer' : 'DPoP',
        expires_in: authorization.ttl,
        scope: claims.scope,
        task_id: taskId,
      },
      200,
      admitted.dpopNonce === undefined ? NO_STORE : { ...NO_STORE, 'DPoP-Nonce': admitted.dpopNonce },
    );
  } catch (error) {
    if (approval !== undefined) await releaseApproval(c.env, attestation.agent.id, approval.id);
    throw error;
  }
});

tokenRoutes.all('/token', () => {
  throw refuse('method_not_allowed');
});
