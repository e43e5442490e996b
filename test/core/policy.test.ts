import { describe, expect, it } from 'vitest';
import {
  type AuthorizationRequest,
  authorize,
  type CedarAnswer,
  type CedarQuery,
  type PolicyEngine,
} from '../../worker/core/policy';
import { type Agent, type Grant, type PolicyBundle, TTL_CEILING_SECONDS } from '../../worker/policy/bundle';
import { loadedPolicy } from '../../worker/policy/loaded';
import { refusalOf } from './refusal';

const TICKETS = 'https://tickets.example.com';
const GRAPH = 'https://graph.example.com';
const PAYROLL = 'https://payroll.example.com';
/**
 * The last `weekday` (0 = Sunday) at `hour`:00 UTC, today included: a time that names its weekday and hour,
 * taken from the clock rather than from a calendar date (`authorize` reads only the `now` it is given).
 */
function lastUtc(weekday: number, hour: number): Date {
  const day = new Date(Date.now());
  day.setUTCDate(day.getUTCDate() - ((day.getUTCDay() - weekday + 7) % 7));
  day.setUTCHours(hour, 0, 0, 0);
  return day;
}

/** A Wednesday, inside the business hours of `support-close-in-hours`. */
const WEDNESDAY_10H = lastUtc(3, 10);
const SATURDAY_10H = lastUtc(6, 10);
const WEDNESDAY_19H = lastUtc(3, 19);

const { bundle: demo, engine: cedar } = loadedPolicy();
const { defaultTtl, maxTtl } = demo.settings.tokens;

function agent(id: string): Agent {
  const found = demo.agents[id];
  if (found === undefined) throw new Error(`no agent ${id} in the demo bundle`);
  return found;
}

function request(overrides: Partial<AuthorizationRequest> = {}): AuthorizationRequest {
  return {
    agent: agent('demo-agent'),
    audience: TICKETS,
    actions: ['tickets:read'],
    requestedTtl: undefined,
    justification: false,
    approved: false,
    taskId: 'task-1',
    via: 'self',
    now: WEDNESDAY_10H,
    ...overrides,
  };
}

