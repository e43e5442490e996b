/**
 * The fuzz suite's oracles: what every answer of the broker must be, whatever it was sent (the spec's error
 * shape, no 5xx but a 503 for a store a test made fail), and what the audit log must hold afterwards (one
 * record per decision, or a share of a summary for the sampled refusals of unknown callers).
 */
import { env, exports } from 'cloudflare:workers';
import { expect } from 'vitest';
import type { AuditOnlyReason } from '../../worker/audit/record';
import { reasonCode } from '../../worker/core/errors';
import { drainAudit } from '../helpers/audit';
import { ISSUER } from '../helpers/demo';

/**
 * The error codes the contract answers with, and the statuses each comes with: `docs/api.md`'s tables,
 * RFC 6749 §5.2, RFC 6750 §3.1 (`invalid_token`, `insufficient_scope`), RFC 9449 §7-8 (DPoP), OpenID CIBA
 * (`authorization_pending`, `slow_down`, `expired_token`), and the router's own (`not_found`,
 * `method_not_allowed`). `server_error` is not here: no request may get a 500.
 */
export const SPEC_ERRORS: Readonly<Record<string, readonly number[]>> = {
  invalid_request: [400, 413, 415],
  invalid_grant: [400],
  invalid_target: [400],
  invalid_scope: [400],
  access_denied: [400, 403],
  authorization_pending: [400],
  expired_token: [400],
  slow_down: [400, 429],
  temporarily_unavailable: [503],
  invalid_token: [401],
  // RFC 6749 §5.2: an API that does not authenticate to /introspect (RFC 7662 §2.1).
  invalid_client: [401],
  insufficient_scope: [403],
  invalid_dpop_proof: [400, 401],
  use_dpop_nonce: [400, 401],
  not_found: [404],
  method_not_allowed: [405],
};

/** RFC 6749 §5.2: `error_description = 1*( %x20-21 / %x23-5B / %x5D-7E )`. */
export const DESCRIPTION_CHARSET = /^[\x20\x21\x23-\x5b\x5d-\x7e]+$/;

/** Reasons recorded but never answered (worker/audit/record.ts). */
const AUDIT_ONLY_REASONS: readonly AuditOnlyReason[] = [
  'invalid_token',
  'webhook_not_configured',
  'webhook_failed',
  'webhook_gave_up',
];

/** A reason from the table (`worker/core/errors.ts`) or an audit-only one. */
export const isKnownReason = (reason: string) =>
  reasonCode(reason) !== null || (AUDIT_ONLY_REASONS as readonly string[]).includes(reason);

/** A request as the fuzz suite sends it. */
export interface FuzzRequest {
  method: string;
  /** Path and query, starting with `/`. */
  path: string;
  headers?: Readonly<Record<string, string>>;
  body?: BodyInit;
}

/** An answer, read once: its status, headers, and body as text and (when it parses) as JSON. */
export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

export interface AnswerContext {
  /** A test made a store fail for this request: a 503 `temporarily_unavailable` is then allowed. */
  storeDown?: boolean;
}

/**
 * Checks what every answer must be: no 5xx (but a 503 when a test made a store fail), the headers its status
 * needs, and for an error, the spec's shape: `{ error, error_description }` with a code and status from the
 * spec, `Cache-Control: no-store`, and a description in RFC 6749 §5.2's characters.
 */
