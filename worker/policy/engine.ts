/**
 * Pre-parses the bundle's Cedar schema and policy set once, and evaluates requests against them.
 *
 * Takes the Cedar module as an argument so the same code runs in the worker (the `web` build, initialised
 * from the bundled `.wasm`) and in `npm run policy:check` (the `nodejs` build).
 */
import type * as Cedar from '@cedar-policy/cedar-wasm/web';
import type { CedarAnswer, CedarQuery, PolicyEngine } from '../core/policy';
import type { PolicyBundle } from './bundle';

export type CedarModule = Pick<typeof Cedar, 'preparsePolicySet' | 'preparseSchema' | 'statefulIsAuthorized'>;

function messages(errors: readonly Cedar.DetailedError[]): string {
  return errors.map((error) => error.message).join('; ');
}

/** Decisions remembered per isolate before the memory starts over. */
const MAX_REMEMBERED_DECISIONS = 10_000;

/**
 * Pre-parses the policies and returns an engine that remembers decisions. A Cedar decision is a pure
 * function of the policies, the entities (built here from the agent, which the bundle fixes, and the
 * audience) and the context; when the bundle lists the context attributes policies read, two queries that
 * agree on those get the same answer, so the answer is reused instead of evaluated again.
 *
 * @throws {Error} when the schema or policies do not parse: the worker must not start with such a bundle.
 */
export function createPolicyEngine(cedar: CedarModule, bundle: PolicyBundle): PolicyEngine {
  const id = bundle.version;
  const schema = cedar.preparseSchema(id, bundle.cedar.schema);
  if (schema.type === 'failure') throw new Error(`Cedar schema does not parse: ${messages(schema.errors)}`);
  const policies = cedar.preparsePolicySet(id, { staticPolicies: bundle.cedar.policies });
  if (policies.type === 'failure') throw new Error(`Cedar policies do not parse: ${messages(policies.errors)}`);

  function evaluate({ agent, action, audience, context }: CedarQuery): CedarAnswer {
    const principal = { type: 'Agent', id: agent.id };
    const resource = { type: 'Api', id: audience };
    const answer = cedar.statefulIsAuthorized({
      principal,
      action: { type: 'Action', id: action },
      resource,
      context: { ...context },
      entities: [
        { uid: principal, attrs: { owner: agent.owner, labels: agent.labels }, parents: [] },
        { uid: resource, attrs: {}, parents: [] },
      ],
      preparsedPolicySetId: id,
      preparsedSchemaName: id,
      validateRequest: true,
    });
    if (answer.type === 'failure') throw new Error(`Cedar evaluation failed: ${messages(answer.errors)}`);
    const { decision, diagnostics } = answer.response;
    return { allow: decision === 'allow', policies: diagnostics.reason };
  }

  const { contextKeys } = bundle.cedar;
  if (contextKeys === undefined) return { evaluate };
  const remembered = new Map<string, CedarAnswer>();
  return {
    evaluate(query: CedarQuery): CedarAnswer {
      const { agent, action, audience, context } = query;
      const read = contextKeys.map((key) => context[key as keyof typeof context]);
      const key = JSON.stringify([agent.id, agent.owner, agent.labels, action, audience, read]);
      let answer = remembered.get(key);
      if (answer === undefined) {
        answer = evaluate(query);
        if (remembered.size >= MAX_REMEMBERED_DECISIONS) remembered.clear();
        remembered.set(key, answer);
      }
      return answer;
    },
  };
}
