/**
 * Step-up approval, the pure part (worker/core/approval.ts): approval ids, the terms an approval holds, the
 * poll state machine an agent drives (OpenID CIBA poll mode) and the decisions approvers take. Every call
 * gets a frozen `now`.
 */
import { describe, expect, it } from 'vitest';
import {
  type ApprovalRecord,
  type ApprovalTerm,
  type ApprovalTerms,
  type Approver,
  agentOfApproval,
  approvalStatus,
  approvalTerms,
  approverRefusal,
  decideApproval,
  differingTerms,
  newApprovalId,
  pollApproval,
} from '../../worker/core/approval';
import type { ApprovalRequirement } from '../../worker/core/policy';

/** The time every call is given, in epoch seconds. */
const NOW = Math.floor(Date.now() / 1000);
const INTERVAL = 5;
const EXPIRES_IN = 900;
const OWNER = 'alice@example.com';
const UUID = '0b5c2a4e-7d1f-4c3a-9e8b-2f6d1a3c5e7f';

const TERMS: ApprovalTerms = approvalTerms({
  audience: 'https://iam.example.com',
  actions: ['iam:disable-user'],
  requestedTtl: undefined,
  taskId: 'inc-77',
  taskHash: 'q0Xk7vQzYbqJ8f3cW1mN5aP2rT6uV9xZ0bC4dE8gH1I',
  justification: 'Account j.doe is compromised (INC-77)',
});

const SECURITY: ApprovalRequirement = {
  count: 1,
  groups: ['security'],
  fourEyes: true,
  actions: ['iam:disable-user'],
  rollback: [],
};

const erin: Approver = { id: 'erin@example.com', groups: ['security'] };
const frank: Approver = { id: 'frank@example.com', groups: ['security', 'platform'] };
const mallory: Approver = { id: 'mallory@example.com', groups: ['support'] };

/** A pending approval opened at NOW: 900 s to live, polled (opened) at NOW, nobody has decided. */
function pending(overrides: Partial<ApprovalRecord> = {}): ApprovalRecord {
  return {
    id: `${UUID}.demo-agent`,
    agent: 'demo-agent',
    owner: OWNER,
    terms: TERMS,
    taskDescription: 'Disable the account of j.doe',
    requirement: SECURITY,
    ttl: 120,
    createdAt: NOW,
    expiresAt: NOW + EXPIRES_IN,
    interval: INTERVAL,
    lastPolledAt: NOW,
    decisions: [],
    status: 'pending',
    ...overrides,
  };
}

/** The same approval once `by` approved it at NOW. */
function approved(by: readonly string[] = [erin.id], overrides: Partial<ApprovalRecord> = {}): ApprovalRecord {
  return pending({
    status: 'approved',
    decisions: by.map((id) => ({ by: id, decision: 'approve' as const, reason: 'looked at INC-77', at: NOW })),
    ...overrides,
  });
}

const decide = (approver: Approver, decision: 'approve' | 'deny' = 'approve') => ({
  approver,
  decision,
  reason: 'looked at INC-77',
});

describe('approval ids', () => {
  it('names the agent after a UUID, and agentOfApproval reads it back', () => {
    const id = newApprovalId('demo-agent');
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.demo-agent$/);
    expect(agentOfApproval(id)).toBe('demo-agent');
  });

  it('gives every approval a new id', () => {
    expect(newApprovalId('demo-agent')).not.toBe(newApprovalId('demo-agent'));
  });

  it.each(['release-bot', 'a', 'agent.with.dots', 'under_score', 'x'.repeat(64)])(
    'round-trips the agent id %s',
    (agent) => {
      expect(agentOfApproval(newApprovalId(agent))).toBe(agent);
    },
  );

  it.each<[string, string]>([
    ['an empty string', ''],
    ['a bare UUID', UUID],
    ['a UUID and a dot without an agent', `${UUID}.`],
    ['an agent without a UUID', 'demo-agent'],
    ['something that is not a UUID', 'not-an-approval.demo-agent'],
    ['an upper-case UUID', `${UUID.toUpperCase()}.demo-agent`],
    ['a UUID without its dashes', `${UUID.replaceAll('-', '')}.demo-agent`],
    ['an upper-case agent id', `${UUID}.Demo-Agent`],
    ['an agent id starting with a dash', `${UUID}.-agent`],
    ['an agent id of 65 characters', `${UUID}.${'x'.repeat(65)}`],
    ['an agent id with a slash', `${UUID}.demo/agent`],
    ['a prefix before the UUID', `x${UUID}.demo-agent`],
    ['a trailing newline', `${UUID}.demo-agent\n`],
    ['a trailing space', `${UUID}.demo-agent `],
  ])('rejects %s', (_name, id) => {
    expect(agentOfApproval(id)).toBeUndefined();
  });
});

