/**
 * Policy tests: `policies/tests/*.yaml`, each a list of requests and the decision they must get. They run
 * through the same `authorize` function and Cedar engine the worker uses.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { z } from 'zod';
import { BrokerError, type ErrorCode, type Reason } from '../../worker/core/errors';
import { authorize } from '../../worker/core/policy';
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
      requested_ttl: z.number().int().positive().optional(),
      via: z.string().optional(),
      /** When the request is made; defaults to a Monday at 10:00 UTC. */
      at: z.iso.datetime().default('2026-11-23T10:00:00Z'),
      expect: z.enum(['allow', 'deny']),
      error: z.string().optional(),
      reason: z.string().optional(),
      ttl: z.number().int().positive().optional(),
    }),
  ),
});

export interface TestOutcome {
  file: string;
  line: number;
  name: string;
  failure?: string;
}

type Decision = { expect: 'allow'; ttl: number } | { expect: 'deny'; error: ErrorCode; reason: Reason };

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
          taskId: 'policy-test',
          via,
          now: new Date(test.at),
        });
        actual = { expect: 'allow', ttl: result.ttl };
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
      if (actual.expect === 'allow' && test.ttl !== undefined && actual.ttl !== test.ttl) {
        mismatches.push(`expected ttl ${test.ttl}, got ${actual.ttl}`);
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
