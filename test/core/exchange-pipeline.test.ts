/**
 * The `/token` pipeline, branch by branch, with fake stores: what it asks the agent's object, what it
 * records where, and what it answers. The real stores are exercised through the worker in the `worker` project.
 */
import { decodeJwt, generateKeyPair } from 'jose';
import { describe, expect, it } from 'vitest';
import type { DecidedRecord } from '../../worker/audit/record';
import type { SigningKey } from '../../worker/core/access-token';
import { refuse } from '../../worker/core/errors';
import type { ExchangeCall, ExchangeResult } from '../../worker/core/exchange';
import { type ExchangeDeps, type ExchangeInput, exchangeToken } from '../../worker/exchange/pipeline';
import { tokenRequestProof } from '../../worker/http/dpop';
import { createKeyResolver } from '../../worker/keys/attestation-keys';
import { loadedPolicy } from '../../worker/policy/loaded';
import type { Lease } from '../../worker/stores/kill-switch';
import { APPROVAL_ID, DISABLE_USER, incidentTask } from '../helpers/approvals';
import { attestation } from '../helpers/attestation';
import { expectConsole } from '../helpers/console';
import { DEMO_AGENT, IAM, ISSUER, TICKETS } from '../helpers/demo';
import { dpopKey, dpopProof } from '../helpers/dpop';
import { JWT_TOKEN_TYPE, TASK_DESCRIPTION, TOKEN_EXCHANGE } from '../helpers/requests';

const { bundle, engine } = loadedPolicy();
const keys = createKeyResolver(bundle);
const signingPair = await generateKeyPair('ES256');
const SIGNING_KEY: SigningKey = { kid: 'test-key', key: signingPair.privateKey };
/** A key that cannot sign ES256: what a broken key store would hand out. */
const BROKEN_KEY: SigningKey = { kid: 'broken', key: signingPair.publicKey };

/** Everything the fakes saw: the object's calls, and every record made outside it. */
interface Seen {
  exchanges: ExchangeCall[];
  agentRecords: { agent: string; reason: string | undefined }[];
  unverified: DecidedRecord[];
  elsewhere: DecidedRecord[];
  releases: string[];
}

interface FakeOptions {
  lease?: Partial<Lease> | 'fails';
  renewed?: boolean;
  answer?: (call: ExchangeCall) => ExchangeResult | Promise<ExchangeResult>;
  agentRecordFails?: boolean;
  key?: SigningKey | 'fails';
}

let nextIndex = 0;

function fakes(options: FakeOptions = {}): { deps: ExchangeDeps; seen: Seen } {
  const seen: Seen = { exchanges: [], agentRecords: [], unverified: [], elsewhere: [], releases: [] };
  const lease: Lease = {
    engaged: false,
    version: 1,
    reason: null,
    by: null,
    at: null,
    until: performance.now() + 60_000,
    ...(options.lease === 'fails' ? {} : options.lease),
  };
  const deps: ExchangeDeps = {
    issuer: ISSUER,
    bundle,
    engine,
    keys,
    agents: {
      exchange: async (agent, call) => {
        expect(agent).toBe(DEMO_AGENT);
        seen.exchanges.push(call);
        return (options.answer ?? (() => ({ outcome: 'granted' as const })))(call);
      },
      record: async (agent, _draft, outcome) => {
        if (options.agentRecordFails) throw refuse('store_unavailable', { store: 'agent_state' });
        seen.agentRecords.push({ agent, reason: outcome.decision === 'refused' ? outcome.reason : undefined });
      },
      releaseApproval: async (_agent, approvalId) => {
        seen.releases.push(approvalId);
      },
    },
    killSwitch: {
      lease: async () => {
        if (options.lease === 'fails') throw refuse('store_unavailable', { store: 'kill_switch' });
        return { lease, ...(options.renewed && { roundTripMs: 1.5 }) };
      },
      admissionDeadlineMs: 3000,
      remainingMs: (held) => held.until - performance.now(),
    },
    signingKey: async () => {
      if (options.key === 'fails') throw new Error('key store down');
      return { key: options.key ?? SIGNING_KEY, fromStore: false };
    },
    verifyProof: (header, now) => tokenRequestProof(header, `${ISSUER}/token`, bundle.settings.dpop, now),
    statusIndexes: { ready: async () => ({}), take: async () => ({ list: 'sl-0-0', idx: nextIndex++ }) },
    recordUnverified: async (record) => {
      seen.unverified.push(record);
    },
    recordInIntake: async (record) => {
      seen.elsewhere.push(record);
    },
  };
  return { deps, seen };
}

