/**
 * Status lists that do not answer: fail closed, lose nothing. A reserve that does not answer refuses `/token`
 * with 503 and records why; a list that does not take a revoke's flip makes the revoke answer 503 after it is
 * committed, and the agent's alarm delivers the flip once the list answers.
 *
 * The first test must issue this file's first token: the isolate then holds no block of indexes yet.
 */
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it, vi } from 'vitest';
import { STATUS } from '../../worker/core/status-list';
import { type StatusList, statusShardStub } from '../../worker/status/status-list';
import { agentObject } from '../helpers/agent-object';
import { detailOf, matchingAudit } from '../helpers/audit';
import { exchange, expectError, postJsonTo } from '../helpers/requests';
import { introspect, issue } from '../helpers/tokens';
import { statusOf } from './list';

/** Longer than any deadline a caller gives a shard: a reserve's (1.2 s in tests) or a flip's (2 s). */
const SILENT_MS = 3000;

/**
 * Makes every shard not answer `call` until `answer()`: the class's method is replaced on its prototype, in
 * this isolate, which runs the objects too. A call made meanwhile fails after {@link SILENT_MS}, in its own
 * object's context, long after its caller gave up.
 */
async function silence(call: 'reserve' | 'flip'): Promise<() => void> {
  const prototype = await runInDurableObject(statusShardStub(env, 0), (instance: StatusList) =>
    Object.getPrototypeOf(instance),
  );
  const spy = vi
    .spyOn(prototype as StatusList, call)
    .mockImplementation(
      () => new Promise<never>((_, reject) => setTimeout(() => reject(new Error('silenced')), SILENT_MS)),
    );
  return () => spy.mockRestore();
}

describe('a reserve that does not answer', () => {
  it('refuses /token with 503 and records the store that did not answer; the next request is served', async () => {
    const answer = await silence('reserve');
    const started = Date.now();
    const refused = await exchange();
    // Refused at the deadline (60 % of the test's 2 s lease), not at once: the shard did not answer.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    await expectError(refused, 503, 'temporarily_unavailable');
    const [record] = await matchingAudit(
      (record) => record.reason === 'store_unavailable' && detailOf(record).store === 'status_list',
      1,
    );
    expect(record?.decision).toBe('refused');
    answer();
    expect((await exchange()).status).toBe(200);
  });
});

describe('a list that does not take a flip', () => {
  it('makes the revoke 503 once committed; the alarm delivers the flip when the list answers', async () => {
    const held = await issue();
    const answer = await silence('flip');
    const revoke = () => postJsonTo('/revoke', { token: held.token });
    const started = Date.now();
    await expectError(await revoke(), 503, 'temporarily_unavailable');
    // At the flip's deadline (2 s): the list did not answer.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    // Committed: introspection says so at once.
    expect((await introspect(held.token)).active).toBe(false);
    answer();
    expect(await statusOf(held.token)).toBe(STATUS.VALID);
    // The object retries on its alarm (a second later at the earliest; the test runs it now).
    await runDurableObjectAlarm(agentObject());
    expect(await statusOf(held.token)).toBe(STATUS.INVALID);
    expect(
      await runInDurableObject(
        agentObject(),
        (_instance, state) => state.storage.sql.exec('SELECT COUNT(*) AS n FROM status_flips').one().n,
      ),
    ).toBe(0);
  });

  it('is repeatable: the same revoke again answers 200 and sends what waits', async () => {
    const held = await issue();
    const answer = await silence('flip');
    const revoke = () => postJsonTo('/revoke', { token: held.token });
    expect((await revoke()).status).toBe(503);
    answer();
    expect((await revoke()).status).toBe(200);
    expect(await statusOf(held.token)).toBe(STATUS.INVALID);
  });
});
