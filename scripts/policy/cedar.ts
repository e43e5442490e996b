/**
 * Compiles the Cedar schema and policies of a policy folder: strict validation against the schema, the
 * grant annotations (`@id`, `@max_ttl`, `@approvals`, `@rollback`, ...), and the context attributes policies
 * read. Every grant that needs approval must say what undoes it, or why nothing does. Every problem of every
 * file is collected.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { type Grant, type PolicyBundle, Rollback, TTL_CEILING_SECONDS } from '../../worker/policy/bundle';
import { lineAt, type Problems } from './source';

interface CedarFile {
  path: string;
  text: string;
}

function addCedarErrors(problems: Problems, file: CedarFile, errors: readonly cedar.DetailedError[]): void {
  for (const error of errors) {
    const location = error.sourceLocations?.[0];
    const message = [error.message, location?.label, error.help].filter(Boolean).join(' — ');
    problems.add('cedar-invalid', file.path, lineAt(file.text, location?.start ?? 0), message);
  }
}

async function readCedarFiles(dir: string, problems: Problems): Promise<CedarFile[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.cedar')).sort();
  if (names.length === 0) {
    problems.add('no-cedar-files', relative(process.cwd(), dir), 1, 'no .cedar policy files', 'grants live in *.cedar');
  }
  return Promise.all(
    names.map(async (name) => ({
      path: relative(process.cwd(), join(dir, name)),
      text: await readFile(join(dir, name), 'utf8'),
    })),
  );
}

function isContextVar(node: unknown): boolean {
  return typeof node === 'object' && node !== null && (node as { Var?: unknown }).Var === 'context';
}

/**
 * Adds to `into` the context attributes a policy reads (`context.x`, `context has x`) in its JSON form.
 *
 * @returns false when the policy uses `context` some other way (as a whole), so no attribute list covers it.
 */
function collectContextKeys(node: unknown, into: Set<string>): boolean {
  if (Array.isArray(node)) return node.every((child) => collectContextKeys(child, into));
  if (typeof node !== 'object' || node === null) return true;
  if (isContextVar(node)) return false;
  let complete = true;
  for (const [key, value] of Object.entries(node)) {
    const access = value as { left?: unknown; attr?: unknown } | null;
    if ((key === '.' || key === 'has') && isContextVar(access?.left) && typeof access?.attr === 'string') {
      into.add(access.attr);
    } else if (!collectContextKeys(value, into)) {
      complete = false;
    }
  }
  return complete;
}

/** The context attributes that tell the time. */
const TIME_KEYS = ['now', 'hour_utc', 'weekday_utc'];

const entityId = (uid: cedar.EntityUidJson): string => ('__entity' in uid ? uid.__entity.id : uid.id);

/**
 * Adds to `into.ids` the id of every entity a policy names, in its scope (`principal == Agent::"x"`) or its
 * conditions (`principal in [Agent::"x", …]`), of any type (in the JSON form, an object with a string `type`
 * and `id`), and to `into.attributes` every attribute it reads of anything (`principal.owner`,
 * `principal has labels`, `context.approved`). Collecting more than the agents' costs only decisions shared
 * less (`decisionSubject` in worker/policy/engine.ts).
 */
