/**
 * The client side of the MCP authorization spec (2026-07-28) with Tessera: a `fetch` for an MCP client
 * transport that carries the task's token for one MCP server, and steps up once on `403 insufficient_scope`.
 */
import type { Task } from './task.js';

/** Options of {@link Task.mcpFetch}. */
export interface McpFetchOptions {
  /** The MCP server's audience, as `policies/apis.yaml` names it (its RFC 9728 `resource`). */
  audience: string;
  /** The actions to ask for first: what listing the tools and the first calls need. */
  scope: string | readonly string[];
}

/** A `fetch` as MCP client transports take it (the SDK's `FetchLike`). */
export type McpFetch = (url: string | URL, init?: RequestInit) => Promise<Response>;

/** One auth-param of a challenge: `name="quoted"` or `name=token` (RFC 9110 §11.2). */
const AUTH_PARAM = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g;

/**
 * The `scope` of a `403` whose `Bearer` or `DPoP` challenge says `error="insufficient_scope"` (RFC 6750
 * §3.1; MCP authorization, "Scope Challenge Handling"), or undefined for any other answer.
 */
function insufficientScope(response: Response): string | undefined {
  if (response.status !== 403) return undefined;
  const header = response.headers.get('www-authenticate');
  if (header === null || !/^\s*(Bearer|DPoP)\s/i.test(header)) return undefined;
  const params = new Map<string, string>();
  for (const match of header.matchAll(AUTH_PARAM))
    params.set((match[1] as string).toLowerCase(), (match[2] ?? match[3] ?? '').replace(/\\(.)/g, '$1'));
  if (params.get('error') !== 'insufficient_scope') return undefined;
  return params.get('scope');
}

/**
 * Makes the `fetch` of {@link Task.mcpFetch}: each request carries the task's token for `audience` with the
 * actions held so far; a `403 insufficient_scope` naming a scope adds it to them, asks the broker for the
 * union (for the same task, a step-up approval included), and sends the request once more.
 */
export function createMcpFetch(task: Task, options: McpFetchOptions): McpFetch {
  if (typeof options.audience !== 'string' || !URL.canParse(options.audience))
    throw new TypeError('audience must be a URL');
  let held = typeof options.scope === 'string' ? options.scope.split(' ') : [...options.scope];
  if (held.every((action) => action === '')) throw new TypeError('scope names no action');

  return async function mcpFetch(url, init = {}) {
    const send = () => task.fetch(url, { ...init, audience: options.audience, scope: held });
    const response = await send();
    const needed = insufficientScope(response);
    // A streamed body was read by the first attempt: it cannot be sent again.
    if (needed === undefined || needed === '' || init.body instanceof ReadableStream) return response;
    const wanted = [...new Set([...held, ...needed.split(' ')])];
    if (wanted.length === new Set(held).size) return response;
    held = wanted;
    await response.body?.cancel();
    return send();
  };
}