export function checkAnswer(request: FuzzRequest, answer: Answer, context: AnswerContext = {}): void {
  const what = `${request.method} ${request.path} -> ${answer.status} ${answer.text.slice(0, 300)}`;
  const allowed503 = context.storeDown === true && answer.status === 503;
  expect(answer.status < 500 || allowed503, `no 5xx but a 503 for a store made to fail: ${what}`).toBe(true);
  if (answer.status === 405) expect(answer.headers.get('allow'), `405 names the allowed methods: ${what}`).toBeTruthy();
  if (answer.status === 429) expect(answer.headers.get('retry-after'), `429 says when: ${what}`).toMatch(/^[1-9]\d*$/);
  if (answer.status === 401) expect(answer.headers.get('www-authenticate'), `401 challenges: ${what}`).toBeTruthy();
  if (answer.status < 400 || request.method === 'HEAD') return;
  expect(answer.headers.get('cache-control'), `errors are not cached: ${what}`).toBe('no-store');
  const body = answer.json as Record<string, unknown> | undefined;
  expect(typeof body === 'object' && body !== null && !Array.isArray(body), `an error is a JSON object: ${what}`).toBe(
    true,
  );
  const { error, error_description: description } = body as Record<string, unknown>;
  expect(typeof error === 'string' && Object.hasOwn(SPEC_ERRORS, error), `a code from the spec: ${what}`).toBe(true);
  expect(SPEC_ERRORS[error as string], `the spec's status for ${String(error)}: ${what}`).toContain(answer.status);
  expect(typeof description === 'string' && DESCRIPTION_CHARSET.test(description), `RFC 6749 §5.2 text: ${what}`).toBe(
    true,
  );
  expect(body, `no token in an error: ${what}`).not.toHaveProperty('access_token');
}