describe('approvalTerms and differingTerms', () => {
  it('holds the actions sorted, and absent values as null', () => {
    expect(
      approvalTerms({
        audience: 'https://iam.example.com',
        actions: ['iam:read-user', 'iam:disable-user'],
        requestedTtl: undefined,
        taskId: 't',
        taskHash: 'h',
        justification: undefined,
      }),
    ).toEqual({
      audience: 'https://iam.example.com',
      actions: ['iam:disable-user', 'iam:read-user'],
      requestedTtl: null,
      taskId: 't',
      taskHash: 'h',
      justification: null,
    });
  });

  it('finds no difference between terms and themselves or a copy', () => {
    expect(differingTerms(TERMS, TERMS)).toEqual([]);
    expect(differingTerms(TERMS, structuredClone(TERMS))).toEqual([]);
  });

  it('does not care in which order the actions were asked for', () => {
    const base = { audience: 'a', requestedTtl: 60, taskId: 't', taskHash: 'h', justification: 'j' };
    expect(
      differingTerms(
        approvalTerms({ ...base, actions: ['b:x', 'a:y'] }),
        approvalTerms({ ...base, actions: ['a:y', 'b:x'] }),
      ),
    ).toEqual([]);
  });

  it.each<[string, Partial<ApprovalTerms>, ApprovalTerm]>([
    ['another audience', { audience: 'https://tickets.example.com' }, 'audience'],
    ['an extra action', { actions: ['iam:disable-user', 'iam:read-user'] }, 'scope'],
    ['another action', { actions: ['iam:read-user'] }, 'scope'],
    ['no action', { actions: [] }, 'scope'],
    ['a requested TTL where there was none', { requestedTtl: 120 }, 'requested_ttl'],
    ['another task id', { taskId: 'inc-78' }, 'task.id'],
    ['another task description (hash)', { taskHash: 'another-hash' }, 'task.description'],
    ['another justification', { justification: 'Because I said so' }, 'task.justification'],
    ['no justification', { justification: null }, 'task.justification'],
  ])('tells apart terms with %s, and names the term', (_name, change, term) => {
    const other = { ...TERMS, ...change };
    expect(differingTerms(TERMS, other)).toEqual([term]);
    expect(differingTerms(other, TERMS)).toEqual([term]);
  });

  it('names every term that differs, in a fixed order', () => {
    expect(differingTerms(TERMS, { ...TERMS, taskId: 'other', audience: 'x', requestedTtl: 60 })).toEqual([
      'task.id',
      'audience',
      'requested_ttl',
    ]);
  });
});

describe('approvalStatus', () => {
  it('is pending until the expiry, and expired from the expiry on', () => {
    expect(approvalStatus(pending(), NOW + EXPIRES_IN - 1)).toBe('pending');
    expect(approvalStatus(pending(), NOW + EXPIRES_IN)).toBe('expired');
  });

  it('lets an approval that was approved but not collected expire', () => {
    expect(approvalStatus(approved(), NOW + EXPIRES_IN - 1)).toBe('approved');
    expect(approvalStatus(approved(), NOW + EXPIRES_IN)).toBe('expired');
  });

  it('keeps denied and collected as they are, past the expiry too', () => {
    expect(approvalStatus(pending({ status: 'denied' }), NOW + EXPIRES_IN + 3600)).toBe('denied');
    expect(approvalStatus(pending({ status: 'collected' }), NOW + EXPIRES_IN + 3600)).toBe('collected');
  });
});

