/**
 * `@tessera/verify/mcp`: an MCP server's side of the MCP authorization spec (2026-07-28) with Tessera as its
 * authorization server: the RFC 9728 protected resource metadata it publishes, and `authorize`, which checks
 * a request's token for the tool it calls and answers `401` / `403 insufficient_scope` as the spec says.
 */

import { VerifyError } from './errors.js';
import { checkIntrospectionOptions } from './introspection.js';
import { type PresentedRequest, refusal, verifyRequest } from './request.js';
import { StatusLists } from './status-check.js';
import type { AgentTokenClaims, VerifyAgentTokenOptions } from './token.js';

export type { PresentedRequest } from './request.js';

/** RFC 9728 §3.1: the well-known path a resource's metadata is served under. */
export const PROTECTED_RESOURCE_METADATA_PATH = '/.well-known/oauth-protected-resource';

/** The protected resource metadata document (RFC 9728 §2), the members Tessera's resources use. */
export interface ProtectedResourceMetadata {
  /** The resource identifier: the API's audience. */
  resource: string;
  /** The broker's issuer: the one authorization server. */
  authorization_servers: [string];
  /** Every action a tool of this server needs. */
  scopes_supported: string[];
  /** RFC 6750 §2.1 only: a token in the `Authorization` header. */
  bearer_methods_supported: ['header'];
  /** Present, `true`, when the server accepts DPoP-bound tokens only (RFC 9449 §5.2). */
  dpop_bound_access_tokens_required?: true;
}

export type McpResourceOptions = Omit<VerifyAgentTokenOptions, 'actions' | 'dpop' | 'now'> & {
  /** Each tool's name and the actions a call of it needs; a tool not named here is refused. */
  tools: Readonly<Record<string, readonly string[]>>;
  /**
   * Where the metadata is served, when not at the audience's own well-known URL (RFC 9728 §3.1): the MCP
   * server's public origin, say, when its audience is a name rather than where it listens.
   */
  metadataUrl?: string;
};

/** A call `authorize` let through, with the token's verified claims, or its refusal, ready to send. */
export type McpAuthorization = { ok: true; claims: AgentTokenClaims } | { ok: false; response: Response };

/** An MCP server's authorization, made by {@link mcpResource}. */
export interface McpResource {
  /** The RFC 9728 document to serve at {@link McpResource.metadataUrl}. */
  readonly metadata: ProtectedResourceMetadata;
  /** Where the metadata is served; named in every challenge as `resource_metadata` (RFC 9728 §5.1). */
  readonly metadataUrl: string;
  /** The metadata as an answer: `200`, JSON, cacheable for a minute. */
  metadataResponse(): Response;
  /**
   * Checks the request's token for `tool` (or, with no tool, for any call: `initialize`, `tools/list`; with
   * several, for a batch that calls each): the verifier's checks with the tools' actions. `request` is a
   * `Request`, or what one presented (from Node's `IncomingMessage`, say). Refuses with the spec's
   * challenges: `401` with
   * `resource_metadata` for no or a bad token, `403` with `error="insufficient_scope"` and `scope` (the
   * tool's actions) for a token that lacks one, `503` when the broker's keys or the token's status could not
   * be had.
   */
  authorize(request: Request | PresentedRequest, tool?: string | readonly string[]): Promise<McpAuthorization>;
}

/** RFC 9728 §3.1: the well-known URL of `resource`'s metadata, inserted between its host and its path. */
export function protectedResourceMetadataUrl(resource: string): string {
  const url = new URL(resource);
  const path = url.pathname === '/' ? '' : url.pathname;
  return `${url.origin}${PROTECTED_RESOURCE_METADATA_PATH}${path}`;
}

/**
 * Sets up an MCP server's authorization with Tessera: its audience is the RFC 9728 resource, the broker its
 * authorization server, and each tool maps to the Tessera actions it needs (MCP authorization, "Scope
 * Challenge Handling": the `scope` of a `403` names what the operation needs; the client adds what it holds).
 *
 * @example
 * import { mcpResource } from '@tessera/verify/mcp';
 *
 * const iam = mcpResource({
 *   issuer: 'https://tessera.example.com',
 *   audience: 'https://iam.example.com',
 *   tools: { 'read-user': ['iam:read-user'], 'disable-user': ['iam:disable-user'] },
 * });
 * // GET iam.metadataUrl: return iam.metadataResponse();
 * // POST /mcp, a tools/call of `name`:
 * const verdict = await iam.authorize(request, name);
 * if (!verdict.ok) return verdict.response;
 *
 * @throws {TypeError} when `issuer` or `audience` is missing or not a URL, `tools` names a tool with no
 *   action, or `introspection` has no credential.
 */
export function mcpResource(options: McpResourceOptions): McpResource {
  if (typeof options.issuer !== 'string' || !URL.canParse(options.issuer)) throw new TypeError('issuer must be a URL');
  if (typeof options.audience !== 'string' || !URL.canParse(options.audience))
    throw new TypeError('audience must be a URL');
  checkIntrospectionOptions(options.introspection);
  const { tools: toolActions, metadataUrl = protectedResourceMetadataUrl(options.audience), ...rest } = options;
  const tools = new Map<string, readonly string[]>(Object.entries(toolActions));
  for (const [name, actions] of tools)
    if (actions.length === 0) throw new TypeError(`tool ${name} needs at least one action`);
  const verifyOptions = { ...rest, statusLists: options.statusLists ?? new StatusLists() };
  const metadata: ProtectedResourceMetadata = {
    resource: options.audience,
    authorization_servers: [options.issuer],
    scopes_supported: [...new Set([...tools.values()].flat())].sort(),
    bearer_methods_supported: ['header'],
    ...(options.requireDpop === true && { dpop_bound_access_tokens_required: true as const }),
  };

  return {
    metadata,
    metadataUrl,
    metadataResponse: () => Response.json(metadata, { headers: { 'Cache-Control': 'public, max-age=60' } }),
    async authorize(request, tool) {
      const called = typeof tool === 'string' ? [tool] : (tool ?? []);
      const params: [string, string][] = [['resource_metadata', metadataUrl]];
      const unknown = called.find((name) => !tools.has(name));
      if (unknown !== undefined) {
        // A tool this server does not map is refused, with no scope that would grant it: fail closed.
        const error = new VerifyError('missing_action', `no actions are mapped for tool ${unknown}`);
        return { ok: false, response: refusal(error, options.requireDpop === true, params) };
      }
      const actions = [...new Set(called.flatMap((name) => tools.get(name) ?? []))].sort();
      const presented =
        'headers' in request
          ? {
              authorization: request.headers.get('authorization'),
              dpop: request.headers.get('dpop'),
              method: request.method,
              url: request.url,
            }
          : request;
      const verdict = await verifyRequest(presented, { ...verifyOptions, actions });
      if (verdict.ok) return verdict;
      if (verdict.error.code === 'missing_action') params.push(['scope', actions.join(' ')]);
      return { ok: false, response: refusal(verdict.error, verdict.dpopChallenge, params) };
    },
  };
}
