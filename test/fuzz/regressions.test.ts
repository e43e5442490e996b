/**
 * Cases the fuzz suite found, pinned as plain examples (docs/testing.md: how to pin one). Each names the
 * property that failed and the seed that found it, and asserts what the contract says instead.
 */
import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { evictAgentObject } from '../helpers/agent-object';
import { lastAudit } from '../helpers/audit';
import { ISSUER } from '../helpers/demo';
import { exchangeFields, expectError, postForm, postJson, TASK_DESCRIPTION } from '../helpers/requests';

describe('found by test/fuzz/token.test.ts', () => {
  // Seed 20261201: a JSON body with `scope` twice was read with its last `scope` (JSON.parse's choice) where a
  // proxy in front may read the first; the form encoding refuses a repeated parameter (RFC 6749 §3.2).
  const repeats = {
    'a top-level member': (body: string) => body.replace('{', '{"scope":"tickets:comment",'),
    'a member spelt with an escape': (body: string) => body.replace('{', '{"sc\\u006fpe":"tickets:comment",'),
    'a member of the task': (body: string) => body.replace('"task":{', '"task":{"description":"other",'),
  };
  for (const [name, repeat] of Object.entries(repeats)) {
    it(`refuses a JSON body with ${name} twice, and the attestation stays unused`, async () => {
      await evictAgentObject();
      const fields = await exchangeFields({ scope: 'tickets:read' });
      const response = await postJson(repeat(JSON.stringify(fields)));
      const body = await expectError(response, 400, 'invalid_request');
      expect(body.error_description).toMatch(/is repeated: send each member once$/);
      expect(await lastAudit()).toMatchObject({ decision: 'refused', reason: 'invalid_field' });

      const again = await postJson(fields);
      expect(again.status, await again.clone().text()).toBe(200);
    });
  }

  it('still reads a member name that appears once in each of two objects, or as a value', async () => {
    const fields = await exchangeFields({
      task: { description: 'description', id: 'scope' },
      unknown: { scope: 'x', task: ['description', { description: 1 }] },
    });
    const response = await postJson(fields);
    expect(response.status, await response.clone().text()).toBe(200);
  });

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

describe('found by test/fuzz/routes.test.ts', () => {
  // Seed 20261201: a console file that does not exist was answered 404 `not_found` with the files'
  // `Cache-Control: no-cache`; an error is `no-store`, and keeps the console's other headers.
  it('answers a missing console file 404 not_found, not to be stored, with the console’s CSP', async () => {
    const response = await exports.default.fetch(`${ISSUER}/console/0.js`);
    await expectError(response, 404, 'not_found');
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
  });
});

describe('found by test/fuzz/routes.test.ts, seed 20261202 (npm run fuzz)', () => {
  // A query parameter with an empty name (`?=x`) was dropped before the listing's strict schema saw it, so
  // the listing answered 200 where it refuses every parameter it does not define.
  it.each(['/admin/approvals', '/admin/audit', '/admin/agents'])(
    'refuses %s?=x as a parameter it does not take',
    async (path) => {
      const response = await exports.default.fetch(`${ISSUER}${path}?=x`, {
        headers: { authorization: `Bearer ${creds.admin}` },
      });
      await expectError(response, 400, 'invalid_request');
      expect(await lastAudit()).toMatchObject({ decision: 'refused', reason: 'invalid_field' });
    },
  );
});