describe('authorize with the demo policies', () => {
  it('grants reading and commenting on tickets to a support agent, for the default TTL', () => {
    const granted = authorize(cedar, demo, request({ actions: ['tickets:read', 'tickets:comment'] }));
    expect(granted).toEqual({
      actions: ['tickets:read', 'tickets:comment'],
      ttl: defaultTtl,
      ttlCapped: false,
      grants: ['support-tickets'],
    });
  });

  it("grants a requested TTL up to the grant's @max_ttl", () => {
    const granted = authorize(cedar, demo, request({ requestedTtl: 600 }));
    expect([granted.ttl, granted.ttlCapped]).toEqual([600, false]);
  });

  it("lowers a requested TTL above the grant's @max_ttl instead of refusing", () => {
    const granted = authorize(cedar, demo, request({ requestedTtl: 900 }));
    expect([granted.ttl, granted.ttlCapped]).toEqual([600, true]);
  });

  it('grants a shorter TTL than asked when the request asks for less than the cap', () => {
    const granted = authorize(cedar, demo, request({ requestedTtl: 60 }));
    expect([granted.ttl, granted.ttlCapped]).toEqual([60, false]);
  });

  it('caps the TTL by the strictest action: a grant without @max_ttl falls back to settings.tokens.maxTtl', () => {
    const granted = authorize(cedar, demo, request({ actions: ['tickets:read', 'tickets:close'], requestedTtl: 600 }));
    expect(granted.ttl).toBe(maxTtl);
    expect(granted.ttlCapped).toBe(true);
    expect([...granted.grants].sort()).toEqual(['support-close-in-hours', 'support-tickets']);
  });

  it('refuses closing a ticket on a Saturday', () => {
    const error = refusalOf(() => authorize(cedar, demo, request({ actions: ['tickets:close'], now: SATURDAY_10H })));
    expect([error.code, error.reason]).toEqual(['invalid_scope', 'action_not_granted']);
    expect(error.detail.actions).toEqual(['tickets:close']);
  });

  it('refuses closing a ticket after business hours, even with a justification', () => {
    const error = refusalOf(() =>
      authorize(cedar, demo, request({ actions: ['tickets:close'], now: WEDNESDAY_19H, justification: true })),
    );
    expect([error.code, error.reason]).toEqual(['invalid_scope', 'action_not_granted']);
  });

  it('refuses the whole request when one action is not granted', () => {
    const error = refusalOf(() =>
      authorize(cedar, demo, request({ actions: ['tickets:read', 'tickets:close'], now: SATURDAY_10H })),
    );
    expect([error.code, error.reason]).toEqual(['invalid_scope', 'action_not_granted']);
    expect(error.detail.actions).toEqual(['tickets:close']);
  });

  it('asks for a justification for attack-path analysis', () => {
    const error = refusalOf(() => authorize(cedar, demo, request({ audience: GRAPH, actions: ['graph:attack-path'] })));
    expect([error.code, error.reason]).toEqual(['invalid_scope', 'justification_required']);
    expect(error.detail.actions).toEqual(['graph:attack-path']);
  });

  it('grants attack-path analysis with a justification, for at most 120 seconds', () => {
    const granted = authorize(
      cedar,
      demo,
      request({
        audience: GRAPH,
        actions: ['graph:read', 'graph:attack-path'],
        justification: true,
        requestedTtl: 300,
      }),
    );
    expect([granted.ttl, granted.ttlCapped]).toEqual([120, true]);
    expect([...granted.grants].sort()).toEqual(['attack-path-justified', 'graph-read']);
  });

  it('refuses an action that a forbid policy denies on an audience where other actions are granted', () => {
    const error = refusalOf(() => authorize(cedar, demo, request({ actions: ['tickets:read', 'iam:rotate-key'] })));
    expect([error.code, error.reason]).toEqual(['invalid_scope', 'action_not_granted']);
    expect(error.detail.actions).toEqual(['iam:rotate-key']);
  });

  it('refuses an audience on which nothing at all is granted to the agent', () => {
    const error = refusalOf(() => authorize(cedar, demo, request({ audience: PAYROLL, actions: ['tickets:read'] })));
    expect([error.code, error.reason]).toEqual(['invalid_target', 'audience_not_granted']);
  });

  it('refuses an action the schema does not declare', () => {
    const error = refusalOf(() => authorize(cedar, demo, request({ actions: ['tickets:read', 'tickets:delete'] })));
    expect([error.code, error.reason]).toEqual(['invalid_scope', 'action_not_granted']);
    expect(error.detail.unknown).toEqual(['tickets:delete']);
  });

  it('grants the release bot its comment only when GitHub Actions vouched for it', () => {
    const bot = agent('release-bot');
    const granted = authorize(
      cedar,
      demo,
      request({ agent: bot, actions: ['tickets:comment'], via: 'github-actions' }),
    );
    expect(granted.grants).toEqual(['release-notes']);
    const error = refusalOf(() => authorize(cedar, demo, request({ agent: bot, actions: ['tickets:comment'] })));
    expect([error.code, error.reason]).toEqual(['invalid_target', 'audience_not_granted']);
  });

  it('grants the graph indexer graph reads but not tickets', () => {
    const indexer = agent('graph-indexer');
    expect(
      authorize(cedar, demo, request({ agent: indexer, audience: GRAPH, actions: ['graph:read'], via: 'kubernetes' }))
        .grants,
    ).toEqual(['graph-read']);
    const error = refusalOf(() => authorize(cedar, demo, request({ agent: indexer, via: 'kubernetes' })));
    expect([error.code, error.reason]).toEqual(['invalid_target', 'audience_not_granted']);
  });
});

/** A policy engine that answers from a table and records every query it is asked. */
function fakeEngine(decide: (query: CedarQuery) => CedarAnswer): PolicyEngine & { queries: CedarQuery[] } {
  const queries: CedarQuery[] = [];
  return {
    queries,
    evaluate(query) {
      queries.push(structuredClone(query));
      return decide(query);
    },
  };
}

const allow = (...policies: string[]): CedarAnswer => ({ allow: true, policies });
const deny: CedarAnswer = { allow: false, policies: [] };

function bundleWithGrants(grants: Record<string, Partial<Grant>>): PolicyBundle {
  return {
    ...demo,
    cedar: {
      ...demo.cedar,
      grants: Object.fromEntries(
        Object.entries(grants).map(([id, grant]) => [id, { source: `test:${id}`, effect: 'permit', ...grant }]),
      ),
    },
  };
}

