/**
 * `@tessera/verify/mcp`: an MCP server's authorization with the real broker in this isolate as its
 * authorization server, for a tickets MCP server whose tools map to `tickets:read`, `tickets:comment` and
 * `tickets:close`. The RFC 9728 metadata document and URL, and `authorize`: the claims for a token that grants
 * the tool's actions, and otherwise the MCP authorization spec's `401` / `403 insufficient_scope` challenges,
 * each naming `resource_metadata`.
 */
import { DPOP_ALGORITHMS } from '@tessera/verify';
import { type McpAuthorization, type McpResourceOptions, mcpResource } from '@tessera/verify/mcp';
import { beforeEach, describe, expect, it } from 'vitest';
import { evictAgentObject } from '../helpers/agent-object';
import { forgedCopy } from '../helpers/attestation';
import { useForwardClock } from '../helpers/clock';
import { ISSUER, TICKETS } from '../helpers/demo';
import { exchange } from '../helpers/requests';
import { issue } from '../helpers/tokens';
import { brokerFetch, clientKey, issueBound, RESOURCE, resourceProof } from '../helpers/verify';

useForwardClock();

beforeEach(async () => {
  await evictAgentObject();
});

const TOOLS = {
  'read-ticket': ['tickets:read'],
  'comment-on-ticket': ['tickets:comment'],
  'close-ticket': ['tickets:close'],
} as const;
const METADATA_URL = `${TICKETS}/.well-known/oauth-protected-resource`;
const RESOURCE_METADATA = `resource_metadata="${METADATA_URL}"`;

function tickets(options: Partial<McpResourceOptions> = {}) {
  return mcpResource({ issuer: ISSUER, audience: TICKETS, tools: TOOLS, fetch: brokerFetch, ...options });
}

/** A `POST` to the MCP endpoint (here {@link RESOURCE}) with these headers. */
function call(headers: Record<string, string> = {}) {
  return { authorization: headers.authorization, dpop: headers.dpop, method: 'POST', url: RESOURCE };
}

interface Refusal {
  status: number;
  challenge: string | null;
  error: string;
}

/** The refusal of a verdict, checking it is one and is not to be cached. */
async function refusalOf(verdict: McpAuthorization): Promise<Refusal> {
  if (verdict.ok) throw new Error(`expected a refusal, got the claims of ${verdict.claims.jti}`);
  const { response } = verdict;
  expect(response.headers.get('cache-control')).toBe('no-store');
  const body = (await response.json()) as { error: string };
  return { status: response.status, challenge: response.headers.get('www-authenticate'), error: body.error };
}

async function tokenWithScope(scope: string): Promise<string> {
  const response = await exchange({ scope });
  expect(response.status, await response.clone().text()).toBe(200);
  return ((await response.json()) as { access_token: string }).access_token;
}

describe('mcpResource: protected resource metadata (RFC 9728)', () => {
  it('names the audience as the resource, the broker as its authorization server, and every action', async () => {
    const resource = tickets();
    expect(resource.metadataUrl).toBe(METADATA_URL);
    const response = resource.metadataResponse();
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      resource: TICKETS,
      authorization_servers: [ISSUER],
      scopes_supported: ['tickets:close', 'tickets:comment', 'tickets:read'],
      bearer_methods_supported: ['header'],
    });
  });

  it('inserts the well-known path between the host and the path of a resource with one (§3.1)', () => {
    const resource = tickets({ audience: `${TICKETS}/mcp` });
    expect(resource.metadataUrl).toBe(`${TICKETS}/.well-known/oauth-protected-resource/mcp`);
    expect(resource.metadata.resource).toBe(`${TICKETS}/mcp`);
  });

  it('says DPoP-bound tokens are required when they are, and is served where metadataUrl says', () => {
    const metadataUrl = 'http://127.0.0.1:8787/.well-known/oauth-protected-resource';
    const resource = tickets({ requireDpop: true, metadataUrl });
    expect(resource.metadata.dpop_bound_access_tokens_required).toBe(true);
    expect(resource.metadataUrl).toBe(metadataUrl);
  });

  it('refuses options it cannot work with, at creation', () => {
    expect(() => tickets({ issuer: '' })).toThrow(TypeError);
    expect(() => tickets({ audience: 'tickets' })).toThrow(TypeError);
    expect(() => tickets({ tools: { 'read-ticket': [] } })).toThrow(TypeError);
  });
});

