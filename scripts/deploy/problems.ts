/**
 * What `npm run deploy:check` reports: a stable code per problem (tests and scripts key on it, never on
 * the message), whether it stops the deploy, where it is, and how to fix it.
 */
import type { PolicyProblemCode } from '../policy/source';

/** Problems that stop `npm run deploy`: a deployment with them is unsafe, or broken from its first request. */
export type DeployErrorCode =
  /** Everything `npm run policy:build -- --deploy` refuses, under its own code. */
  | PolicyProblemCode
  | 'wrangler-config-invalid'
  | 'issuer-missing'
  | 'issuer-invalid'
  | 'issuer-not-https'
  | 'issuer-not-public'
  | 'issuer-example'
  | 'd1-placeholder-id'
  | 'do-class-without-migration'
  | 'migration-duplicate-tag'
  | 'secret-in-vars'
  | 'billing-meter-on'
  | 'demo-agent-key'
  | 'demo-admin-secret'
  | 'demo-api-secret'
  | 'demo-access'
  | 'example-owner'
  | 'example-issuer'
  | 'issuer-jwks-private'
  | 'example-access-role'
  | 'example-webhook'
  | 'webhook-not-https'
  | 'webhook-not-public'
  | 'no-admin'
  | 'approval-unreachable'
  | 'missing-secret'
  | 'policy-test-unknown-agent'
  | 'policy-test-unknown-action'
  | 'policy-test-demo-agent'
  | 'policy-test-failed';

/** Problems a deploy survives, but that someone should look at before it. */
export type DeployWarningCode =
  | 'issuer-not-routed'
  | 'workers-dev-exposed'
  | 'no-observability'
  | 'wrangler-env-unchecked'
  | 'secrets-unchecked'
  | 'example-audience'
  | 'grant-unknown-agent'
  | 'approvals-without-webhook'
  | 'unused-issuer'
  | 'agent-past-review'
  | 'agent-no-review-date'
  | 'agent-expired'
  | 'no-agents'
  | 'policy-tests-missing'
  | 'checks-skipped'
  | 'bundle-stale';

export type DeployProblemCode = DeployErrorCode | DeployWarningCode;

export interface DeployProblem {
  code: DeployProblemCode;
  severity: 'error' | 'warning';
  file: string;
  line: number;
  message: string;
  fix: string;
}

type Where = { file: string; line: number };

/** A problem that stops the deploy. */
export function error(code: DeployErrorCode, at: Where, message: string, fix: string): DeployProblem {
  return { code, severity: 'error', file: at.file, line: at.line, message, fix };
}

/** A problem the deploy survives. */
export function warning(code: DeployWarningCode, at: Where, message: string, fix: string): DeployProblem {
  return { code, severity: 'warning', file: at.file, line: at.line, message, fix };
}
