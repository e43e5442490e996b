/**
 * Policy tests: `policies/tests/*.yaml`, each a list of requests and the decision they must get. They run
 * through the same `authorize` function and Cedar engine the worker uses.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { z } from 'zod';
import { BrokerError, type ErrorCode, type Reason } from '../../worker/core/errors';
import { type ApprovalRequirement, authorize, type PolicyEngine } from '../../worker/core/policy';
import type { Agent, PolicyBundle } from '../../worker/policy/bundle';
import { createPolicyEngine } from '../../worker/policy/engine';
import { type PolicyProblem, Problems, readYaml, validEntries } from './source';

const TestsFile = z.strictObject({
  tests: z
    .array(z.unknown())
    .nullish()
    .transform((tests) => tests ?? []),
});

const PolicyTest = z.strictObject({
  name: z.string().min(1),
  agent: z.string(),
  audience: z.string(),
  actions: z.array(z.string()).min(1),
  justification: z.boolean().default(false),
  /** Humans approved this exact request (collecting a step-up approval). */
  approved: z.boolean().default(false),
  requested_ttl: z.number().int().positive().optional(),
  via: z.string().optional(),
  /** When the request is made; defaults to a Monday at 10:00 UTC. */
  at: z.iso.datetime().default('2026-11-23T10:00:00Z'),
  /** `approval`: allowed only after humans approve (the agent gets `authorization_pending`). */
  expect: z.enum(['allow', 'deny', 'approval']),
  error: z.string().optional(),
  reason: z.string().optional(),
  ttl: z.number().int().positive().optional(),
  /** With `approval`: how many approvers, from which groups, four-eyes or not. */
  approvers: z.number().int().positive().optional(),
  approver_groups: z.array(z.string()).optional(),
  four_eyes: z.boolean().optional(),
});

type PolicyTest = z.output<typeof PolicyTest>;

/** Why a policy test failed: it names an agent or an action the policy lacks, or got another decision. */
export type TestFailure = 'unknown-agent' | 'unknown-action' | 'mismatch';

export interface TestOutcome {
  file: string;
  line: number;
  name: string;
  /** The test's agent, for reports that group by it. */
  agent: string;
  failure?: { kind: TestFailure; message: string };
}

export interface PolicyTestRun {
  outcomes: TestOutcome[];
  /** Test files that could not be read or do not match the test schema. */
  problems: PolicyProblem[];
}

type Decision =
  | { expect: 'allow'; ttl: number }
  | { expect: 'approval'; ttl: number; requirement: ApprovalRequirement }
  | { expect: 'deny'; error: ErrorCode; reason: Reason };

function decide(engine: PolicyEngine, bundle: PolicyBundle, test: PolicyTest, agent: Agent): Decision {
  const via = test.via ?? (agent.attestation.kind === 'self_signed' ? 'self' : agent.attestation.issuer);
  try {
    const result = authorize(engine, bundle, {
      agent,
      audience: test.audience,
      actions: test.actions,
      requestedTtl: test.requested_ttl,
      justification: test.justification,
      approved: test.approved,
      taskId: 'policy-test',
      via,
      now: new Date(test.at),
    });
    return result.approval === undefined
      ? { expect: 'allow', ttl: result.ttl }
      : { expect: 'approval', ttl: result.ttl, requirement: result.approval };
  } catch (error) {
    if (!(error instanceof BrokerError)) throw error;
    return { expect: 'deny', error: error.code, reason: error.reason };
  }
}

/** How `actual` differs from what `test` expects; empty when it passes. */
function mismatches(test: PolicyTest, actual: Decision): string[] {
  const found: string[] = [];
  if (actual.expect !== test.expect) found.push(`expected ${test.expect}, got ${actual.expect}`);
  if (actual.expect === 'deny' && test.error !== undefined && actual.error !== test.error) {
    found.push(`expected error ${test.error}, got ${actual.error}`);
  }
  if (actual.expect === 'deny' && test.reason !== undefined && actual.reason !== test.reason) {
    found.push(`expected reason ${test.reason}, got ${actual.reason}`);
  }
  if (actual.expect !== 'deny' && test.ttl !== undefined && actual.ttl !== test.ttl) {
    found.push(`expected ttl ${test.ttl}, got ${actual.ttl}`);
  }
  if (actual.expect === 'approval') {
    const { count, groups, fourEyes } = actual.requirement;
    if (test.approvers !== undefined && count !== test.approvers) {
      found.push(`expected ${test.approvers} approvers, got ${count}`);
    }
    if (test.approver_groups !== undefined && groups.join(',') !== test.approver_groups.join(',')) {
      found.push(`expected approver groups ${test.approver_groups.join(',')}, got ${groups.join(',')}`);
    }
    if (test.four_eyes !== undefined && fourEyes !== test.four_eyes) {
      found.push(`expected four_eyes ${test.four_eyes}, got ${fourEyes}`);
    }
  }
  return found;
}

/** What is wrong with a test before it runs: an agent the policy lacks, or an action no schema declares. */
function unknownNames(test: PolicyTest, bundle: PolicyBundle, agent: Agent | undefined): TestOutcome['failure'] {
  if (agent === undefined) return { kind: 'unknown-agent', message: `unknown agent ${test.agent}` };
  // Asking for an undeclared action is a fair thing to test a refusal of; expecting it granted is not.
  const unknown = test.actions.filter((action) => !bundle.cedar.actions.includes(action));
  if (unknown.length > 0 && test.expect !== 'deny') {
    return { kind: 'unknown-action', message: `action ${unknown.join(', ')} is not in the Cedar schema` };
  }
  return undefined;
}

/** Runs every policy test file in `dir` against `bundle`, collecting every failure and file problem. */
export async function runPolicyTests(dir: string, bundle: PolicyBundle): Promise<PolicyTestRun> {
  const engine = createPolicyEngine(cedar, bundle);
  const problems = new Problems();
  let names: string[];
  try {
    names = (await readdir(dir)).filter((name) => name.endsWith('.yaml')).sort();
  } catch {
    names = [];
  }
  const outcomes: TestOutcome[] = [];
  for (const name of names) {
    const file = await readYaml(join(dir, name), TestsFile, problems);
    if (file === undefined) continue;
    for (const { index, value: test } of validEntries(file, 'tests', file.data.tests, PolicyTest, problems)) {
      const where = { file: file.path, line: file.lineOf(['tests', index]), name: test.name, agent: test.agent };
      const agent = bundle.agents[test.agent];
      const unknown = unknownNames(test, bundle, agent);
      if (unknown !== undefined || agent === undefined) {
        outcomes.push({ ...where, ...(unknown !== undefined && { failure: unknown }) });
        continue;
      }
      const found = mismatches(test, decide(engine, bundle, test, agent));
      outcomes.push({
        ...where,
        ...(found.length > 0 && { failure: { kind: 'mismatch', message: found.join('; ') } }),
      });
    }
  }
  return { outcomes, problems: problems.list };
}