describe('pollApproval', () => {
  it('refuses other terms as a mismatch, and leaves the record as it was', () => {
    const record = approved();
    const { outcome, record: after } = pollApproval(record, { ...TERMS, taskId: 'inc-78' }, NOW + INTERVAL);
    expect(outcome).toMatchObject({ status: 'mismatch' });
    expect(after).toEqual(record);
  });

  it('checks the terms before anything else: a used approval with other terms is a mismatch', () => {
    const used = pending({ status: 'collected' });
    expect(pollApproval(used, { ...TERMS, audience: 'x' }, NOW + INTERVAL).outcome).toEqual({
      status: 'mismatch',
      terms: ['audience'],
    });
  });

  it('tells a poll sooner than the interval since the opening to slow down, without counting it as a poll', () => {
    const record = pending();
    const early = pollApproval(record, TERMS, NOW + INTERVAL - 1);
    expect(early.outcome).toEqual({ status: 'slow_down', interval: INTERVAL });
    expect(early.record).toEqual(record);
  });

  it('answers pending with the interval and the seconds left, and remembers when it was polled', () => {
    const { outcome, record } = pollApproval(pending(), TERMS, NOW + INTERVAL);
    expect(outcome).toEqual({ status: 'pending', interval: INTERVAL, expiresIn: EXPIRES_IN - INTERVAL });
    expect(record).toEqual(pending({ lastPolledAt: NOW + INTERVAL }));
  });

  it('measures the interval from the last poll, not from the opening', () => {
    const { record } = pollApproval(pending(), TERMS, NOW + 100);
    expect(pollApproval(record, TERMS, NOW + 104).outcome).toEqual({ status: 'slow_down', interval: INTERVAL });
    expect(pollApproval(record, TERMS, NOW + 105).outcome).toMatchObject({ status: 'pending', expiresIn: 795 });
  });

  it('hands an approved approval to the first poll, with who approved, and marks it collected', () => {
    const { outcome, record } = pollApproval(approved(), TERMS, NOW + INTERVAL);
    expect(outcome).toEqual({ status: 'approved', by: [erin.id] });
    expect(record).toEqual(approved([erin.id], { status: 'collected', lastPolledAt: NOW + INTERVAL }));
  });

  it('names every approver of a multi-approval, and no one who only commented', () => {
    const record = pending({
      status: 'approved',
      requirement: { ...SECURITY, count: 2 },
      decisions: [
        { by: erin.id, decision: 'approve', reason: 'r', at: NOW },
        { by: frank.id, decision: 'approve', reason: 'r', at: NOW + 1 },
      ],
    });
    expect(pollApproval(record, TERMS, NOW + INTERVAL).outcome).toEqual({
      status: 'approved',
      by: [erin.id, frank.id],
    });
  });

  it('refuses a second collection as used, however long after', () => {
    const { record: collected } = pollApproval(approved(), TERMS, NOW + INTERVAL);
    expect(pollApproval(collected, TERMS, NOW + INTERVAL + 1).outcome).toEqual({ status: 'used' });
    expect(pollApproval(collected, TERMS, NOW + 2 * INTERVAL).outcome).toEqual({ status: 'used' });
    expect(pollApproval(collected, TERMS, NOW + EXPIRES_IN + 60).outcome).toEqual({ status: 'used' });
  });

  it('does not collect an approved approval on a poll that came too soon', () => {
    const record = approved();
    const early = pollApproval(record, TERMS, NOW + 1);
    expect(early.outcome).toEqual({ status: 'slow_down', interval: INTERVAL });
    expect(early.record.status).toBe('approved');
  });

  it('answers denied, on every poll, even one that came too soon', () => {
    const denied = pending({
      status: 'denied',
      decisions: [{ by: erin.id, decision: 'deny', reason: 'r', at: NOW }],
    });
    expect(pollApproval(denied, TERMS, NOW + 1).outcome).toEqual({ status: 'denied' });
    const { outcome, record } = pollApproval(denied, TERMS, NOW + INTERVAL);
    expect(outcome).toEqual({ status: 'denied' });
    expect(record).toEqual(denied);
  });

  it('answers expired once the expiry is reached, decided or not', () => {
    expect(pollApproval(pending(), TERMS, NOW + EXPIRES_IN).outcome).toEqual({ status: 'expired' });
    expect(pollApproval(approved(), TERMS, NOW + EXPIRES_IN).outcome).toEqual({ status: 'expired' });
    expect(pollApproval(approved(), TERMS, NOW + EXPIRES_IN - 1).outcome.status).toBe('approved');
  });
});