/** Sends `request` to the worker in this isolate and reads the whole answer. */
export async function send(request: FuzzRequest): Promise<Answer> {
  const response = await exports.default.fetch(`${ISSUER}${request.path}`, {
    method: request.method,
    headers: request.headers ?? {},
    ...(request.body !== undefined && { body: request.body }),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

// ---------------------------------------------------------------------------------------------------------
// The audit ledger

/** What the audit log must hold for one request. */
export type AuditExpectation =
  /** Not a decision endpoint (discovery, introspection, an unknown path): no record. */
  | 'none'
  /** A known caller's decision: exactly one record, in full. */
  | 'one'
  /** A refusal of a caller not known yet: one record in full, or one count in a summary record. */
  | 'sampled';

interface Entry {
  request: FuzzRequest;
  answer: Answer;
  expect: AuditExpectation;
  /** The reason its record must give, when the caller knows it (`worker/core/errors.ts`). */
  reason: string | undefined;
}

interface AuditRow {
  seq: number;
  event: string;
  decision: string;
  error_code: string | null;
  reason: string | null;
  user_agent: string | null;
  detail: string | null;
}

interface Summary {
  count: number;
  user_agents: Record<string, number>;
}

let requestNumber = 0;
/** The user agent of the ledger's requests, before each one's number. */
const USER_AGENT = 'tessera-fuzz/';

/**
 * Requests of one property run, each with its own `User-Agent` so its record can be found, and the check that
 * the audit log holds exactly what they decided: one record per decision with a reason from the table and the
 * code the caller was answered, and for the sampled refusals of unknown callers, full records plus summary
 * counts that add up to the requests.
 */
export class AuditLedger {
  #entries = new Map<string, Entry>();
  /** Requests sent over every run so far: the figure a property reports with its runs. */
  requests = 0;
  /** Requests counted in summary records over every run so far. */
  summarised = 0;
  #since = 0;
  /** A run that did not settle (it failed) leaves records the next run must not count. */
  #dirty = true;

  /** Starts a run: records from here on are this run's. */
  async begin(): Promise<void> {
    if (this.#dirty) await drainAudit({ closeWindows: true });
    this.#since = await maxSeq();
    this.#entries.clear();
    this.#dirty = true;
  }

  /** Sends `request` with this run's next user agent and notes what its record must be, and its reason. */
  async send(request: FuzzRequest, expectation: AuditExpectation, reason?: string): Promise<Answer> {
    requestNumber += 1;
    this.requests += 1;
    const userAgent = `${USER_AGENT}${requestNumber}`;
    const answer = await send({ ...request, headers: { ...request.headers, 'user-agent': userAgent } });
    this.#entries.set(userAgent, { request, answer, expect: expectation, reason });
    return answer;
  }

  /** Prints what a property ran (docs/testing.md quotes these figures): its runs, its requests, and `details`. */
  report(property: string, runs: number | undefined, ...details: unknown[]): void {
    console.info(`${property}: ${runs} runs, ${this.requests} requests`, ...details);
  }

  /** Waits for every record of the run in D1 (closing the intake's sampling windows) and checks them. */
  async settle(): Promise<void> {
    await drainAudit({ closeWindows: true });
    const { results } = await env.AUDIT_DB.prepare(
      'SELECT seq, event, decision, error_code, reason, user_agent, detail FROM audit_events WHERE seq > ? ORDER BY seq',
    )
      .bind(this.#since)
      .all<AuditRow>();
    const full = new Map<string, AuditRow[]>();
    let summarised = 0;
    const summarisedAgents = new Map<string, number>();
    for (const row of results) {
      if (row.event === 'approval.notify') continue;
      const summary = (JSON.parse(row.detail ?? 'null') as { summary?: Summary } | null)?.summary;
      expect(row.reason === null || isKnownReason(row.reason), `a reason from the table: ${row.reason}`).toBe(true);
      if (row.reason !== null) expect(row.error_code).toBe(reasonCode(row.reason));
      if (summary !== undefined) {
        summarised += summary.count;
        for (const [agent, count] of Object.entries(summary.user_agents)) {
          summarisedAgents.set(agent, (summarisedAgents.get(agent) ?? 0) + count);
        }
        continue;
      }
      // Records of requests a test made itself (through the helpers) are not the ledger's.
      const key = row.user_agent ?? '';
      if (!key.startsWith(USER_AGENT)) continue;
      expect(this.#entries.has(key), `a record of this run's requests: ${JSON.stringify(row)}`).toBe(true);
      full.set(key, [...(full.get(key) ?? []), row]);
    }
    let unrecorded = 0;
    for (const [userAgent, entry] of this.#entries) {
      const rows = full.get(userAgent) ?? [];
      const what = `${entry.request.method} ${entry.request.path} -> ${entry.answer.status} ${entry.answer.text.slice(0, 200)}`;
      if (entry.expect === 'none') {
        expect(rows, `no record: ${what}`).toHaveLength(0);
        continue;
      }
      expect(rows.length, `at most one record per decision: ${what}`).toBeLessThanOrEqual(1);
      const [row] = rows;
      if (row === undefined) {
        expect(entry.expect, `one record in full for a known caller: ${what}`).toBe('sampled');
        unrecorded += 1;
        if (summarisedAgents.has(userAgent)) expect(summarisedAgents.get(userAgent)).toBe(1);
        continue;
      }
      checkRecordMatches(row, entry.answer, what);
      if (entry.reason !== undefined) expect(row.reason, `the reason: ${what}`).toBe(entry.reason);
    }
    expect(summarised, 'full records plus summary counts add up to the requests').toBe(unrecorded);
    this.summarised += summarised;
    this.#dirty = false;
  }
}

/** A record says what the caller was answered: granted for a success, else refused with the answer's code. */
function checkRecordMatches(row: AuditRow, answer: Answer, what: string): void {
  const code = (answer.json as { error?: unknown } | undefined)?.error;
  if (answer.status >= 400) {
    expect(row.decision, `refused: ${what}`).toBe('refused');
    expect(row.error_code, `recorded with the code answered: ${what}`).toBe(code);
  } else if (row.decision === 'refused') {
    // RFC 7009 §2.2: an invalid token is answered 200 like a revoked one, and recorded as refused.
    expect(row.reason, `a success recorded as a refusal: ${what}`).toBe('invalid_token');
  } else {
    expect(row.decision, `granted: ${what}`).toBe('granted');
  }
}

async function maxSeq(): Promise<number> {
  const row = await env.AUDIT_DB.prepare('SELECT COALESCE(MAX(seq), 0) AS seq FROM audit_events').first<{
    seq: number;
  }>();
  return row?.seq ?? 0;
}