async function input(fields: Record<string, unknown> = {}, dpop: string | null = null): Promise<ExchangeInput> {
  const body = {
    grant_type: TOKEN_EXCHANGE,
    subject_token: await attestation(),
    subject_token_type: JWT_TOKEN_TYPE,
    audience: TICKETS,
    scope: 'tickets:read tickets:comment',
    task: { description: TASK_DESCRIPTION, id: 'task-1' },
    ...fields,
  };
  return {
    origin: { at: Date.now(), ip: '192.0.2.1', colo: 'AMS', userAgent: 'agent/1.0' },
    now: new Date(),
    readFields: async () => body,
    dpop,
  };
}

describe('the /token pipeline: a grant', () => {
  it('signs first, then makes one call to the agent object with the grant, and answers the token', async () => {
    const { deps, seen } = fakes();
    const answer = await exchangeToken(await input(), deps);
    expect(answer.kind).toBe('issued');
    if (answer.kind !== 'issued') return;
    expect(seen.exchanges).toHaveLength(1);
    const [call] = seen.exchanges;
    expect(call?.decision.kind).toBe('grant');
    const claims = decodeJwt(answer.body.access_token);
    expect(call?.decision.kind === 'grant' && call.decision.grant.tokenJti).toBe(claims.jti);
    expect(call?.draft).toMatchObject({
      agent: DEMO_AGENT,
      taskId: 'task-1',
      ip: '192.0.2.1',
      event: 'token.exchange',
    });
    expect(call?.admission.replayKey.startsWith(`${DEMO_AGENT}\n`)).toBe(true);
    expect(answer.body).toMatchObject({
      token_type: 'Bearer',
      scope: 'tickets:read tickets:comment',
      task_id: 'task-1',
    });
    expect(seen.agentRecords).toEqual([]);
    expect(answer.timings.map((timing) => timing.store)).toEqual(['agent']);
  });

  it('notes a lease renewal as a round trip of its own', async () => {
    const { deps } = fakes({ renewed: true });
    const answer = await exchangeToken(await input(), deps);
    expect(answer.timings.map((timing) => timing.store)).toEqual(['lease', 'agent']);
  });

  it('passes the DPoP proof to admission and binds the token to its key', async () => {
    const key = await dpopKey();
    const { deps, seen } = fakes({ answer: () => ({ outcome: 'granted', dpopNonce: 'n-2' }) });
    const answer = await exchangeToken(await input({}, await dpopProof(key)), deps);
    expect(answer).toMatchObject({ kind: 'issued', dpopNonce: 'n-2', body: { token_type: 'DPoP' } });
    expect(seen.exchanges[0]?.admission.dpop?.replayKey).toMatch(new RegExp(`^dpop:${key.jkt}:`));
  });
});

describe('the /token pipeline: refusals before the agent is known', () => {
  it('records a body that does not parse as unverified, and never calls the agent object', async () => {
    const { deps, seen } = fakes();
    const answer = await exchangeToken({ ...(await input()), readFields: async () => ({ grant_type: 'x' }) }, deps);
    expect(answer).toMatchObject({ kind: 'refused', refusal: { code: 'invalid_request' } });
    expect(seen.exchanges).toEqual([]);
    expect(seen.unverified).toHaveLength(1);
    expect(seen.unverified[0]).toMatchObject({ decision: 'refused', reason: 'invalid_field', agent: null });
  });

  it('records an attestation that does not verify as unverified, with the task it named', async () => {
    const { deps, seen } = fakes();
    const answer = await exchangeToken(await input({ subject_token: 'not.a.jwt' }), deps);
    expect(answer).toMatchObject({ kind: 'refused', refusal: { code: 'invalid_grant' } });
    expect(seen.unverified[0]).toMatchObject({ reason: 'malformed_attestation', taskId: 'task-1', agent: null });
    expect(seen.exchanges).toEqual([]);
  });
});