describe('authorize: probing the engine', () => {
  it('asks once per action, with the task context', () => {
    const engine = fakeEngine(() => allow('p'));
    authorize(
      engine,
      demo,
      request({ actions: ['tickets:read', 'tickets:comment'], via: 'github-actions', taskId: 'T-9', requestedTtl: 77 }),
    );
    expect(engine.queries.map((q) => q.action)).toEqual(['tickets:read', 'tickets:comment']);
    expect(engine.queries[0]).toEqual({
      agent: agent('demo-agent'),
      action: 'tickets:read',
      audience: TICKETS,
      context: {
        task_id: 'T-9',
        justification_present: false,
        approved: false,
        requested_ttl: 77,
        now: WEDNESDAY_10H.getTime() / 1000,
        hour_utc: 10,
        weekday_utc: 3,
        attestation: 'github-actions',
      },
    });
  });

  it('tells Cedar the default TTL when the request names none', () => {
    const engine = fakeEngine(() => allow('p'));
    authorize(engine, demo, request());
    expect(engine.queries[0]?.context.requested_ttl).toBe(defaultTtl);
  });

  it('refuses an unknown action without asking the engine about it', () => {
    const engine = fakeEngine(() => allow('p'));
    const error = refusalOf(() => authorize(engine, demo, request({ actions: ['tickets:read', 'tickets:shred'] })));
    expect([error.code, error.reason]).toEqual(['invalid_scope', 'action_not_granted']);
    expect(error.detail).toEqual({ actions: ['tickets:shred'], unknown: ['tickets:shred'] });
    expect(engine.queries.map((q) => q.action)).not.toContain('tickets:shred');
  });

  it('probes with a justification only when the request gave none', () => {
    const denyClose = (q: CedarQuery) => (q.action === 'tickets:close' ? deny : allow('p'));
    const without = fakeEngine(denyClose);
    refusalOf(() => authorize(without, demo, request({ actions: ['tickets:read', 'tickets:close'] })));
    const probes = (engine: ReturnType<typeof fakeEngine>) =>
      engine.queries
        .filter((q) => q.action === 'tickets:close')
        .map((q) => [q.context.justification_present, q.context.approved]);
    // As asked, with a justification, after approval, with both.
    expect(probes(without)).toEqual([
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ]);

    const withJustification = fakeEngine(denyClose);
    refusalOf(() =>
      authorize(withJustification, demo, request({ actions: ['tickets:read', 'tickets:close'], justification: true })),
    );
    expect(probes(withJustification)).toEqual([
      [true, false],
      [true, true],
    ]);
  });

  it('asks for a justification only when one would make the difference', () => {
    const engine = fakeEngine((q) => (q.context.justification_present ? allow('p') : deny));
    const error = refusalOf(() => authorize(engine, demo, request({ actions: ['tickets:read', 'tickets:comment'] })));
    expect([error.code, error.reason]).toEqual(['invalid_scope', 'justification_required']);
    expect(error.detail.actions).toEqual(['tickets:read', 'tickets:comment']);
  });

  it('reports a denied action before a missing justification', () => {
    const engine = fakeEngine((q) =>
      q.action === 'tickets:close' ? deny : q.context.justification_present ? allow('p') : deny,
    );
    const error = refusalOf(() => authorize(engine, demo, request({ actions: ['tickets:read', 'tickets:close'] })));
    expect([error.code, error.reason]).toEqual(['invalid_scope', 'action_not_granted']);
    expect(error.detail.actions).toEqual(['tickets:close']);
  });

  it('refuses the audience when no action at all is granted on it, even with a justification', () => {
    const engine = fakeEngine(() => deny);
    const error = refusalOf(() => authorize(engine, demo, request({ actions: ['tickets:read'] })));
    expect([error.code, error.status, error.reason]).toEqual(['invalid_target', 400, 'audience_not_granted']);
    const probed = new Set(engine.queries.filter((q) => q.context.justification_present).map((q) => q.action));
    expect([...probed].sort()).toEqual([...demo.cedar.actions].sort());
  });

  it('refuses the audience when only unknown actions are asked for and nothing is granted there', () => {
    const engine = fakeEngine(() => deny);
    const error = refusalOf(() => authorize(engine, demo, request({ actions: ['nothing:here'] })));
    expect(error.reason).toBe('audience_not_granted');
  });

  it('refuses the actions, not the audience, when another action is granted on it', () => {
    const engine = fakeEngine((q) => (q.action === 'tickets:comment' ? allow('p') : deny));
    const error = refusalOf(() => authorize(engine, demo, request({ actions: ['tickets:read'] })));
    expect([error.code, error.reason]).toEqual(['invalid_scope', 'action_not_granted']);
  });

  it('counts an action granted only with a justification as granted on the audience', () => {
    const engine = fakeEngine((q) =>
      q.action === 'graph:attack-path' && q.context.justification_present ? allow('p') : deny,
    );
    const error = refusalOf(() => authorize(engine, demo, request({ audience: GRAPH, actions: ['graph:read'] })));
    expect(error.reason).toBe('action_not_granted');
  });

  it('lists every permit policy that allowed the actions, once', () => {
    const engine = fakeEngine((q) => (q.action === 'tickets:read' ? allow('a', 'b') : allow('b', 'c')));
    const granted = authorize(engine, demo, request({ actions: ['tickets:read', 'tickets:comment'] }));
    expect([...granted.grants].sort()).toEqual(['a', 'b', 'c']);
  });
});

