/**
 * Announcing pending approvals: the agent object's alarm POSTs each new approval to the webhook of
 * policies/tessera.yaml, signed (`Tessera-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under
 * APPROVAL_WEBHOOK_SECRET, `test-webhook-secret` in tests), retries a failed delivery after 5, 20, 80, 320
 * and 1280 s, and gives up after six attempts or when the next one would come after the approval expired.
 * Every attempt is audited as `approval.notify`; a webhook that is down never holds up the approval.
 *
 * Outbound `fetch` is mocked (the webhook is not ours); D1 and the agent object are real. The clock is
 * frozen a day ahead of the real one and only moves forward, so the agent object's alarm never fires on
 * its own: each test runs it with `runDurableObjectAlarm`. An alarm run also delivers what earlier tests
 * left queued, so every check looks only at its own approval's messages and records. The file makes few
 * token requests and its clock moves on by minutes, so the agent's rate limit never bites.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import type { AgentState } from '../../worker/agents/agent-state';
import { deliverDue } from '../../worker/agents/notifications';
import type { PendingApprovalMessage } from '../../worker/approvals/webhook';
import type { DecidedRecord } from '../../worker/audit/record';
import type { AuditEvent } from '../../worker/audit/schema';
import type { ApprovalRecord } from '../../worker/core/approval';
import { adminFetch, bearer } from '../helpers/admin';
import { admissionCall, admit, agentObject } from '../helpers/agent-object';
import { DISABLE_USER, openApproval, poll, readApproval } from '../helpers/approvals';
import { auditRecords, detailOf } from '../helpers/audit';
import { nowSeconds, useForwardClock } from '../helpers/clock';
import { DEMO_AGENT, IAM, ISSUER } from '../helpers/demo';
import { sha256Base64url } from '../helpers/tokens';

const WEBHOOK = 'https://hooks.example.com/tessera/approvals';
const SECRET = 'test-webhook-secret';
const EXPIRES_IN = 900;
const INTERVAL = 5;
/** Seconds from one attempt to the next. */
const BACKOFF = [5, 20, 80, 320, 1280] as const;

const clock = useForwardClock(24 * 3600 * 1000);

afterEach(() => {
  vi.restoreAllMocks();
});

/** A webhook request as it left the broker. */
interface Sent {
  url: string;
  method: string;
  contentType: string | null;
  signature: string | null;
  body: string;
}

/** Mocks the webhook: records what is sent to it and answers with `answer`; any other URL is a test bug. */
function mockWebhook(answer: () => Promise<Response>): Sent[] {
  const sent: Sent[] = [];
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const request = new Request(input, init);
    if (request.url !== WEBHOOK) throw new Error(`unexpected outbound fetch: ${request.url}`);
    sent.push({
      url: request.url,
      method: request.method,
      contentType: request.headers.get('content-type'),
      signature: request.headers.get('tessera-signature'),
      body: await request.text(),
    });
    return answer();
  });
  return sent;
}

const webhookUp = () => mockWebhook(async () => new Response(null, { status: 204 }));

/** The messages of one approval among those sent. */
function messagesOf(sent: readonly Sent[], approvalId: string): Sent[] {
  return sent.filter((s) => (JSON.parse(s.body) as PendingApprovalMessage).approval.id === approvalId);
}

/** The `approval.notify` records of one approval, oldest first. */
async function notifyRecords(approvalId: string): Promise<AuditEvent[]> {
  return (await auditRecords()).filter((r) => r.event === 'approval.notify' && r.target === `approval:${approvalId}`);
}

/** Runs the agent object's alarm now; it must have one scheduled. */
async function runAlarm(): Promise<void> {
  expect(await runDurableObjectAlarm(agentObject())).toBe(true);
}

