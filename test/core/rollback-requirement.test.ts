/**
 * The rollback paths an approval shows: `authorize` gathers the `rollback` of every grant that needs the
 * approval, once per grant, beside who must approve (on a fake Cedar engine).
 */
import { describe, expect, it } from 'vitest';
import { type AuthorizationRequest, authorize, type CedarAnswer, type PolicyEngine } from '../../worker/core/policy';
import type { Grant, PolicyBundle } from '../../worker/policy/bundle';
import { loadedPolicy } from '../../worker/policy/loaded';

const { bundle: demo } = loadedPolicy();
const IAM = 'https://iam.example.com';

function bundleWithGrants(grants: Record<string, Partial<Grant>>): PolicyBundle {
  const entries = Object.entries(grants).map(([id, grant]) => [
    id,
    { source: `test:${id}`, effect: 'permit', ...grant },
  ]);
  return { ...demo, cedar: { ...demo.cedar, grants: Object.fromEntries(entries) } };
}

/** Allows each action only once approved, by the grants `policies` names for it. */
function approvedBy(policies: Record<string, string[]>): PolicyEngine {
  return {
    evaluate: ({ action, context }): CedarAnswer =>
      context.approved ? { allow: true, policies: policies[action] ?? [] } : { allow: false, policies: [] },
  };
}

function request(actions: string[]): AuthorizationRequest {
  const agent = demo.agents['demo-agent'];
  if (agent === undefined) throw new Error('no demo-agent in the demo bundle');
  const base = {
    audience: IAM,
    requestedTtl: undefined,
    justification: true,
    approved: false,
    taskId: 't',
    via: 'self',
  };
  return { ...base, agent, actions, now: new Date(Date.now()) };
}

describe('authorize: rollback paths of the approval', () => {
  const bundle = bundleWithGrants({
    disable: { approval: { count: 1, fourEyes: true }, rollback: { runbook: 'https://runbooks.example.com/enable' } },
    rotate: { approval: { count: 2, fourEyes: false }, rollback: { none: 'a rotated key cannot come back' } },
    both: { approval: { count: 1, fourEyes: false }, rollback: { action: 'iam:read-user' } },
  });

  it('names the rollback path of each grant that needs the approval, once per grant', () => {
    const engine = approvedBy({
      'iam:disable-user': ['disable', 'both'],
      'iam:rotate-key': ['rotate', 'both'],
    });
    const { approval } = authorize(engine, bundle, request(['iam:disable-user', 'iam:rotate-key']));
    expect(approval).toEqual({
      count: 2,
      groups: [],
      fourEyes: true,
      actions: ['iam:disable-user', 'iam:rotate-key'],
      rollback: [
        { grant: 'disable', runbook: 'https://runbooks.example.com/enable' },
        { grant: 'both', action: 'iam:read-user' },
        { grant: 'rotate', none: 'a rotated key cannot come back' },
      ],
    });
  });

  it('names none for a grant of a bundle that declares none', () => {
    const engine = approvedBy({ 'iam:disable-user': ['undeclared'] });
    const undeclared = bundleWithGrants({ undeclared: { approval: { count: 1, fourEyes: false } } });
    expect(authorize(engine, undeclared, request(['iam:disable-user'])).approval?.rollback).toEqual([]);
  });
});
