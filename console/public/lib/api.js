/**
 * Calls to the broker's `/admin/*` API, as the signed-in identity. Behind Cloudflare Access the Access
 * session signs every request (Access adds `Cf-Access-Jwt-Assertion`); without it, the admin credential the
 * person typed is kept in this tab's sessionStorage only (never localStorage, never a cookie, never a URL)
 * and sent as a Bearer header.
 */

const CREDENTIAL_KEY = 'tessera.console.credential';

/** The admin credential of this tab, if one was typed. */
export const credential = {
  /** @returns {string | null} */
  get: () => sessionStorage.getItem(CREDENTIAL_KEY),
  /** @param {string} value */
  set: (value) => sessionStorage.setItem(CREDENTIAL_KEY, value),
  clear: () => sessionStorage.removeItem(CREDENTIAL_KEY),
};

/**
 * @typedef {'admin' | 'approver' | 'auditor'} Role
 * @typedef {{ id: string, role: Role, groups: string[], via: 'credential' | 'cloudflare_access' }} Identity
 */

/** A refusal or failure of an API call: the HTTP status, the API's error code and its description. */
export class ApiError extends Error {
  /**
   * @param {number} status 0 when the broker did not answer at all
   * @param {string} code
   * @param {string} description
   * @param {Record<string, unknown>} [body]
   */
  constructor(status, code, description, body = {}) {
    super(`${status} ${code}: ${description}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.description = description;
    this.body = body;
  }
}

/**
 * Calls the API; resolves with the parsed JSON body of a 2xx answer.
 * @param {string} path
 * @param {{ method?: 'GET' | 'PUT' | 'POST', body?: unknown }} [options]
 * @returns {Promise<any>}
 * @throws {ApiError} on any other answer, or none
 */
export async function api(path, { method = 'GET', body } = {}) {
  /** @type {Record<string, string>} */
  const headers = { accept: 'application/json' };
  const typed = credential.get();
  if (typed !== null) headers.authorization = `Bearer ${typed}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  /** @type {Response} */
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      cache: 'no-store',
      credentials: 'same-origin',
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
  } catch {
    throw new ApiError(0, 'unreachable', 'the broker did not answer');
  }
  const payload = await response.json().catch(() => null);
  if (response.ok && payload !== null) return payload;
  const error = payload ?? {};
  throw new ApiError(
    response.status,
    typeof error.error === 'string' ? error.error : 'unexpected_answer',
    typeof error.error_description === 'string' ? error.error_description : `HTTP ${response.status}`,
    error,
  );
}

/**
 * What a failed call means, in words for the person at the console, with the API's own answer after it.
 * @param {unknown} error
 * @returns {string}
 */
export function explain(error) {
  if (!(error instanceof ApiError)) return `Something went wrong in the console: ${String(error)}`;
  const answer = `(${error.status} ${error.code}: ${error.description})`;
  if (error.status === 0) return 'The broker did not answer. Check the connection and try again; nothing was changed.';
  if (error.status === 401)
    return `You are not signed in, or your sign-in is no longer accepted. Sign in again. ${answer}`;
  if (error.status === 403 && error.code === 'insufficient_scope')
    return `Your role does not allow this: the broker refused it. ${answer}`;
  if (error.status === 403) return `Refused: ${error.description}.`;
  if (error.status === 404) return `Not found: it may have been removed, or the id is wrong. ${answer}`;
  if (error.status === 503) return `The broker could not complete this: a store did not answer. Try again. ${answer}`;
  if (error.status === 429) return `Too many requests: wait a moment and try again. ${answer}`;
  return `The broker refused this: ${error.description}. ${answer}`;
}
