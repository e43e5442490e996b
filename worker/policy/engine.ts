/**
 * Pre-parses the bundle's Cedar schema and policy set once, and evaluates requests against them.
 *
 * Takes the Cedar module as an argument so the same code runs in the worker (the `web` build, initialised
 * from the bundled `.wasm`) and in `npm run policy:check` (the `nodejs` build).
 */
import type * as Cedar from '@cedar-policy/cedar-wasm/web';
import type { CedarAnswer, CedarQuery, PolicyEngine } from '../core/policy';
import type { Agent, PolicyBundle } from './bundle';

export type CedarModule = Pick<typeof Cedar, 'preparsePolicySet' | 'preparseSchema' | 'statefulIsAuthorized'>;

function messages(errors: readonly Cedar.DetailedError[]): string {
  return errors.map((error) => error.message).join('; ');
}

/**
 * What of `agent` a Cedar decision can depend on (`bundle.cedar.named`): its id only where a policy names
 * it, since Cedar reads an entity's id no other way; its owner and its labels (a set) only where a policy
 * reads them. Agents with one subject get one decision for one action, audience and context: a fleet of
 * agents alike costs one.
 */
export function decisionSubject(bundle: Pick<PolicyBundle, 'cedar'>, agent: Agent): string {
  const { ids, attributes } = bundle.cedar.named;
  return JSON.stringify([
    ids.includes(agent.id) ? agent.id : null,
    attributes.includes('owner') ? agent.owner : null,
    attributes.includes('labels') ? [...new Set(agent.labels)].sort() : null,
  ]);
}

/** Decisions remembered per isolate before the memory starts over. */
const MAX_REMEMBERED_DECISIONS = 10_000;

/**
 * Pre-parses the policies and returns an engine that remembers decisions. A Cedar decision is a pure
 * function of the policies, the entities (the agent, of which only its {@link decisionSubject} matters, and
 * the audience) and the context; when the bundle lists the context attributes policies read, two queries that
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
  // The bundle's agents are the same objects for the engine's life: each one's subject is worked out once.
  const subjects = new WeakMap<Agent, string>();
  const subjectOf = (agent: Agent): string => {
    let subject = subjects.get(agent);
    if (subject === undefined) {
      subject = decisionSubject(bundle, agent);
      subjects.set(agent, subject);
    }
    return subject;
  };
  return {
    evaluate(query: CedarQuery): CedarAnswer {
      const { agent, action, audience, context } = query;
      const read = contextKeys.map((key) => context[key as keyof typeof context]);
      const key = JSON.stringify([subjectOf(agent), action, audience, read]);
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
