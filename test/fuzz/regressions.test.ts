/**
 * Cases the fuzz suite found, pinned as plain examples (docs/testing.md: how to pin one). Each names the
 * property that failed and the seed that found it, and asserts what the contract says instead.
 */
import { describe, expect, it } from 'vitest';
import {
  evictAgentObject,
  exchangeFields,
  expectError,
  lastAudit,
  postForm,
  postJson,
  TASK_DESCRIPTION,
} from '../helpers';

describe('found by test/fuzz/token.test.ts', () => {
  // Seed 20261201 (npm test's): the form encoding's `task` is a JSON string, which the body reader checks as
  // text; its `\ud800` escape became a lone surrogate in the justification, and the request was granted.
  for (const [encoding, send] of [
    ['form', postForm],
    ['JSON', postJson],
  ] as const) {
    it(`refuses a lone surrogate spelt inside a ${encoding} task string, and the attestation stays unused`, async () => {
      await evictAgentObject();
      const fields = await exchangeFields();
      const task = JSON.stringify({ description: TASK_DESCRIPTION, id: '0', justification: '\ud800' });
      await expectError(await send({ ...fields, task }), 400, 'invalid_request');
      expect(await lastAudit()).toMatchObject({ decision: 'refused', reason: 'invalid_field' });

      const again = await send(fields);
      expect(again.status, await again.clone().text()).toBe(200);
    });
  }
});
