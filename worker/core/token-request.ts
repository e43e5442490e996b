/**
 * The `POST /token` request (RFC 8693 §2.1), from either encoding to one validated shape.
 */
import { z } from 'zod';
import { publicEcho, refuse } from './errors';
import { isWellFormedDeep } from './well-formed';

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** The subject token type of an attestation that is a JWT. */
export const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const SUBJECT_TOKEN_TYPES = [JWT_TOKEN_TYPE, 'urn:ietf:params:oauth:token-type:id_token'] as const;

/** Request bodies larger than this are refused with 413 before they are parsed. */
export const MAX_BODY_BYTES = 16 * 1024;
export const MAX_DESCRIPTION_CHARS = 4096;
const MAX_ACTIONS = 32;

const Action = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/, 'an action is 1-128 of A-Z a-z 0-9 . _ : / -');

export const Task = z.strictObject({
  description: z.string().min(1).max(MAX_DESCRIPTION_CHARS),
  id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/, 'a task id is 1-128 of A-Z a-z 0-9 . _ : -')
    .optional(),
  justification: z.string().trim().min(1).max(MAX_DESCRIPTION_CHARS).optional(),
});
export type Task = z.infer<typeof Task>;

const Fields = z.object({
  grant_type: z.literal(TOKEN_EXCHANGE_GRANT),
  subject_token: z.string().min(1).max(MAX_BODY_BYTES),
  subject_token_type: z.enum(SUBJECT_TOKEN_TYPES),
  requested_token_type: z.literal(ACCESS_TOKEN_TYPE).optional(),
  audience: z.string().min(1).max(512).optional(),
  resource: z.string().min(1).max(512).optional(),
  scope: z
    .string()
    .transform((scope) => [...new Set(scope.split(' ').filter((action) => action !== ''))])
    .pipe(z.array(Action).min(1).max(MAX_ACTIONS)),
  task: Task,
  // A JSON integer, or in the form encoding a string of decimal digits; nothing else is coerced.
  requested_ttl: z
    .union([
      z.number(),
      z
        .string()
        .regex(/^[0-9]{1,9}$/, 'must be whole seconds')
        .transform(Number),
    ])
    .pipe(z.number().int().positive().max(86_400))
    .optional(),
  actor_token: z.never({ error: 'delegation (actor_token) is not supported' }).optional(),
  /** Polling a step-up approval: the `approval_id` of an `authorization_pending` answer. */
  approval_id: z.string().min(1).max(200).optional(),
});

export interface TokenRequest {
  subjectToken: string;
  audience: string;
  actions: string[];
  task: Task;
  requestedTtl: number | undefined;
  approvalId: string | undefined;
}

/**
 * What each field must be, in our own words: the public text of a field that fails its schema. A `Map`: the
 * field comes from the request.
 */
export const FIELD_HINTS: ReadonlyMap<string, string> = new Map([
  ['grant_type', `grant_type must be ${TOKEN_EXCHANGE_GRANT}`],
  ['subject_token', 'subject_token is the attestation, a JWT'],
  ['subject_token_type', `subject_token_type is ${SUBJECT_TOKEN_TYPES.join(' or ')}`],
  ['requested_token_type', `requested_token_type, if given, is ${ACCESS_TOKEN_TYPE}`],
  ['audience', 'audience is the URL of the one API the token is for, at most 512 characters'],
  ['resource', 'resource is the URL of the one API the token is for, at most 512 characters'],
  [
    'scope',
    `scope is the actions asked for, separated by spaces, 1 to ${MAX_ACTIONS}, each 1-128 of A-Z a-z 0-9 . _ : / -`,
  ],
  ['task', 'task is a JSON object with description (1-4096 characters) and optionally id and justification'],
  ['task.description', `task.description is 1-${MAX_DESCRIPTION_CHARS} characters`],
  ['task.id', 'task.id is 1-128 of A-Z a-z 0-9 . _ : - starting with a letter or digit'],
  ['task.justification', `task.justification is 1-${MAX_DESCRIPTION_CHARS} characters`],
  ['requested_ttl', 'requested_ttl is a whole number of seconds, 1 to 86400, such as 300'],
  ['actor_token', 'delegation (actor_token) is not supported'],
  ['approval_id', 'approval_id is the approval_id of an authorization_pending answer'],
]);

/** Turns the first schema issue into public text that names the field and its form but echoes no value. */
function describeIssue(error: z.ZodError, raw: Record<string, unknown>): string {
  const [issue] = error.issues;
  if (issue === undefined) return 'invalid request';
  const field = issue.path.map(String).join('.') || 'body';
  const top = String(issue.path[0] ?? '');
  if (issue.code === 'invalid_type' && issue.input === undefined) return `missing ${publicEcho(field)}`;
  if (top === 'scope' && typeof raw.scope === 'string' && raw.scope.includes(',')) {
    return 'invalid scope: actions are separated by spaces, not commas (RFC 6749 section 3.3)';
  }
  if (issue.code === 'unrecognized_keys' && top === 'task') {
    return 'invalid task: its members are description, id and justification';
  }
  const hint = FIELD_HINTS.get(field) ?? FIELD_HINTS.get(top);
  return hint === undefined ? `invalid ${publicEcho(field)}` : `invalid ${publicEcho(field)}: ${hint}`;
}

/**
 * Validates the decoded fields of a token request. `task` arrives as an object (JSON) or a JSON string (form).
 *
 * @throws {BrokerError} `invalid_request` naming the offending field.
 */
export function parseTokenRequest(raw: Record<string, unknown>): TokenRequest {
  let task = raw.task;
  if (typeof task === 'string') {
    try {
      task = JSON.parse(task);
    } catch {
      throw refuse('invalid_field', { field: 'task' }, { description: `invalid task: ${FIELD_HINTS.get('task')}` });
    }
    // The body reader saw this field as text: its JSON can still spell a lone surrogate ("\ud800").
    if (!isWellFormedDeep(task)) {
      throw refuse(
        'invalid_field',
        { field: 'task', check: 'lone_surrogate' },
        { description: 'invalid task: it has a string that is not well-formed Unicode (a lone surrogate)' },
      );
    }
  }
  const parsed = Fields.safeParse({ ...raw, task });
  if (!parsed.success) {
    const description = describeIssue(parsed.error, raw);
    throw refuse('invalid_field', { issues: parsed.error.issues.map((i) => i.path.join('.')) }, { description });
  }
  const { audience, resource } = parsed.data;
  if (audience !== undefined && resource !== undefined && audience !== resource) {
    throw refuse('invalid_field', {}, { description: 'invalid audience: audience and resource name different APIs' });
  }
  const target = audience ?? resource;
  if (target === undefined) throw refuse('invalid_field', {}, { description: 'missing audience' });
  return {
    subjectToken: parsed.data.subject_token,
    audience: target,
    actions: parsed.data.scope,
    task: parsed.data.task,
    requestedTtl: parsed.data.requested_ttl,
    approvalId: parsed.data.approval_id,
  };
}