describe('approverRefusal', () => {
  it('lets an approver in the group who is not the owner approve', () => {
    expect(approverRefusal(SECURITY, erin, OWNER, [])).toBeUndefined();
  });

  it('refuses the owner under four-eyes, whatever the case of either email', () => {
    expect(approverRefusal(SECURITY, { id: OWNER, groups: ['security'] }, OWNER, [])).toBe('four_eyes');
    expect(approverRefusal(SECURITY, { id: 'Alice@Example.COM', groups: ['security'] }, OWNER, [])).toBe('four_eyes');
    expect(approverRefusal(SECURITY, { id: OWNER, groups: ['security'] }, 'ALICE@example.com', [])).toBe('four_eyes');
  });

  it('lets the owner approve when four-eyes is off', () => {
    expect(approverRefusal({ ...SECURITY, fourEyes: false }, { id: OWNER, groups: ['security'] }, OWNER, [])).toBe(
      undefined,
    );
  });

  it('refuses an approver outside the group, and one with no groups', () => {
    expect(approverRefusal(SECURITY, mallory, OWNER, [])).toBe('not_in_group');
    expect(approverRefusal(SECURITY, { id: 'x', groups: [] }, OWNER, [])).toBe('not_in_group');
  });

  it('needs every group the requirement names', () => {
    const both: ApprovalRequirement = { ...SECURITY, groups: ['security', 'platform'] };
    expect(approverRefusal(both, erin, OWNER, [])).toBe('not_in_group');
    expect(approverRefusal(both, frank, OWNER, [])).toBeUndefined();
  });

  it('lets anyone approve when no group is required', () => {
    expect(approverRefusal({ ...SECURITY, groups: [] }, { id: 'x', groups: [] }, OWNER, [])).toBeUndefined();
  });

  it('refuses an approver who already approved', () => {
    expect(approverRefusal({ ...SECURITY, count: 2 }, erin, OWNER, [erin.id])).toBe('already_approved');
    expect(approverRefusal({ ...SECURITY, count: 2 }, frank, OWNER, [erin.id])).toBeUndefined();
  });
});

