/**
 * An agent past its `expires` date (`policies/agents.yaml`) is refused every token, `403 access_denied`,
 * with a record of its own reason (`agent_expired`) in the agent's chain. The policy here is the isolate's
 * with the demo agent's `expires` set from the clock; the stores are the real ones.
 */
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { utcDay } from '../../worker/core/lifecycle';
import { type ExchangeInput, exchangeToken } from '../../worker/exchange/pipeline';
import type { PolicyBundle } from '../../worker/policy/bundle';
import { loadedPolicy } from '../../worker/policy/loaded';
import { exchangeDeps } from '../../worker/routes/token';
import { attestation } from '../helpers/attestation';
import { auditRecords, detailOf } from '../helpers/audit';
import { DEMO_AGENT, TICKETS } from '../helpers/demo';
import { JWT_TOKEN_TYPE, TASK_DESCRIPTION, TOKEN_EXCHANGE } from '../helpers/requests';

const DAY_MS = 86_400_000;

/** The isolate's policy with the demo agent expiring on `expires`. */
function expiringOn(expires: string): PolicyBundle {
  const { bundle } = loadedPolicy();
  const agent = bundle.agents[DEMO_AGENT];
  if (agent === undefined) throw new Error('the demo agent is not in the policy');
  return { ...bundle, agents: { ...bundle.agents, [DEMO_AGENT]: { ...agent, expires } } };
}

async function exchangeWith(bundle: PolicyBundle) {
  const taskId = crypto.randomUUID();
  const input: ExchangeInput = {
    origin: { at: Date.now(), ip: '192.0.2.1', colo: 'AMS', userAgent: 'agent/1.0' },
    now: new Date(),
    readFields: async () => ({
      grant_type: TOKEN_EXCHANGE,
      subject_token: await attestation(),
      subject_token_type: JWT_TOKEN_TYPE,
      audience: TICKETS,
      scope: 'tickets:read',
      task: { description: TASK_DESCRIPTION, id: taskId },
    }),
    dpop: null,
  };
  const background: Promise<unknown>[] = [];
  const answer = await exchangeToken(input, { ...exchangeDeps(env, (work) => background.push(work)), bundle });
  await Promise.all(background);
  return { answer, taskId };
}

describe('POST /token for an agent with an expires date', () => {
  it('refuses it from its expires date on, 403 access_denied, recorded as agent_expired', async () => {
    const { answer, taskId } = await exchangeWith(expiringOn(utcDay(Date.now())));
    expect(answer.kind).toBe('refused');
    if (answer.kind !== 'refused') return;
    expect(answer.refusal).toMatchObject({ code: 'access_denied', status: 403, reason: 'agent_expired' });
    const record = (await auditRecords()).find((r) => r.taskId === taskId);
    expect(record).toMatchObject({
      event: 'token.exchange',
      decision: 'refused',
      reason: 'agent_expired',
      errorCode: 'access_denied',
      agent: DEMO_AGENT,
      chain: `agent:${DEMO_AGENT}`,
      tokenJti: null,
    });
    expect(detailOf(record)).toMatchObject({ expires: utcDay(Date.now()) });
  });

  it('issues tokens up to the day before', async () => {
    const { answer, taskId } = await exchangeWith(expiringOn(utcDay(Date.now() + DAY_MS)));
    expect(answer.kind).toBe('issued');
    const record = (await auditRecords()).find((r) => r.taskId === taskId);
    expect(record).toMatchObject({ decision: 'granted', agent: DEMO_AGENT });
  });
});