async function hmacHex(secret: string, data: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    'raw',
    new TextEncoder().encode(secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  );
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(data)));
  return Array.from(mac, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** Whether `header` is a valid signature of `body` under `secret`; returns its timestamp when it is. */
async function verifySignature(header: string | null, body: string, secret: string): Promise<number | undefined> {
  const match = /^t=([0-9]+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (match === null) return undefined;
  const [, t, v1] = match;
  return (await hmacHex(secret, `${t}.${body}`)) === v1 ? Number(t) : undefined;
}

describe('approval webhook: delivery', () => {
  it('POSTs the pending approval to the webhook as JSON, signed with Tessera-Signature', async () => {
    const pending = await openApproval();
    const sent = webhookUp();
    clock.advance(2);
    const deliveredAt = nowSeconds();
    await runAlarm();

    const [message, ...more] = messagesOf(sent, pending.id);
    expect(more).toEqual([]);
    expect(message).toMatchObject({ url: WEBHOOK, method: 'POST', contentType: 'application/json' });
    const body = message?.body ?? '';
    expect(await verifySignature(message?.signature ?? null, body, SECRET)).toBe(deliveredAt);
    // The check above can fail: neither another secret nor another body verifies.
    expect(await verifySignature(message?.signature ?? null, body, 'another-secret')).toBeUndefined();
    expect(await verifySignature(message?.signature ?? null, body.replace('j.doe', 'j.roe'), SECRET)).toBeUndefined();

    expect(JSON.parse(body)).toEqual({
      type: 'approval.pending',
      approval: {
        id: pending.id,
        agent: DEMO_AGENT,
        owner: 'alice@example.com',
        audience: IAM,
        actions: [DISABLE_USER],
        needs_approval: [DISABLE_USER],
        task: {
          id: pending.task.id,
          description: pending.task.description,
          hash: await sha256Base64url(pending.task.description),
        },
        justification: pending.task.justification,
        ttl: 120,
        expires_at: new Date((pending.openedAt + EXPIRES_IN) * 1000).toISOString(),
        approvals_required: 1,
        approver_groups: ['security'],
        four_eyes: true,
        rollback: [{ grant: 'disable-user-after-approval', runbook: 'https://runbooks.example.com/iam/enable-user' }],
      },
      decide_url: `${ISSUER}/admin/approvals/${pending.id}`,
    });
  });

  it('audits the delivery as approval.notify, granted, and does not send it again', async () => {
    const pending = await openApproval();
    const sent = webhookUp();
    await runAlarm();
    const records = await notifyRecords(pending.id);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      event: 'approval.notify',
      decision: 'granted',
      reason: null,
      agent: DEMO_AGENT,
      owner: 'alice@example.com',
      audience: IAM,
      taskId: pending.task.id,
    });
    expect(detailOf(records[0])).toEqual({ url: WEBHOOK, attempt: 1, delivered: true, status: 204 });

    for (const seconds of BACKOFF) {
      clock.advance(seconds);
      await runAlarm();
    }
    expect(messagesOf(sent, pending.id)).toHaveLength(1);
    expect(await notifyRecords(pending.id)).toHaveLength(1);
  });

  it('announces each approval once, in its own signed message', async () => {
    const first = await openApproval();
    const second = await openApproval();
    const sent = webhookUp();
    await runAlarm();
    for (const pending of [first, second]) {
      const messages = messagesOf(sent, pending.id);
      expect(messages).toHaveLength(1);
      expect(await verifySignature(messages[0]?.signature ?? null, messages[0]?.body ?? '', SECRET)).toBe(nowSeconds());
    }
  });
});

