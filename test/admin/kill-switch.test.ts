import { env, exports } from 'cloudflare:workers';
import { decodeJwt } from 'jose';
import { afterEach, describe, expect, it, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { KILL_SWITCH_SHARDS, KillSwitchShard } from '../../worker/control/kill-switch';
import { evictAgentObject } from '../helpers/agent-object';
import { auditRecords, lastAudit } from '../helpers/audit';
import { DEMO_AGENT, ISSUER } from '../helpers/demo';
import { exchange, exchangeFields, postJson, readError } from '../helpers/requests';
import { introspect, issue } from '../helpers/tokens';

const ADMIN = { authorization: `Bearer ${creds.admin}`, 'content-type': 'application/json' };

function setKillSwitch(engaged: boolean, reason = 'incident drill'): Promise<Response> {
  return exports.default.fetch(`${ISSUER}/admin/kill-switch`, {
    method: 'PUT',
    headers: ADMIN,
    body: JSON.stringify({ engaged, reason }),
  });
}

async function killSwitchState(): Promise<Record<string, unknown>> {
  return (await (await exports.default.fetch(`${ISSUER}/admin/kill-switch`, { headers: ADMIN })).json()) as Record<
    string,
    unknown
  >;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** The isolate's lease on the kill switch state (the test configuration's `KILL_SWITCH_LEASE_MS`). */
const LEASE_MS = Number(env.KILL_SWITCH_LEASE_MS);

afterEach(async () => {
  vi.restoreAllMocks();
  if ((await killSwitchState()).engaged) expect((await setKillSwitch(false, 'test cleanup')).status).toBe(200);
});

describe('PUT /admin/kill-switch: the global kill switch', () => {
  it('stops all issuance once engaged, and every token reads inactive until released', async () => {
    const { token: before } = await issue();
    expect(await introspect(before)).toMatchObject({ active: true });

    const engaged = await setKillSwitch(true, 'suspected credential leak');
    expect(engaged.status).toBe(200);
    expect(await engaged.json()).toMatchObject({
      engaged: true,
      reason: 'suspected credential leak',
      by: 'demo-admin',
      shards: { total: KILL_SWITCH_SHARDS, current: KILL_SWITCH_SHARDS },
    });

    const refused = await exchange();
    expect(refused.status).toBe(403);
    expect((await readError(refused)).error).toBe('access_denied');
    expect(await lastAudit()).toMatchObject({ decision: 'refused', reason: 'kill_switch_engaged', tokenJti: null });
    expect(await introspect(before)).toEqual({ active: false });
    expect(await killSwitchState()).toMatchObject({ engaged: true, by: 'demo-admin' });

    expect((await setKillSwitch(false, 'leak contained')).status).toBe(200);
    expect((await exchange()).status).toBe(200);
    expect(await introspect(before)).toMatchObject({ active: true });
  });

  it('audits who flipped it and why', async () => {
    await setKillSwitch(true, 'drill 42');
    const record = (await auditRecords()).filter((r) => r.event === 'admin.kill_switch.set').at(-1);
    expect(record).toMatchObject({
      decision: 'granted',
      actor: 'demo-admin',
      actorRole: 'admin',
      target: 'kill-switch',
      adminReason: 'drill 42',
    });
  });

  it.each([
    ['no reason', { engaged: true }],
    ['an empty reason', { engaged: true, reason: '  ' }],
    ['engaged that is not a boolean', { engaged: 'yes', reason: 'x' }],
  ])('refuses a change with %s and changes nothing', async (_name, body) => {
    const response = await exports.default.fetch(`${ISSUER}/admin/kill-switch`, {
      method: 'PUT',
      headers: ADMIN,
      body: JSON.stringify(body),
    });
    expect(response.status).toBe(400);
    expect((await readError(response)).error).toBe('invalid_request');
    expect(await killSwitchState()).toMatchObject({ engaged: false });
  });
});

describe('the kill switch under concurrent load', () => {
  it('gives no token to any request that started after the engage answered, and audits every token issued', async () => {
    // The engage answers only once every isolate's lease on the released state has run out (about a
    // second here), so requests keep starting until a few of them have started after it answered.
    let engageAnswered = false;
    const flights: Promise<{ startedAfterEngage: boolean; response: Response }>[] = [];
    const engage = (async () => {
      await sleep(30);
      const response = await setKillSwitch(true, 'load test');
      engageAnswered = true;
      return response;
    })();
    let startedAfter = 0;
    while (startedAfter < 8) {
      const body = await exchangeFields();
      const startedAfterEngage = engageAnswered;
      if (startedAfterEngage) startedAfter += 1;
      flights.push(postJson(body).then((response) => ({ startedAfterEngage, response })));
      await sleep(20);
    }
    expect((await engage).status).toBe(200);
    const outcomes = await Promise.all(flights);

    const after = outcomes.filter((o) => o.startedAfterEngage);
    expect(after.length).toBeGreaterThan(0);
    for (const { response } of after) expect(response.status).toBe(403);
    for (const { response } of outcomes) expect([200, 403, 429]).toContain(response.status);

    const granted = await Promise.all(
      outcomes
        .filter((o) => o.response.status === 200)
        .map(async (o) => (await o.response.json()) as { access_token: string }),
    );
    expect(granted.length).toBeGreaterThan(0);
    const audited = new Set(
      (await auditRecords())
        .filter((r) => r.decision === 'granted' && r.event === 'token.exchange')
        .map((r) => r.tokenJti),
    );
    for (const { access_token } of granted) expect(audited).toContain(decodeJwt(access_token).jti);
  });

  it('kills every token admitted before an agent revoke answered, and none asked for after it', async () => {
    // The previous test drained the agent's rate-limit bucket; it lives in the object's memory.
    await evictAgentObject();
    const bodies = await Promise.all(Array.from({ length: 14 }, () => exchangeFields()));
    let revokeAnswered = false;
    const flights: Promise<{ startedBeforeRevoke: boolean; response: Response }>[] = [];
    const revoke = (async () => {
      await sleep(20);
      const response = await exports.default.fetch(`${ISSUER}/admin/agents/${DEMO_AGENT}/revoke`, {
        method: 'POST',
        headers: ADMIN,
        body: JSON.stringify({ reason: 'agent misbehaving' }),
      });
      revokeAnswered = true;
      return response;
    })();
    for (const body of bodies) {
      const startedBeforeRevoke = !revokeAnswered;
      flights.push(postJson(body).then((response) => ({ startedBeforeRevoke, response })));
      await sleep(5);
    }
    expect((await revoke).status).toBe(200);
    // Asked for after the revoke answered, in the same second as it: alive, whatever their iat.
    const later = await Promise.all(Array.from({ length: 3 }, () => issue()));
    const outcomes = await Promise.all(flights);
    const early = outcomes.filter((o) => o.startedBeforeRevoke && o.response.status === 200);
    expect(early.length).toBeGreaterThan(0);
    const audited = new Set((await auditRecords()).filter((r) => r.decision === 'granted').map((r) => r.tokenJti));
    for (const { response } of early) {
      const { access_token } = (await response.json()) as { access_token: string };
      expect(await introspect(access_token)).toEqual({ active: false });
      expect(audited).toContain(decodeJwt(access_token).jti);
    }
    for (const { token } of later) expect(await introspect(token)).toMatchObject({ active: true });
  });
});

describe('the kill switch fails closed', () => {
  it('refuses /token with 503 when the shard throws as the isolate renews its lease', async () => {
    await sleep(LEASE_MS);
    vi.spyOn(KillSwitchShard.prototype, 'state').mockRejectedValue(new Error('shard down'));
    const response = await exchange();
    expect(response.status).toBe(503);
    expect((await readError(response)).error).toBe('temporarily_unavailable');
    expect(await lastAudit()).toMatchObject({ decision: 'refused', reason: 'store_unavailable' });
  });

  it('refuses /token with 503 when the shard hangs as the isolate renews its lease', async () => {
    await sleep(LEASE_MS);
    vi.spyOn(KillSwitchShard.prototype, 'state').mockReturnValue(new Promise(() => {}));
    const response = await exchange();
    expect(response.status).toBe(503);
  });

  it('answers 503 to an engage that did not reach every shard, and a repeat completes it', async () => {
    const apply = KillSwitchShard.prototype.apply;
    vi.spyOn(KillSwitchShard.prototype, 'apply').mockRejectedValueOnce(new Error('one shard down'));
    const partial = await setKillSwitch(true, 'partial');
    expect(partial.status).toBe(503);
    vi.mocked(KillSwitchShard.prototype.apply).mockImplementation(apply);
    expect(await killSwitchState()).toMatchObject({
      engaged: true,
      shards: { total: KILL_SWITCH_SHARDS, current: KILL_SWITCH_SHARDS - 1 },
    });
    // The shards that took it refuse already: fail closed while incomplete.
    const repeat = await setKillSwitch(true, 'partial, repeated');
    expect(repeat.status).toBe(200);
    expect(await repeat.json()).toMatchObject({ shards: { current: KILL_SWITCH_SHARDS } });
  });
});