function collectAgentReads(node: unknown, into: { ids: Set<string>; attributes: Set<string> }): void {
  if (Array.isArray(node)) {
    for (const child of node) collectAgentReads(child, into);
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  const { type, id } = node as { type?: unknown; id?: unknown };
  if (typeof type === 'string' && typeof id === 'string') into.ids.add(id);
  for (const [key, value] of Object.entries(node)) {
    const access = value as { attr?: unknown } | null;
    if ((key === '.' || key === 'has') && typeof access?.attr === 'string') into.attributes.add(access.attr);
    collectAgentReads(value, into);
  }
}

/** The actions and the API a policy's scope names, for {@link Grant.timed}: absent where it names any. */
function timedScope(policy: cedar.PolicyJson): NonNullable<Grant['timed']> {
  const { action, resource } = policy;
  let actions: string[] | undefined;
  if (action.op === '==' && 'entity' in action) actions = [entityId(action.entity)];
  else if (action.op === 'in' && 'entities' in action) actions = action.entities.map(entityId);
  const audience = resource.op === '==' && 'entity' in resource ? entityId(resource.entity) : undefined;
  return { ...(actions !== undefined && { actions }), ...(audience !== undefined && { audience }) };
}

interface Located {
  problems: Problems;
  file: string;
  line: number;
}

/** `@max_ttl("n")` of a permit, if any. */
function maxTtlOf(annotations: Record<string, string>, effect: 'permit' | 'forbid', at: Located): number | undefined {
  if (annotations.max_ttl === undefined) return undefined;
  const maxTtl = Number(annotations.max_ttl);
  if (!Number.isInteger(maxTtl) || maxTtl < 1 || maxTtl > TTL_CEILING_SECONDS) {
    at.problems.add(
      'cedar-annotation',
      at.file,
      at.line,
      `@max_ttl must be whole seconds from 1 to ${TTL_CEILING_SECONDS}`,
    );
    return undefined;
  }
  if (effect === 'forbid') {
    at.problems.add('cedar-annotation', at.file, at.line, '@max_ttl only applies to permit policies');
    return undefined;
  }
  return maxTtl;
}

/** `@approvals("n")`, `@approver_group("g")`, `@four_eyes("true"|"false")` of a permit, if any. */
function approvalRequirement(
  annotations: Record<string, string>,
  effect: 'permit' | 'forbid',
  at: Located,
): Grant['approval'] {
  const { approvals, approver_group: group, four_eyes: fourEyes } = annotations;
  const fail = (message: string) => {
    at.problems.add('cedar-annotation', at.file, at.line, message);
    return undefined;
  };
  if (approvals === undefined) {
    return group !== undefined || fourEyes !== undefined
      ? fail('@approver_group and @four_eyes need @approvals')
      : undefined;
  }
  if (effect === 'forbid') return fail('@approvals only applies to permit policies');
  const count = Number(approvals);
  if (!Number.isInteger(count) || count < 1 || count > 5) return fail('@approvals must be 1 to 5');
  if (fourEyes !== undefined && fourEyes !== 'true' && fourEyes !== 'false') {
    return fail('@four_eyes must be "true" or "false"');
  }
  return { count, ...(group !== undefined && { group }), fourEyes: fourEyes === 'true' };
}

const ROLLBACK_FIX =
  'say what undoes it: @rollback("<https runbook URL>") or @rollback_action("<action that reverses it>"), ' +
  'or @no_rollback("<why nothing can>")';

/**
 * `@rollback("<https URL>")`, `@rollback_action("<action>")` or `@no_rollback("<why>")` of a grant. A grant that
 * needs approval (`gated`) must have one; one that does not may not (it would never reach an approver).
 * `actions` are the schema's, which a rollback action must be one of (undefined: the schema did not compile).
 */
function rollbackOf(
  annotations: Record<string, string>,
  id: string,
  gated: boolean,
  actions: readonly string[] | undefined,
  at: Located,
): Rollback | undefined {
  const { rollback: runbook, rollback_action: action, no_rollback: none } = annotations;
  const fail = (message: string) => {
    at.problems.add('cedar-annotation', at.file, at.line, message);
    return undefined;
  };
  if (runbook === undefined && action === undefined && none === undefined) {
    if (gated) {
      at.problems.add(
        'rollback-missing',
        at.file,
        at.line,
        `grant ${id} needs approval but declares no rollback path`,
        ROLLBACK_FIX,
      );
    }
    return undefined;
  }
  if (!gated) return fail('@rollback, @rollback_action and @no_rollback only apply to grants that need approval');
  if (none !== undefined) {
    if (runbook !== undefined || action !== undefined)
      return fail('@no_rollback excludes @rollback and @rollback_action');
    if (none.trim() === '') return fail('@no_rollback must say why nothing undoes the action');
    return { none: none.trim() };
  }
  if (action !== undefined && actions !== undefined && !actions.includes(action))
    return fail(`@rollback_action ${action} is not an action the schema declares`);
  const parsed = Rollback.safeParse({
    ...(runbook !== undefined && { runbook }),
    ...(action !== undefined && { action }),
  });
  return parsed.success ? parsed.data : fail('@rollback must be an https:// URL (the runbook that undoes the action)');
}

/** Parses the schema; its problems go to `problems`. Returns the declared actions, or undefined. */
function compileSchema(schemaFile: CedarFile, problems: Problems): string[] | undefined {
  const parsed = cedar.checkParseSchema(schemaFile.text);
  if (parsed.type === 'failure') {
    addCedarErrors(problems, schemaFile, parsed.errors);
    return undefined;
  }
  const json = cedar.schemaToJson(schemaFile.text);
  if (json.type === 'failure') {
    addCedarErrors(problems, schemaFile, json.errors);
    return undefined;
  }
  return Object.values(json.json).flatMap((namespace) => Object.keys(namespace.actions));
}

/**
 * Validates and splits one Cedar file into its policies; adds each to `policies` and `grants` by `@id`.
 * A file with a parse or validation problem contributes nothing.
 */
function compileFile(
  file: CedarFile,
  schema: { text: string; actions: readonly string[] } | undefined,
  out: {
    policies: Record<string, string>;
    grants: Record<string, Grant>;
    contextKeys: Set<string>;
    named: { ids: Set<string>; attributes: Set<string> };
  },
  problems: Problems,
): { wholeContext: boolean } {
  const parsed = cedar.checkParsePolicySet({ staticPolicies: file.text });
  if (parsed.type === 'failure') {
    addCedarErrors(problems, file, parsed.errors);
    return { wholeContext: false };
  }
  if (schema !== undefined) {
    const validated = cedar.validate({
      schema: schema.text,
      policies: { staticPolicies: file.text },
      validationSettings: { mode: 'strict' },
    });
    if (validated.type === 'failure') addCedarErrors(problems, file, validated.errors);
    else
      addCedarErrors(
        problems,
        file,
        validated.validationErrors.map((invalid) => invalid.error),
      );
  }
  const parts = cedar.policySetTextToParts(file.text);
  if (parts.type === 'failure') {
    addCedarErrors(problems, file, parts.errors);
    return { wholeContext: false };
  }
  if (parts.policy_templates.length > 0) {
    problems.add('cedar-invalid', file.path, 1, 'policy templates are not supported');
  }

  let wholeContext = false;
  // Cedar numbers the policies of a text policy0, policy1, ... in order; locate each by its first line.
  let searchFrom = 0;
  for (const [index, text] of parts.policies.entries()) {
    const firstLine = text.split('\n')[0] ?? '';
    const offset = Math.max(file.text.indexOf(firstLine, searchFrom), 0);
    searchFrom = offset + firstLine.length;
    const line = lineAt(file.text, offset);
    const json = cedar.policyToJson(text);
    if (json.type === 'failure') {
      addCedarErrors(problems, file, json.errors);
      continue;
    }
    const at = { problems, file: file.path, line };
    const annotations = json.json.annotations ?? {};
    const id = annotations.id ?? `${file.path}#${index}`;
    if (out.policies[id] !== undefined) {
      problems.add('duplicate', file.path, line, `duplicate policy @id ${id}`, 'give each policy its own @id');
      continue;
    }
    const maxTtl = maxTtlOf(annotations, json.json.effect, at);
    const approval = approvalRequirement(annotations, json.json.effect, at);
    const reads = new Set<string>();
    const complete = collectContextKeys(json.json, reads);
    if (!complete) wholeContext = true;
    for (const key of reads) out.contextKeys.add(key);
    collectAgentReads(json.json, out.named);
    // Needs approval: says who approves, or is permitted only with `context.approved`.
    const gated = json.json.effect === 'permit' && (annotations.approvals !== undefined || reads.has('approved'));
    const rollback = rollbackOf(annotations, id, gated, schema?.actions, at);
    const timed = !complete || TIME_KEYS.some((key) => reads.has(key)) ? timedScope(json.json) : undefined;
    out.policies[id] = text;
    out.grants[id] = {
      source: `${file.path}:${line}`,
      effect: json.json.effect,
      ...(maxTtl !== undefined && { maxTtl }),
      ...(approval !== undefined && { approval }),
      ...(rollback !== undefined && { rollback }),
      ...(timed !== undefined && { timed }),
    };
  }
  return { wholeContext };
}

/** Compiles `schema.cedarschema` and every `*.cedar` file of `dir`; problems go to `problems`. */
export async function compileCedar(dir: string, problems: Problems): Promise<PolicyBundle['cedar'] | undefined> {
  const schemaPath = join(dir, 'schema.cedarschema');
  let schemaText: string;
  try {
    schemaText = await readFile(schemaPath, 'utf8');
  } catch (error) {
    problems.add('cedar-invalid', relative(process.cwd(), schemaPath), 1, `cannot read the schema: ${error}`);
    return undefined;
  }
  const schemaFile = { path: relative(process.cwd(), schemaPath), text: schemaText };
  const actions = compileSchema(schemaFile, problems);
  const named = { ids: new Set<string>(), attributes: new Set<string>() };
  const out = { policies: {}, grants: {}, contextKeys: new Set<string>(), named };
  let wholeContext = false;
  for (const file of await readCedarFiles(dir, problems)) {
    if (
      compileFile(file, actions === undefined ? undefined : { text: schemaText, actions }, out, problems).wholeContext
    )
      wholeContext = true;
  }
  if (actions === undefined) return undefined;
  return {
    schema: schemaText,
    actions,
    policies: out.policies,
    grants: out.grants,
    named: { ids: [...named.ids].sort(), attributes: [...named.attributes].sort() },
    ...(!wholeContext && { contextKeys: [...out.contextKeys].sort() }),
  };
}