describe('authorize: token lifetime', () => {
  const bundle = bundleWithGrants({
    short: { maxTtl: 600 },
    long: { maxTtl: 1800 },
    uncapped: {},
    huge: { maxTtl: 7200 },
  });
  const policiesFor = (table: Record<string, string[]>) =>
    fakeEngine((q) => {
      const policies = table[q.action];
      return policies === undefined ? deny : allow(...policies);
    });

  it('lets the most generous grant decide the cap of one action', () => {
    const engine = policiesFor({ 'tickets:read': ['short', 'long'] });
    expect(authorize(engine, bundle, request({ requestedTtl: 3000 })).ttl).toBe(1800);
  });

  it('takes the smallest cap across the actions', () => {
    const engine = policiesFor({ 'tickets:read': ['short', 'long'], 'tickets:comment': ['short'] });
    const granted = authorize(
      engine,
      bundle,
      request({ actions: ['tickets:read', 'tickets:comment'], requestedTtl: 3000 }),
    );
    expect([granted.ttl, granted.ttlCapped]).toEqual([600, true]);
  });

  it('caps a grant without @max_ttl at settings.tokens.maxTtl', () => {
    const engine = policiesFor({ 'tickets:read': ['uncapped'] });
    expect(authorize(engine, bundle, request({ requestedTtl: 3000 })).ttl).toBe(maxTtl);
  });

  it('caps a policy the bundle has no grant entry for at settings.tokens.maxTtl', () => {
    const engine = policiesFor({ 'tickets:read': ['not-in-bundle'] });
    expect(authorize(engine, bundle, request({ requestedTtl: 3000 })).ttl).toBe(maxTtl);
  });

  it('never lets a token live longer than the 3600-second ceiling', () => {
    const engine = policiesFor({ 'tickets:read': ['huge'] });
    const granted = authorize(engine, bundle, request({ requestedTtl: 86_400 }));
    expect([granted.ttl, granted.ttlCapped]).toEqual([TTL_CEILING_SECONDS, true]);
  });

  it('does not report a TTL equal to the cap as capped', () => {
    const engine = policiesFor({ 'tickets:read': ['short'] });
    const granted = authorize(engine, bundle, request({ requestedTtl: 600 }));
    expect([granted.ttl, granted.ttlCapped]).toEqual([600, false]);
  });

  it('reports a TTL one second above the cap as capped', () => {
    const engine = policiesFor({ 'tickets:read': ['short'] });
    const granted = authorize(engine, bundle, request({ requestedTtl: 601 }));
    expect([granted.ttl, granted.ttlCapped]).toEqual([600, true]);
  });

  it('uses the default TTL when none is requested and the cap allows it', () => {
    const engine = policiesFor({ 'tickets:read': ['long'] });
    const granted = authorize(engine, bundle, request());
    expect([granted.ttl, granted.ttlCapped]).toEqual([defaultTtl, false]);
  });
});
