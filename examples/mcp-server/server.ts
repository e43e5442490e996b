/**
 * An example MCP server guarded by Tessera: an IAM directory on Node (node:http, the MCP SDK's `McpServer`
 * and Streamable HTTP transport, stateless), whose tools map to the actions of `https://iam.example.com` in
 * `policies/`: `get-user` needs `iam:read-user`, `disable-user` needs `iam:disable-user`, which policy grants
 * only with a justification and a human's step-up approval. `@tessera/verify/mcp` serves its RFC 9728
 * metadata and checks every request's token for the tool it calls.
 *
 * `test/agent/mcp.test.ts` starts it against a test broker and runs `examples/mcp-agent/` against it.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { type McpResource, mcpResource } from '@tessera/verify/mcp';
import { z } from 'zod';

/** The API's audience, as `policies/apis.yaml` names it. */
export const IAM_AUDIENCE = 'https://iam.example.com';

/** Each tool and the Tessera actions a call of it needs. */
export const IAM_TOOLS = {
  'get-user': ['iam:read-user'],
  'disable-user': ['iam:disable-user'],
} as const;

/** A running example server. */
export interface RunningMcpServer {
  /** Its MCP endpoint, `http://127.0.0.1:<port>/mcp`. */
  url: string;
  /** The users it disabled, and by which task. */
  disabled: Map<string, string>;
  close(): Promise<void>;
}

const USERS = new Map([
  ['jdoe', { id: 'jdoe', name: 'Jane Doe', department: 'Finance', active: true }],
  ['rroe', { id: 'rroe', name: 'Richard Roe', department: 'Sales', active: true }],
]);

/** The tools' MCP server for one request, which knows the task it acts for from the verified claims. */
function iamServer(disabled: Map<string, string>, task: string): McpServer {
  const server = new McpServer({ name: 'tessera-example-iam', version: '1.0.0' });
  server.registerTool(
    'get-user',
    { description: 'Reads a user of the directory', inputSchema: { id: z.string() } },
    ({ id }) => {
      const user = USERS.get(id);
      if (user === undefined) return { isError: true, content: [{ type: 'text', text: `no user ${id}` }] };
      const active = user.active && !disabled.has(id);
      return { content: [{ type: 'text', text: JSON.stringify({ ...user, active }) }] };
    },
  );
  server.registerTool(
    'disable-user',
    { description: "Disables a user's account", inputSchema: { id: z.string() } },
    ({ id }) => {
      if (!USERS.has(id)) return { isError: true, content: [{ type: 'text', text: `no user ${id}` }] };
      disabled.set(id, task);
      return { content: [{ type: 'text', text: `disabled ${id}` }] };
    },
  );
  return server;
}

/** The body of a request, parsed as JSON; undefined when it is empty or not JSON (the transport refuses it). */
async function jsonBody(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  try {
    return chunks.length === 0 ? undefined : JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return undefined;
  }
}

/** The tools a JSON-RPC message, or each message of a batch, calls (`tools/call`); a call with no name is ''. */
function toolsOf(body: unknown): string[] {
  return (Array.isArray(body) ? body : [body]).flatMap((message: unknown) => {
    const { method, params } = (message ?? {}) as { method?: unknown; params?: { name?: unknown } };
    if (method !== 'tools/call') return [];
    return [typeof params?.name === 'string' ? params.name : ''];
  });
}

/** Answers one HTTP request: the metadata, or an MCP message whose token `resource` lets through. */
async function handle(
  resource: McpResource,
  disabled: Map<string, string>,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const url = new URL(request.url ?? '/', resource.metadataUrl);
  if (request.method === 'GET' && url.href === resource.metadataUrl) {
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(resource.metadata));
    return;
  }
  if (url.pathname !== '/mcp') return void response.writeHead(404).end();
  const body = await jsonBody(request);
  const call = {
    authorization: request.headers.authorization,
    // Node joins repeated headers with a comma, which the verifier refuses as several proofs (RFC 9449 §4.3).
    dpop: [request.headers.dpop ?? []].flat().join(', ') || undefined,
    method: request.method ?? 'GET',
    url: url.href,
  };
  const verdict = await resource.authorize(call, toolsOf(body));
  if (!verdict.ok) {
    const headers: Record<string, string> = {};
    verdict.response.headers.forEach((value, name) => {
      headers[name] = value;
    });
    response.writeHead(verdict.response.status, headers);
    return void response.end(await verdict.response.text());
  }
  const server = iamServer(disabled, verdict.claims.task.id);
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  response.on('close', () => void Promise.all([transport.close(), server.close()]));
  await server.connect(transport);
  await transport.handleRequest(request, response, body);
}

/**
 * Starts the example server on a free loopback port, trusting the broker at `issuer`.
 *
 * @example
 * const server = await startMcpServer({ issuer: 'http://localhost:8787' });
 * console.log(`MCP endpoint: ${server.url}`);
 */
export async function startMcpServer(options: { issuer: string }): Promise<RunningMcpServer> {
  const disabled = new Map<string, string>();
  const http = createServer();
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  const resource = mcpResource({
    issuer: options.issuer,
    audience: IAM_AUDIENCE,
    tools: IAM_TOOLS,
    // The audience is a name, not where this server listens: its metadata is served at its own origin.
    metadataUrl: `${origin}/.well-known/oauth-protected-resource/mcp`,
  });
  http.on('request', (request: IncomingMessage, response: ServerResponse) => {
    handle(resource, disabled, request, response).catch((error: unknown) => {
      console.error('example MCP server:', error);
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  });
  return {
    url: `${origin}/mcp`,
    disabled,
    close: () => new Promise((resolve, reject) => http.close((error) => (error ? reject(error) : resolve()))),
  };
}
