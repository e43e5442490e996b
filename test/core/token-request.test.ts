import { describe, expect, it } from 'vitest';
import {
  ACCESS_TOKEN_TYPE,
  MAX_DESCRIPTION_CHARS,
  parseTokenRequest,
  TOKEN_EXCHANGE_GRANT,
} from '../../worker/core/token-request';
import { refusalOf } from './refusal';

const TICKETS = 'https://tickets.example.com';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/** A valid request with `overrides`; a field set to undefined is left out. */
function raw(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    grant_type: TOKEN_EXCHANGE_GRANT,
    subject_token: 'header.payload.signature',
    subject_token_type: JWT_TYPE,
    audience: TICKETS,
    scope: 'tickets:read tickets:comment',
    task: { description: 'Summarise ticket T-1234' },
    ...overrides,
  };
  for (const [name, value] of Object.entries(fields)) if (value === undefined) delete fields[name];
  return fields;
}

function refusal(overrides: Record<string, unknown>) {
  const error = refusalOf(() => parseTokenRequest(raw(overrides)));
  return { code: error.code, status: error.status, reason: error.reason };
}

const INVALID = { code: 'invalid_request', status: 400, reason: 'invalid_field' };

describe('parseTokenRequest', () => {
  it('accepts a minimal token-exchange request', () => {
    expect(parseTokenRequest(raw())).toEqual({
      subjectToken: 'header.payload.signature',
      audience: TICKETS,
      actions: ['tickets:read', 'tickets:comment'],
      task: { description: 'Summarise ticket T-1234' },
      requestedTtl: undefined,
    });
  });

  it('accepts an id_token as the subject token type', () => {
    expect(
      parseTokenRequest(raw({ subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' })).subjectToken,
    ).toBe('header.payload.signature');
  });

  it('ignores parameters it does not know (RFC 6749 §3.2)', () => {
    expect(parseTokenRequest(raw({ client_id: 'x', extra: 1 })).audience).toBe(TICKETS);
  });

  describe('grant and token types', () => {
    it('refuses another grant_type', () => {
      expect(refusal({ grant_type: 'client_credentials' })).toEqual(INVALID);
    });

    it('refuses a missing grant_type', () => {
      expect(refusal({ grant_type: undefined })).toEqual(INVALID);
    });

    it('refuses an unknown subject_token_type', () => {
      expect(refusal({ subject_token_type: 'urn:ietf:params:oauth:token-type:saml2' })).toEqual(INVALID);
    });

    it('refuses a missing or empty subject_token', () => {
      expect(refusal({ subject_token: undefined })).toEqual(INVALID);
      expect(refusal({ subject_token: '' })).toEqual(INVALID);
    });

    it('accepts requested_token_type access_token', () => {
      expect(parseTokenRequest(raw({ requested_token_type: ACCESS_TOKEN_TYPE })).audience).toBe(TICKETS);
    });

    it('refuses any other requested_token_type', () => {
      expect(refusal({ requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' })).toEqual(INVALID);
      expect(refusal({ requested_token_type: JWT_TYPE })).toEqual(INVALID);
    });

    it('refuses an actor_token: delegation is not supported', () => {
      expect(refusal({ actor_token: 'header.payload.signature', actor_token_type: JWT_TYPE })).toEqual(INVALID);
      expect(refusal({ actor_token: '' })).toEqual(INVALID);
    });
  });

  describe('audience and resource', () => {
    it('takes resource as a synonym of audience', () => {
      expect(parseTokenRequest(raw({ audience: undefined, resource: TICKETS })).audience).toBe(TICKETS);
    });

    it('accepts audience and resource naming the same API', () => {
      expect(parseTokenRequest(raw({ resource: TICKETS })).audience).toBe(TICKETS);
    });

    it('refuses audience and resource naming different APIs', () => {
      expect(refusal({ resource: 'https://graph.example.com' })).toEqual(INVALID);
    });

    it('refuses a request with neither audience nor resource', () => {
      expect(refusal({ audience: undefined })).toEqual(INVALID);
    });

    it('refuses an empty audience', () => {
      expect(refusal({ audience: '' })).toEqual(INVALID);
    });
  });

  describe('scope', () => {
    it('splits on spaces, ignores repeated spaces and drops duplicates, keeping the first order', () => {
      expect(parseTokenRequest(raw({ scope: ' tickets:comment  tickets:read tickets:comment ' })).actions).toEqual([
        'tickets:comment',
        'tickets:read',
      ]);
    });

    it('refuses an empty or blank scope', () => {
      expect(refusal({ scope: '' })).toEqual(INVALID);
      expect(refusal({ scope: '   ' })).toEqual(INVALID);
      expect(refusal({ scope: undefined })).toEqual(INVALID);
    });

    it('accepts every allowed character in an action, up to 128 characters', () => {
      const longest = `a${'b'.repeat(127)}`;
      expect(parseTokenRequest(raw({ scope: `Api.v2_x:read/item-1 ${longest}` })).actions).toEqual([
        'Api.v2_x:read/item-1',
        longest,
      ]);
    });

    it('refuses an invalid action', () => {
      for (const action of ['tickets:read*', ':read', '-read', 'tickets read\t', 'tické', `a${'b'.repeat(128)}`]) {
        expect(refusal({ scope: `tickets:read ${action}` }), action).toEqual(INVALID);
      }
    });

    it('refuses a scope that is not a string', () => {
      expect(refusal({ scope: ['tickets:read'] })).toEqual(INVALID);
    });

    it('accepts 32 actions and refuses 33', () => {
      const actions = (n: number) => Array.from({ length: n }, (_, i) => `api:action-${i}`).join(' ');
      expect(parseTokenRequest(raw({ scope: actions(32) })).actions).toHaveLength(32);
      expect(refusal({ scope: actions(33) })).toEqual(INVALID);
    });

    it('counts actions after dropping duplicates', () => {
      const scope = Array.from({ length: 64 }, (_, i) => `api:action-${i % 32}`).join(' ');
      expect(parseTokenRequest(raw({ scope })).actions).toHaveLength(32);
    });
  });

  describe('task', () => {
    it('accepts the task as an object (JSON body)', () => {
      const task = { description: 'Close T-1', id: 'T-1', justification: 'customer asked' };
      expect(parseTokenRequest(raw({ task })).task).toEqual(task);
    });

    it('accepts the task as a JSON string (form body)', () => {
      const task = { description: 'Close T-1', id: 'T-1' };
      expect(parseTokenRequest(raw({ task: JSON.stringify(task) })).task).toEqual(task);
    });

    it('refuses a task string that is not JSON', () => {
      expect(refusal({ task: 'Close T-1' })).toEqual(INVALID);
    });

    it('refuses a task that is JSON but not an object', () => {
      for (const task of ['"Close T-1"', 'null', '[]', '42']) expect(refusal({ task }), task).toEqual(INVALID);
    });

    it('refuses a missing task', () => {
      expect(refusal({ task: undefined })).toEqual(INVALID);
    });

    it('refuses a task with an unknown field', () => {
      expect(refusal({ task: { description: 'x', owner: 'mallory' } })).toEqual(INVALID);
    });

    it('refuses an empty description', () => {
      expect(refusal({ task: { description: '' } })).toEqual(INVALID);
    });

    it(`accepts a description of ${MAX_DESCRIPTION_CHARS} characters and refuses one more`, () => {
      expect(MAX_DESCRIPTION_CHARS).toBe(4096);
      const description = 'd'.repeat(4096);
      expect(parseTokenRequest(raw({ task: { description } })).task.description).toBe(description);
      expect(refusal({ task: { description: 'd'.repeat(4097) } })).toEqual(INVALID);
    });

    it('accepts a task id of 1 to 128 of A-Z a-z 0-9 . _ : -', () => {
      for (const id of ['T', 'T-1234', 'jira:OPS_12.3', `a${'b'.repeat(127)}`]) {
        expect(parseTokenRequest(raw({ task: { description: 'x', id } })).task.id, id).toBe(id);
      }
    });

    it('refuses any other task id', () => {
      for (const id of ['', '-T1', '.T1', 'T 1', 'T/1', 'T*', `a${'b'.repeat(128)}`, 12]) {
        expect(refusal({ task: { description: 'x', id } }), String(id)).toEqual(INVALID);
      }
    });

    it('trims the justification and refuses a blank one', () => {
      expect(parseTokenRequest(raw({ task: { description: 'x', justification: '  IR-7 ' } })).task.justification).toBe(
        'IR-7',
      );
      expect(refusal({ task: { description: 'x', justification: '   ' } })).toEqual(INVALID);
    });
  });

  describe('requested_ttl', () => {
    it('accepts a number (JSON body)', () => {
      expect(parseTokenRequest(raw({ requested_ttl: 600 })).requestedTtl).toBe(600);
    });

    it('accepts a numeric string (form body)', () => {
      expect(parseTokenRequest(raw({ requested_ttl: '600' })).requestedTtl).toBe(600);
    });

    it('is undefined when absent', () => {
      expect(parseTokenRequest(raw()).requestedTtl).toBeUndefined();
    });

    it('refuses zero, negative and non-integer values', () => {
      for (const ttl of [0, '0', -1, 1.5, '1.5', 'abc', '']) {
        expect(refusal({ requested_ttl: ttl }), JSON.stringify(ttl)).toEqual(INVALID);
      }
    });

    it('accepts up to a day and refuses more', () => {
      expect(parseTokenRequest(raw({ requested_ttl: 86_400 })).requestedTtl).toBe(86_400);
      expect(refusal({ requested_ttl: 86_401 })).toEqual(INVALID);
    });

    it('refuses a value that is neither a number nor a string', () => {
      for (const ttl of [true, false, null, [600], { seconds: 600 }]) {
        expect(refusal({ requested_ttl: ttl }), JSON.stringify(ttl)).toEqual(INVALID);
      }
    });

    it('refuses a string that is not plain decimal digits', () => {
      for (const ttl of ['0x258', '6e2', ' 600', '600 ']) {
        expect(refusal({ requested_ttl: ttl }), JSON.stringify(ttl)).toEqual(INVALID);
      }
    });
  });
});
