/**
 * Policy tests: `policies/tests/*.yaml`, each a list of requests and the decision they must get. They run
 * through the same `authorize` function and Cedar engine the worker uses.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { z } from 'zod';
import { BrokerError, type ErrorCode, type Reason } from '../../worker/core/errors';
import { type ApprovalRequirement, authorize } from '../../worker/core/policy';
import type { PolicyBundle } from '../../worker/policy/bundle';
import { createPolicyEngine } from '../../worker/policy/engine';
import { PolicyError, readYaml } from './source';

const TestsFile = z.strictObject({
  tests: z.array(
    z.strictObject({
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
    }),
  ),
});

export interface TestOutcome {
  file: string;
  line: number;
  name: string;
  failure?: string;
}

type Decision =
  | { expect: 'allow'; ttl: number }
  | { expect: 'approval'; ttl: number; requirement: ApprovalRequirement }
  | { expect: 'deny'; error: ErrorCode; reason: Reason };

/** Runs every policy test file in `dir` against `bundle`. */
export async function runPolicyTests(dir: string, bundle: PolicyBundle): Promise<TestOutcome[]> {
  const engine = createPolicyEngine(cedar, bundle);
  const files = (await readdir(dir)).filter((name) => name.endsWith('.yaml')).sort();
  const outcomes: TestOutcome[] = [];
  for (const name of files) {
    const file = await readYaml(join(dir, name), TestsFile);
    for (const [index, test] of file.data.tests.entries()) {
      const line = file.lineOf(['tests', index]);
      const agent = bundle.agents[test.agent];
      if (agent === undefined) throw new PolicyError(file.path, line, `unknown agent ${test.agent}`);
      const via = test.via ?? (agent.attestation.kind === 'self_signed' ? 'self' : agent.attestation.issuer);
      let actual: Decision;
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
        actual =
          result.approval === undefined
            ? { expect: 'allow', ttl: result.ttl }
            : { expect: 'approval', ttl: result.ttl, requirement: result.approval };
      } catch (error) {
        if (!(error instanceof BrokerError)) throw error;
        actual = { expect: 'deny', error: error.code, reason: error.reason };
      }
      const mismatches: string[] = [];
      if (actual.expect !== test.expect) mismatches.push(`expected ${test.expect}, got ${actual.expect}`);
      if (actual.expect === 'deny' && test.error !== undefined && actual.error !== test.error) {
        mismatches.push(`expected error ${test.error}, got ${actual.error}`);
      }
      if (actual.expect === 'deny' && test.reason !== undefined && actual.reason !== test.reason) {
        mismatches.push(`expected reason ${test.reason}, got ${actual.reason}`);
      }
      if (actual.expect !== 'deny' && test.ttl !== undefined && actual.ttl !== test.ttl) {
        mismatches.push(`expected ttl ${test.ttl}, got ${actual.ttl}`);
      }
      if (actual.expect === 'approval') {
        const { count, groups, fourEyes } = actual.requirement;
        if (test.approvers !== undefined && count !== test.approvers) {
          mismatches.push(`expected ${test.approvers} approvers, got ${count}`);
        }
        if (test.approver_groups !== undefined && groups.join(',') !== test.approver_groups.join(',')) {
          mismatches.push(`expected approver groups ${test.approver_groups.join(',')}, got ${groups.join(',')}`);
        }
        if (test.four_eyes !== undefined && fourEyes !== test.four_eyes) {
          mismatches.push(`expected four_eyes ${test.four_eyes}, got ${fourEyes}`);
        }
      }
      outcomes.push({
        file: file.path,
        line,
        name: test.name,
        ...(mismatches.length > 0 && { failure: mismatches.join('; ') }),
      });
    }
  }
  return outcomes;
}