describe('mcpResource: authorize, a token that grants the tool', () => {
  it("returns the verified claims for a tool whose actions the token's scope has", async () => {
    const issued = await issue('task-mcp-resource');
    const verdict = await tickets().authorize(call({ authorization: `Bearer ${issued.token}` }), 'comment-on-ticket');
    if (!verdict.ok) throw new Error(await verdict.response.text());
    expect(verdict.claims.task.id).toBe('task-mcp-resource');
  });

  it('takes a Request as it is', async () => {
    const { token } = await issue();
    const request = new Request(RESOURCE, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    expect((await tickets().authorize(request, 'comment-on-ticket')).ok).toBe(true);
  });

  it('needs only a valid token for a request that calls no tool (initialize, tools/list)', async () => {
    const token = await tokenWithScope('tickets:read');
    const verdict = await tickets().authorize(call({ authorization: `Bearer ${token}` }));
    expect(verdict.ok).toBe(true);
  });

  it('accepts a DPoP-bound token with its proof', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const headers = { authorization: `DPoP ${token}`, dpop: await resourceProof(token, key) };
    expect((await tickets().authorize(call(headers), 'read-ticket')).ok).toBe(true);
  });
});

describe('mcpResource: authorize, refusals (MCP authorization, RFC 6750 §3)', () => {
  it('answers 401 with resource_metadata alone when there is no token', async () => {
    const refusal = await refusalOf(await tickets().authorize(call(), 'read-ticket'));
    expect(refusal.status).toBe(401);
    expect(refusal.challenge).toBe(`Bearer ${RESOURCE_METADATA}`);
  });

  it('answers 401 invalid_token with resource_metadata for a token that does not verify', async () => {
    const { token } = await issue();
    const authorization = `Bearer ${await forgedCopy(token)}`;
    const refusal = await refusalOf(await tickets().authorize(call({ authorization }), 'read-ticket'));
    expect(refusal.status).toBe(401);
    expect(refusal.error).toBe('invalid_token');
    expect(refusal.challenge).toMatch(new RegExp(`^Bearer ${RESOURCE_METADATA}, error="invalid_token"`));
  });

  it("answers 403 insufficient_scope naming the tool's actions as scope for a token without them", async () => {
    const token = await tokenWithScope('tickets:read');
    const refusal = await refusalOf(
      await tickets().authorize(call({ authorization: `Bearer ${token}` }), 'close-ticket'),
    );
    expect(refusal.status).toBe(403);
    expect(refusal.error).toBe('insufficient_scope');
    expect(refusal.challenge).toMatch(
      new RegExp(`^Bearer ${RESOURCE_METADATA}, scope="tickets:close", error="insufficient_scope"`),
    );
  });

  it('names every action a batch of tool calls needs', async () => {
    const token = await tokenWithScope('tickets:read');
    const verdict = await tickets().authorize(call({ authorization: `Bearer ${token}` }), [
      'read-ticket',
      'close-ticket',
      'comment-on-ticket',
    ]);
    const refusal = await refusalOf(verdict);
    expect(refusal.status).toBe(403);
    expect(refusal.challenge).toContain('scope="tickets:close tickets:comment tickets:read"');
  });

  it('answers 403 insufficient_scope with no scope for a tool it has no actions for', async () => {
    const { token } = await issue();
    const refusal = await refusalOf(
      await tickets().authorize(call({ authorization: `Bearer ${token}` }), 'drop-table'),
    );
    expect(refusal.status).toBe(403);
    expect(refusal.error).toBe('insufficient_scope');
    expect(refusal.challenge).not.toContain('scope="');
  });

  it('answers a DPoP challenge with resource_metadata for a bound token sent as Bearer', async () => {
    const key = await clientKey();
    const token = await issueBound(key);
    const refusal = await refusalOf(
      await tickets().authorize(call({ authorization: `Bearer ${token}` }), 'read-ticket'),
    );
    expect(refusal.status).toBe(401);
    expect(refusal.challenge).toMatch(new RegExp(`^DPoP ${RESOURCE_METADATA}, error="invalid_token"`));
    expect(refusal.challenge).toContain(`algs="${DPOP_ALGORITHMS.join(' ')}"`);
  });
});