describe('approval webhook: when it is down', () => {
  it.each<[string, () => Promise<Response>, RegExp]>([
    ['answers 500', async () => new Response('upstream error', { status: 500 }), /^HTTP 500$/],
    ['is unreachable', async () => Promise.reject(new TypeError('connection refused')), /connection refused/],
    ['answers a redirect', async () => new Response(null, { status: 302, headers: { location: WEBHOOK } }), /302/],
  ])('audits a webhook that %s as webhook_failed, and the approval goes on', async (_name, answer, error) => {
    const pending = await openApproval();
    const sent = mockWebhook(answer);
    await runAlarm();
    expect(messagesOf(sent, pending.id)).toHaveLength(1);
    const [record, ...more] = await notifyRecords(pending.id);
    expect(more).toEqual([]);
    expect(record).toMatchObject({ decision: 'refused', reason: 'webhook_failed', agent: DEMO_AGENT });
    expect(detailOf(record)).toMatchObject({ url: WEBHOOK, attempt: 1, delivered: false, error: expect.any(String) });
    expect(String(detailOf(record).error)).toMatch(error);

    expect((await readApproval(pending.id, creds.auditor)).status).toBe('pending');
    const approval = await adminFetch(`/admin/approvals/${pending.id}`, {
      method: 'POST',
      body: { decision: 'approve', reason: 'saw it in the dashboard' },
      headers: bearer(creds.approver),
    });
    expect(approval.status).toBe(200);
    clock.advance(INTERVAL);
    const collected = await poll(pending);
    expect(collected.status, await collected.clone().text()).toBe(200);
  });

  it('retries when the backoff has passed, not before, and stops once delivered', async () => {
    const pending = await openApproval();
    let up = false;
    const sent = mockWebhook(async () => new Response(null, { status: up ? 200 : 503 }));
    const openedAt = nowSeconds();
    await runAlarm();
    clock.advance(BACKOFF[0] - 1);
    await runAlarm();
    expect(messagesOf(sent, pending.id)).toHaveLength(1);

    clock.advance(1);
    await runAlarm();
    const second = messagesOf(sent, pending.id)[1];
    expect(second).toBeDefined();
    // Signed afresh at the time of the retry.
    expect(await verifySignature(second?.signature ?? null, second?.body ?? '', SECRET)).toBe(openedAt + 5);
    expect(second?.body).toBe(messagesOf(sent, pending.id)[0]?.body);

    up = true;
    clock.advance(BACKOFF[1] - 1);
    await runAlarm();
    expect(messagesOf(sent, pending.id)).toHaveLength(2);
    clock.advance(1);
    await runAlarm();
    expect(messagesOf(sent, pending.id)).toHaveLength(3);
    for (const seconds of BACKOFF.slice(2)) {
      clock.advance(seconds);
      await runAlarm();
    }
    expect(messagesOf(sent, pending.id)).toHaveLength(3);

    const records = await notifyRecords(pending.id);
    expect(records.map((r) => [r.decision, r.reason, detailOf(r).attempt])).toEqual([
      ['refused', 'webhook_failed', 1],
      ['refused', 'webhook_failed', 2],
      ['granted', null, 3],
    ]);
  });

  it('gives up when the next attempt would come after the approval expired', async () => {
    const pending = await openApproval();
    const sent = mockWebhook(async () => new Response(null, { status: 503 }));
    await runAlarm();
    // Attempts at 0, 5, 25, 105 and 425 s; the sixth would be at 1705 s, after the expiry at 900 s.
    for (const seconds of BACKOFF.slice(0, 4)) {
      clock.advance(seconds);
      await runAlarm();
    }
    expect(messagesOf(sent, pending.id)).toHaveLength(5);
    clock.advance(BACKOFF[4] + 3600);
    await runAlarm();
    expect(messagesOf(sent, pending.id)).toHaveLength(5);

    const records = await notifyRecords(pending.id);
    expect(records.map((r) => [r.reason, detailOf(r).attempt])).toEqual([
      ['webhook_failed', 1],
      ['webhook_failed', 2],
      ['webhook_failed', 3],
      ['webhook_failed', 4],
      ['webhook_gave_up', 5],
    ]);
    expect(records.every((r) => r.decision === 'refused')).toBe(true);
  });

  it('gives up after six attempts when the approval lives longer than the backoff', async () => {
    // No policy here keeps an approval that long (expires_in is 900 s): queue one that lives a day.
    const now = nowSeconds();
    const id = `${crypto.randomUUID()}.${DEMO_AGENT}`;
    const message: PendingApprovalMessage = {
      type: 'approval.pending',
      approval: {
        id,
        agent: DEMO_AGENT,
        owner: 'alice@example.com',
        audience: IAM,
        actions: [DISABLE_USER],
        needs_approval: [DISABLE_USER],
        task: { id: 'long-lived', description: 'A long-lived approval', hash: 'h' },
        justification: 'j',
        ttl: 120,
        expires_at: new Date((now + 86_400) * 1000).toISOString(),
        approvals_required: 1,
        approver_groups: ['security'],
        four_eyes: true,
        rollback: [],
      },
      decide_url: `${ISSUER}/admin/approvals/${id}`,
    };
    const record: ApprovalRecord = {
      id,
      agent: DEMO_AGENT,
      owner: 'alice@example.com',
      terms: {
        audience: IAM,
        actions: [DISABLE_USER],
        requestedTtl: null,
        taskId: 'long-lived',
        taskHash: 'h',
        justification: 'j',
      },
      taskDescription: 'A long-lived approval',
      requirement: { count: 1, groups: ['security'], fourEyes: true, actions: [DISABLE_USER], rollback: [] },
      ttl: 120,
      createdAt: now,
      expiresAt: now + 86_400,
      interval: 5,
      lastPolledAt: now,
      decisions: [],
      status: 'pending',
    };
    const opened = await admit(
      agentObject(),
      admissionCall(
        {
          replayKey: `test\n${crypto.randomUUID()}`,
          replayUntil: now + 300,
          taskId: record.terms.taskId,
          rateLimit: { perMinute: 600, burst: 100 },
        },
        { kind: 'open', approval: record, message },
      ),
    );
    expect(opened.outcome).toBe('recorded');
    const sent = mockWebhook(async () => new Response(null, { status: 503 }));
    await runAlarm();
    for (const seconds of BACKOFF) {
      clock.advance(seconds);
      await runAlarm();
    }
    expect(messagesOf(sent, id)).toHaveLength(6);
    clock.advance(BACKOFF[4] * 4);
    await runAlarm();
    expect(messagesOf(sent, id)).toHaveLength(6);

    const records = await notifyRecords(id);
    expect(records.map((r) => [r.reason, detailOf(r).attempt])).toEqual([
      ['webhook_failed', 1],
      ['webhook_failed', 2],
      ['webhook_failed', 3],
      ['webhook_failed', 4],
      ['webhook_failed', 5],
      ['webhook_gave_up', 6],
    ]);
  });

  it('does not announce an approval that was decided before its delivery', async () => {
    const pending = await openApproval();
    const decided = await adminFetch(`/admin/approvals/${pending.id}`, {
      method: 'POST',
      headers: bearer(creds.approver),
      body: { decision: 'deny', reason: 'decided from the queue before the webhook fired' },
    });
    expect(decided.status).toBe(200);
    const sent = webhookUp();
    await runAlarm();
    expect(messagesOf(sent, pending.id)).toEqual([]);
    expect(await notifyRecords(pending.id)).toEqual([]);
  });

  it('drops the message and audits webhook_not_configured when there is no signing secret', async () => {
    const pending = await openApproval();
    const sent = webhookUp();
    const withoutSecret = { ...env, APPROVAL_WEBHOOK_SECRET: '' } as Env;
    const recorded: DecidedRecord[] = [];
    const left = await runInDurableObject(agentObject(), async (_instance: AgentState, state) => {
      await deliverDue(
        state.storage.sql,
        withoutSecret,
        nowSeconds(),
        () => true,
        (attempt) => recorded.push(attempt),
      );
      return state.storage.sql.exec('SELECT approval_id FROM notifications WHERE approval_id = ?', pending.id).toArray()
        .length;
    });
    expect(left).toBe(0);
    expect(sent).toEqual([]);
    const [record, ...more] = recorded.filter((attempt) => attempt.target === `approval:${pending.id}`);
    expect(more).toEqual([]);
    expect(record).toMatchObject({ decision: 'refused', reason: 'webhook_not_configured' });
    expect(detailOf(record)).toEqual({ secret: false });
    expect((await readApproval(pending.id, creds.auditor)).status).toBe('pending');
  });
});
