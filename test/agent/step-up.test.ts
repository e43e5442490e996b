/**
 * @tessera/agent's step-up poll against the real broker (approvals polled every second, expiring after 8):
 * the operator's callback, approval, denial, expiry, cancellation by `AbortSignal` (of one caller of several
 * sharing the wait, too), and `slow_down`.
 */
import type { PendingApproval } from '@tessera/agent';
import { decodeJwt } from 'jose';
import { describe, expect, inject, it } from 'vitest';
import { decide, demoTessera, errorOf } from './demo';

const broker = inject('agentBrokerUrl');
const IAM = 'https://iam.example.com';
/** Disabling an account needs a justification and one approver of the group `security` (policies/grants.cedar). */
const TASK = { description: 'Disable the account of a departed employee', justification: 'HR offboarding ticket 4711' };
const DISABLE = { audience: IAM, scope: 'iam:disable-user' };

describe('step-up approval (OpenID CIBA poll mode)', () => {
  it('tells the operator what waits, polls, and gets the token once approved', async () => {
    const told: PendingApproval[] = [];
    const tessera = demoTessera(broker, {
      onApproval: async (pending) => {
        told.push(pending);
        await decide(broker, pending.approvalId, 'approve');
      },
    });
    const task = await tessera.task(TASK);
    const token = await task.token(DISABLE);
    expect(told).toEqual([
      {
        approvalId: expect.any(String),
        taskId: task.id,
        description: TASK.description,
        justification: TASK.justification,
        audience: IAM,
        scope: 'iam:disable-user',
        expiresIn: expect.any(Number),
        interval: 1,
      },
    ]);
    expect(decodeJwt(token.accessToken)).toMatchObject({
      aud: IAM,
      scope: 'iam:disable-user',
      task: { id: task.id },
      approval: { id: told[0]?.approvalId },
    });
  });

  it('is approval_denied when an approver denies, with the approval id and the broker description', async () => {
    const tessera = demoTessera(broker, { onApproval: (pending) => decide(broker, pending.approvalId, 'deny') });
    const error = await errorOf((await tessera.task(TASK)).token(DISABLE));
    expect(error).toMatchObject({
      code: 'approval_denied',
      error: 'access_denied',
      approvalId: expect.any(String),
      description: expect.any(String),
    });
  });

  it('is approval_expired when nobody decides in time', async () => {
    let approvalId: string | undefined;
    const tessera = demoTessera(broker, {
      onApproval: (pending) => {
        approvalId = pending.approvalId;
      },
    });
    const error = await errorOf((await tessera.task(TASK)).token(DISABLE));
    expect(error).toMatchObject({ code: 'approval_expired', error: 'expired_token', approvalId });
  });

  it('stops polling when the AbortSignal fires, as aborted with its reason', async () => {
    const controller = new AbortController();
    const tessera = demoTessera(broker, { onApproval: () => controller.abort(new Error('operator gave up')) });
    const task = await tessera.task(TASK);
    const error = await errorOf(task.token({ ...DISABLE, signal: controller.signal }));
    expect(error).toMatchObject({ code: 'aborted', cause: new Error('operator gave up') });
  });

  it('keeps waiting for a caller that did not give up when another caller sharing the wait aborts', async () => {
    const controller = new AbortController();
    let told = 0;
    const tessera = demoTessera(broker, {
      onApproval: async (pending) => {
        told++;
        controller.abort(new Error('this caller gave up'));
        await decide(broker, pending.approvalId, 'approve');
      },
    });
    const task = await tessera.task(TASK);
    const [givenUp, kept] = await Promise.all([
      errorOf(task.token({ ...DISABLE, signal: controller.signal })),
      task.token(DISABLE),
    ]);
    expect(givenUp).toMatchObject({ code: 'aborted', cause: new Error('this caller gave up') });
    expect(kept.scope).toBe('iam:disable-user');
    expect(told).toBe(1);
  });

  it('waits five seconds longer after slow_down', async () => {
    const polls: number[] = [];
    let slowed = false;
    /** The broker, but the first poll is answered slow_down here, as a broker would (CIBA §11), and not sent. */
    const slowing: typeof fetch = async (input, init) => {
      if (!String(input).endsWith('/token')) return fetch(input, init);
      polls.push(Date.now());
      const { approval_id: polled } = JSON.parse(String(init?.body)) as { approval_id?: string };
      if (polled === undefined || slowed) return fetch(input, init);
      slowed = true;
      return Response.json({ error: 'slow_down', error_description: 'polling too fast' }, { status: 400 });
    };
    const tessera = demoTessera(broker, {
      fetch: slowing,
      dpop: false,
      onApproval: (pending) => decide(broker, pending.approvalId, 'approve'),
    });
    const token = await (await tessera.task(TASK)).token(DISABLE);
    expect(token.scope).toBe('iam:disable-user');
    const [, slowedPoll, next] = polls;
    expect((next ?? 0) - (slowedPoll ?? 0)).toBeGreaterThanOrEqual(5_900);
  });
});
