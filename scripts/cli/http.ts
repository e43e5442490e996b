/**
 * Talking to the broker: one call, and the one place where what can go wrong with it (nothing listening, a
 * server that is not a Tessera broker, an answer that is not JSON, a refusal) becomes one line that says
 * what is wrong and what to do.
 */
import { z } from 'zod';
import { basicAuthorization } from '../../worker/core/introspection-credential';
import { CliError } from './errors';
import type { Session } from './session';

/** A kill-switch change waits up to 15 s for its shards before the broker answers; leave it room. */
const TIMEOUT_MS = 30_000;

export interface Call {
  method: 'GET' | 'POST' | 'PUT';
  /** The path, its variable parts encoded (build it with {@link path}). */
  path: string;
  query?: Record<string, string | undefined>;
  /** A JSON body. */
  json?: Record<string, unknown>;
  /** A form body (`token=` of RFC 7009 and RFC 7662). */
  form?: Record<string, string>;
  /** The `Authorization: Bearer` credential: an admin credential or an access token. */
  bearer?: string;
  /** `Authorization: Basic`: an API's audience and introspection credential (RFC 6749 §2.3.1). */
  basic?: { clientId: string; password: string };
}

export interface Answer {
  status: number;
  body: unknown;
  headers: Headers;
}

/** What a call's failures mean for the command that made it. */
export interface Meaning<T> {
  /** The shape of a successful answer: it checks, it does not transform (the answer is returned as sent). */
  schema: z.ZodType<T, T>;
  /** The role the call needs: named when the broker answers `403 insufficient_scope`. */
  role?: string;
  /** What a 404 means here (`no agent 'x' in the inventory: 'agents list' shows them`). */
  notFound?: string;
  /** What a 401 means here; by default, that the admin credential is not accepted. */
  unauthorized?: string;
  /** What a 403 means here, when it is not a missing role. */
  forbidden?: string;
  /** What a 503 means here and what to do. */
  unavailable?: string;
  /** What any other refusal means here; by default, that the broker refused the call. */
  refused?: string;
}

/** A path from literal parts and values, each value percent-encoded: path`/admin/agents/${id}`. */
export function path(parts: TemplateStringsArray, ...values: string[]): string {
  return parts.reduce((built, part, i) => `${built}${encodeURIComponent(values[i - 1] ?? '')}${part}`);
}

function describe(call: Pick<Call, 'method' | 'path'>): string {
  return `${call.method} ${call.path}`;
}

interface NetworkCause {
  code?: unknown;
  message?: unknown;
  errors?: { code?: unknown }[];
}

/** The error code of a failed `fetch`: undici puts it on the cause, or on the first of several. */
function networkCode(error: Error): string | undefined {
  const cause = error.cause as NetworkCause | undefined;
  const code = cause?.code ?? cause?.errors?.[0]?.code;
  return typeof code === 'string' ? code : undefined;
}

/** What went wrong in words, when there is no code (fetch refuses some ports outright: "bad port"). */
function networkMessage(error: Error): string {
  const message = (error.cause as NetworkCause | undefined)?.message;
  return typeof message === 'string' && message !== '' ? message : error.message;
}

/**
 * Why a request to the broker got no usable answer: nothing listening, a name that does not resolve, a
 * timeout, TLS, or an answer that is not JSON. Anything else is not a network failure, and is rethrown.
 */
export function fetchFailure(session: Session, what: string, error: unknown): CliError {
  const { url } = session;
  const where = '--url or TESSERA_URL';
  if (error instanceof SyntaxError)
    return new CliError(`the answer to ${what} is not JSON: is ${url} a Tessera broker? Check ${where}`);
  if (error instanceof DOMException && error.name === 'TimeoutError')
    return new CliError(`the broker at ${url} did not answer ${what} within ${TIMEOUT_MS / 1000} s: is it overloaded?`);
  if (!(error instanceof TypeError)) throw error;
  const code = networkCode(error);
  switch (code) {
    case 'ECONNREFUSED':
      return new CliError(
        `cannot reach the broker at ${url}: nothing is listening. Start it (npm run dev) or fix ${where}`,
      );
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new CliError(`cannot reach the broker at ${url}: the host name does not resolve. Check ${where}`);
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return new CliError(`the broker at ${url} closed the connection during ${what}: retry; is it a Tessera broker?`);
    default:
      if (code?.startsWith('ERR_TLS') || code?.includes('CERT'))
        return new CliError(`cannot reach the broker at ${url}: TLS failed (${code}). Check ${where}`);
      return new CliError(`cannot reach the broker at ${url}: ${code ?? networkMessage(error)}. Check ${where}`);
  }
}