describe('the /token pipeline: refusals naming the agent, before admission', () => {
  it('records an invalid DPoP proof in the agent chain without admitting (nothing used up)', async () => {
    const key = await dpopKey();
    const { deps, seen } = fakes();
    const answer = await exchangeToken(await input({}, await dpopProof(key, { htm: 'GET' })), deps);
    expect(answer).toMatchObject({ kind: 'refused', refusal: { code: 'invalid_dpop_proof' } });
    expect(seen.exchanges).toEqual([]);
    expect(seen.agentRecords).toEqual([{ agent: DEMO_AGENT, reason: 'invalid_dpop_proof' }]);
  });

  it('refuses without a proof where the audience requires one', async () => {
    const { deps, seen } = fakes();
    const answer = await exchangeToken(await input({ audience: 'https://payments.example.com' }), deps);
    expect(answer).toMatchObject({ kind: 'refused', refusal: { reason: 'dpop_required' } });
    expect(seen.agentRecords).toEqual([{ agent: DEMO_AGENT, reason: 'dpop_required' }]);
  });

  it("refuses to poll another agent's approval", async () => {
    const { deps, seen } = fakes();
    const answer = await exchangeToken(
      await input({ approval_id: '00000000-0000-4000-8000-000000000000.release-bot' }),
      deps,
    );
    expect(answer).toMatchObject({ kind: 'refused', refusal: { reason: 'approval_unknown' } });
    expect(seen.exchanges).toEqual([]);
  });

  it('refuses while the kill switch lease says engaged, without admitting', async () => {
    const { deps, seen } = fakes({ lease: { engaged: true, version: 7 } });
    const answer = await exchangeToken(await input(), deps);
    expect(answer).toMatchObject({
      kind: 'refused',
      refusal: { code: 'access_denied', reason: 'kill_switch_engaged' },
    });
    expect(seen.exchanges).toEqual([]);
    expect(seen.agentRecords).toEqual([{ agent: DEMO_AGENT, reason: 'kill_switch_engaged' }]);
  });

  it('fails closed when the kill switch cannot be read', async () => {
    const { deps, seen } = fakes({ lease: 'fails' });
    const answer = await exchangeToken(await input(), deps);
    expect(answer).toMatchObject({ kind: 'refused', refusal: { status: 503, reason: 'store_unavailable' } });
    expect(seen.exchanges).toEqual([]);
  });

  it('fails closed when the signing key cannot be had', async () => {
    const { deps, seen } = fakes({ key: 'fails' });
    const answer = await exchangeToken(await input(), deps);
    expect(answer).toMatchObject({ kind: 'refused', refusal: { status: 503, reason: 'signing_unavailable' } });
    expect(seen.exchanges).toEqual([]);
  });

  it('fails closed when the key cannot sign', async () => {
    const { deps, seen } = fakes({ key: BROKEN_KEY });
    const answer = await exchangeToken(await input(), deps);
    expect(answer).toMatchObject({ kind: 'refused', refusal: { status: 503, reason: 'signing_unavailable' } });
    expect(seen.exchanges).toEqual([]);
  });

  it('refuses when the lease has run out before the object could answer within it', async () => {
    const { deps, seen } = fakes({ lease: { until: performance.now() - 1 } });
    const answer = await exchangeToken(await input(), deps);
    expect(answer).toMatchObject({ kind: 'refused', refusal: { status: 503 } });
    expect(seen.exchanges).toEqual([]);
  });
});