describe('decideApproval', () => {
  it('approves with one approval when one is required, recording who, why and when', () => {
    const { outcome, record } = decideApproval(pending(), decide(erin), NOW + 30);
    expect(outcome).toEqual({ decided: true });
    expect(record.status).toBe('approved');
    expect(record.decisions).toEqual([{ by: erin.id, decision: 'approve', reason: 'looked at INC-77', at: NOW + 30 }]);
  });

  it('ends the approval with a denial', () => {
    const { outcome, record } = decideApproval(pending(), decide(erin, 'deny'), NOW + 30);
    expect(outcome).toEqual({ decided: true });
    expect(record.status).toBe('denied');
    expect(record.decisions).toEqual([{ by: erin.id, decision: 'deny', reason: 'looked at INC-77', at: NOW + 30 }]);
  });

  it('counts distinct approvers until the required count is reached', () => {
    const twoNeeded = pending({ requirement: { ...SECURITY, count: 2 } });
    const first = decideApproval(twoNeeded, decide(erin), NOW + 10);
    expect(first.outcome).toEqual({ decided: true });
    expect(first.record.status).toBe('pending');
    const second = decideApproval(first.record, decide(frank), NOW + 20);
    expect(second.outcome).toEqual({ decided: true });
    expect(second.record.status).toBe('approved');
    expect(second.record.decisions.map((d) => d.by)).toEqual([erin.id, frank.id]);
  });

  it('never lets the agent itself approve, even without four-eyes', () => {
    const noFourEyes = pending({ requirement: { ...SECURITY, groups: [], fourEyes: false } });
    const self = decideApproval(noFourEyes, decide({ id: noFourEyes.agent.toUpperCase(), groups: [] }), NOW + 10);
    expect(self.outcome).toEqual({ decided: false, reason: 'self_approval' });
    expect(self.record).toEqual(noFourEyes);
  });

  it('counts one approver once whatever the case of their identity', () => {
    const first = decideApproval(pending({ requirement: { ...SECURITY, count: 2 } }), decide(erin), NOW + 10);
    const shouted = decideApproval(first.record, decide({ ...erin, id: erin.id.toUpperCase() }), NOW + 20);
    expect(shouted.outcome).toEqual({ decided: false, reason: 'already_approved' });
  });

  it('does not let one approver approve twice to reach the count', () => {
    const first = decideApproval(pending({ requirement: { ...SECURITY, count: 2 } }), decide(erin), NOW + 10);
    const again = decideApproval(first.record, decide(erin), NOW + 20);
    expect(again.outcome).toEqual({ decided: false, reason: 'already_approved' });
    expect(again.record).toEqual(first.record);
  });

  it('lets a second approver deny what a first approved, when two are required', () => {
    const first = decideApproval(pending({ requirement: { ...SECURITY, count: 2 } }), decide(erin), NOW + 10);
    const denied = decideApproval(first.record, decide(frank, 'deny'), NOW + 20);
    expect(denied.outcome).toEqual({ decided: true });
    expect(denied.record.status).toBe('denied');
  });

  it('refuses an approver outside the required group, and records nothing', () => {
    const record = pending();
    const refused = decideApproval(record, decide(mallory), NOW + 10);
    expect(refused.outcome).toEqual({ decided: false, reason: 'not_in_group' });
    expect(refused.record).toEqual(record);
  });

  it('refuses the owner under four-eyes, compared without regard to case', () => {
    const owner: Approver = { id: 'ALICE@example.com', groups: ['security'] };
    expect(decideApproval(pending(), decide(owner), NOW + 10).outcome).toEqual({
      decided: false,
      reason: 'four_eyes',
    });
    const noFourEyes = pending({ requirement: { ...SECURITY, fourEyes: false } });
    expect(decideApproval(noFourEyes, decide(owner), NOW + 10).record.status).toBe('approved');
  });

  it('refuses to decide once the approval expired', () => {
    const record = pending();
    const late = decideApproval(record, decide(erin), NOW + EXPIRES_IN);
    expect(late.outcome).toEqual({ decided: false, reason: 'not_pending' });
    expect(late.record).toEqual(record);
    expect(decideApproval(record, decide(erin), NOW + EXPIRES_IN - 1).outcome).toEqual({ decided: true });
  });

  it.each<[string, ApprovalRecord]>([
    ['approved', approved()],
    ['denied', pending({ status: 'denied' })],
    ['collected', pending({ status: 'collected' })],
  ])('refuses to decide an approval that is already %s', (_name, record) => {
    expect(decideApproval(record, decide(frank), NOW + 10)).toEqual({
      outcome: { decided: false, reason: 'not_pending' },
      record,
    });
    expect(decideApproval(record, decide(frank, 'deny'), NOW + 10).outcome).toEqual({
      decided: false,
      reason: 'not_pending',
    });
  });
});