/** Sends one call and returns the broker's response, whatever its status. */
async function respond(session: Session, call: Call, accept: string): Promise<Response> {
  if (call.bearer !== undefined || call.basic !== undefined || call.form !== undefined) session.checkTransport();
  const url = new URL(session.url + call.path);
  for (const [name, value] of Object.entries(call.query ?? {}))
    if (value !== undefined) url.searchParams.set(name, value);
  const headers: Record<string, string> = { accept };
  if (call.bearer !== undefined) headers.authorization = `Bearer ${call.bearer}`;
  if (call.basic !== undefined) headers.authorization = basicAuthorization(call.basic.clientId, call.basic.password);
  let body: string | undefined;
  if (call.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(call.json);
  } else if (call.form !== undefined) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(call.form).toString();
  }
  const what = describe(call);
  try {
    // A redirect is a login page or a proxy, never the broker: do not follow it with a credential.
    const response = await fetch(url, {
      method: call.method,
      headers,
      ...(body !== undefined && { body }),
      redirect: 'manual',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get('location') ?? 'elsewhere';
      throw new CliError(
        `the broker answered ${what} with a redirect to ${location}: a login page in front of it? Use the broker's own URL`,
      );
    }
    return response;
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw fetchFailure(session, what, error);
  }
}

/** Sends one call and reads its JSON answer, whatever its status. */
export async function send(session: Session, call: Call): Promise<Answer> {
  const response = await respond(session, call, 'application/json');
  try {
    return { status: response.status, body: JSON.parse(await response.text()), headers: response.headers };
  } catch (error) {
    throw fetchFailure(session, describe(call), error);
  }
}

/**
 * Sends a call whose successful answer is bytes (an archive segment), and returns them.
 *
 * @throws {CliError} for a refusal (read as JSON, as every refusal is) or a broker that cannot be reached.
 */
export async function download(session: Session, call: Call, meaning: Omit<Meaning<unknown>, 'schema'> = {}) {
  const response = await respond(session, call, '*/*');
  if (response.status >= 200 && response.status < 300)
    return { bytes: new Uint8Array(await response.arrayBuffer()), headers: response.headers };
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: refusal() says the answer is not in a Tessera broker's shape.
  }
  throw refusal(session, call, { status: response.status, body, headers: response.headers }, meaning);
}

const TesseraError = z.object({ error: z.string(), error_description: z.string().optional() });

/** Turns an answer that is not a success into the line that explains it. */
export function refusal(
  session: Session,
  call: Pick<Call, 'method' | 'path'>,
  answer: Answer,
  meaning: Omit<Meaning<unknown>, 'schema'> = {},
): CliError {
  const parsed = TesseraError.safeParse(answer.body);
  if (!parsed.success) {
    return new CliError(
      `HTTP ${answer.status} for ${describe(call)}, not in a Tessera broker's error shape: is ${session.url} one? Check --url or TESSERA_URL`,
    );
  }
  const { error, error_description: description } = parsed.data;
  const code = `${answer.status} ${error}${description === undefined ? '' : `: ${description}`}`;
  switch (answer.status) {
    case 401:
      return new CliError(
        `${meaning.unauthorized ?? 'the broker does not accept the admin credential: check TESSERA_ADMIN_TOKEN or --admin-token'} (${code})`,
      );
    case 403:
      if (error === 'insufficient_scope' && meaning.role !== undefined)
        return new CliError(`the admin credential lacks the ${meaning.role} role (${code}): use one that has it`);
      return new CliError(`${meaning.forbidden ?? 'refused'} (${code})`);
    case 404:
      if (description === 'no such endpoint')
        return new CliError(
          `the broker has no ${describe(call)} (${code}): is ${session.url} a Tessera broker, as recent as this CLI?`,
        );
      return new CliError(`${meaning.notFound ?? 'not found'} (${code})`);
    case 429: {
      const after = answer.headers.get('retry-after');
      return new CliError(`too many requests (${code}): retry${after === null ? ' later' : ` in ${after} s`}`);
    }
    case 503:
      return new CliError(
        `${meaning.unavailable ?? 'the broker could not reach its state, so it changed nothing'} (${code}): retry in a moment`,
      );
    default:
      return new CliError(`${meaning.refused ?? `the broker refused ${describe(call)}`} (${code})`);
  }
}

/**
 * Sends a call and returns its successful answer once it has `meaning.schema`'s shape, as the broker sent it
 * (with any members the schema does not name, for `--json`).
 *
 * @throws {CliError} for a refusal, a broker that cannot be reached, or an answer that is not Tessera's.
 */
export async function request<T>(session: Session, call: Call, meaning: Meaning<T>): Promise<T> {
  const answer = await send(session, call);
  if (answer.status < 200 || answer.status >= 300) throw refusal(session, call, answer, meaning);
  if (!meaning.schema.safeParse(answer.body).success) {
    throw new CliError(
      `the answer to ${describe(call)} is not what a Tessera broker sends: is ${session.url} one, as recent as this CLI?`,
    );
  }
  return answer.body as T;
}