describe('the /token pipeline: what the agent object decides', () => {
  it('answers the object’s refusal and records nothing more', async () => {
    const { deps, seen } = fakes({ answer: () => ({ outcome: 'refused', refusal: { reason: 'replayed' } }) });
    const answer = await exchangeToken(await input(), deps);
    expect(answer).toMatchObject({ kind: 'refused', refusal: { code: 'invalid_grant', reason: 'replayed' } });
    expect(seen.agentRecords).toEqual([]);
    expect(seen.unverified).toEqual([]);
  });

  it('answers a rate limit with Retry-After', async () => {
    const { deps } = fakes({
      answer: () => ({ outcome: 'refused', refusal: { reason: 'rate_limited', retryAfter: 7 } }),
    });
    const answer = await exchangeToken(await input(), deps);
    expect(answer.kind === 'refused' && answer.refusal.headers).toEqual({ 'Retry-After': '7' });
  });

  it('sends a policy refusal to the object (which uses up the attestation) and answers it', async () => {
    const { deps, seen } = fakes({ answer: () => ({ outcome: 'recorded' }) });
    const answer = await exchangeToken(await input({ scope: 'tickets:delete' }), deps);
    expect(seen.exchanges[0]?.decision).toMatchObject({ kind: 'refuse', reason: 'action_not_granted' });
    expect(answer).toMatchObject({ kind: 'refused', refusal: { code: 'invalid_scope' } });
    expect(seen.agentRecords).toEqual([]);
  });

  it('opens an approval in the object and answers authorization_pending with what to poll with', async () => {
    const { deps, seen } = fakes({ answer: () => ({ outcome: 'recorded' }) });
    const task = incidentTask();
    const answer = await exchangeToken(await input({ audience: IAM, scope: DISABLE_USER, task }), deps);
    const call = seen.exchanges[0];
    expect(call?.decision.kind).toBe('open');
    if (call?.decision.kind !== 'open') return;
    expect(call.decision.approval).toMatchObject({ status: 'pending', terms: { taskId: task.id, audience: IAM } });
    expect(call.draft.target).toBe(`approval:${call.decision.approval.id}`);
    expect(answer).toMatchObject({
      kind: 'refused',
      refusal: { code: 'authorization_pending', body: { approval_id: call.decision.approval.id, task_id: task.id } },
    });
    expect(call.decision.approval.id).toMatch(APPROVAL_ID);
  });

  it('collects an approval, then signs the token naming who approved', async () => {
    const approvalId = `${crypto.randomUUID()}.${DEMO_AGENT}`;
    const { deps, seen } = fakes({ answer: () => ({ outcome: 'granted', approvedBy: ['erin@example.com'] }) });
    const task = incidentTask();
    const answer = await exchangeToken(
      await input({ audience: IAM, scope: DISABLE_USER, task, approval_id: approvalId }),
      deps,
    );
    expect(seen.exchanges[0]?.decision).toMatchObject({ kind: 'collect', approvalId });
    expect(answer.kind).toBe('issued');
    if (answer.kind !== 'issued') return;
    expect(decodeJwt(answer.body.access_token).approval).toEqual({ id: approvalId, by: 'erin@example.com' });
  });

  it('puts a collected approval back when its token cannot be signed, and answers 503', async () => {
    const approvalId = `${crypto.randomUUID()}.${DEMO_AGENT}`;
    const { deps, seen } = fakes({
      key: BROKEN_KEY,
      answer: () => ({ outcome: 'granted', approvedBy: ['erin@example.com'] }),
    });
    const answer = await exchangeToken(
      await input({ audience: IAM, scope: DISABLE_USER, task: incidentTask(), approval_id: approvalId }),
      deps,
    );
    expect(answer).toMatchObject({ kind: 'refused', refusal: { status: 503, reason: 'signing_unavailable' } });
    expect(seen.releases).toEqual([approvalId]);
    expect(seen.agentRecords).toEqual([]);
  });

  it('answers an approval not yet decided with authorization_pending and the poll interval', async () => {
    const approvalId = `${crypto.randomUUID()}.${DEMO_AGENT}`;
    const { deps } = fakes({
      answer: () => ({
        outcome: 'refused',
        refusal: { reason: 'approval', approvalId, poll: { status: 'pending', interval: 5, expiresIn: 600 } },
      }),
    });
    const answer = await exchangeToken(
      await input({ audience: IAM, scope: DISABLE_USER, task: incidentTask(), approval_id: approvalId }),
      deps,
    );
    expect(answer).toMatchObject({
      kind: 'refused',
      refusal: { code: 'authorization_pending', body: { approval_id: approvalId, interval: 5, expires_in: 600 } },
    });
  });

  it('fails closed when the object does not answer, and records the refusal in the intake when it cannot', async () => {
    const { deps, seen } = fakes({
      answer: () => {
        throw refuse('store_unavailable', { store: 'agent_state' });
      },
      agentRecordFails: true,
    });
    const logged = expectConsole('error');
    const answer = await exchangeToken(await input(), deps);
    expect(logged).toHaveBeenCalledExactlyOnceWith(
      'agent object could not record a refusal',
      DEMO_AGENT,
      expect.objectContaining({ reason: 'store_unavailable' }),
    );
    expect(answer).toMatchObject({ kind: 'refused', refusal: { status: 503, code: 'temporarily_unavailable' } });
    expect(seen.elsewhere).toHaveLength(1);
    expect(seen.elsewhere[0]).toMatchObject({ agent: DEMO_AGENT, reason: 'store_unavailable', tokenJti: null });
  });

  it('never answers an unexpected error with detail: a generic, recorded internal error', async () => {
    const { deps, seen } = fakes({
      answer: () => {
        throw new TypeError('boom');
      },
    });
    const logged = expectConsole('error');
    const answer = await exchangeToken(await input(), deps);
    expect(logged).toHaveBeenCalledExactlyOnceWith('unexpected error in /token', new TypeError('boom'));
    expect(answer).toMatchObject({ kind: 'refused', refusal: { status: 500, code: 'server_error' } });
    expect(answer.kind === 'refused' && answer.refusal.description).toBe('internal error');
    expect(seen.agentRecords).toEqual([{ agent: DEMO_AGENT, reason: 'internal_error' }]);
  });
});
