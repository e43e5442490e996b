/**
 * An example agent that works through an MCP server with Tessera: it offboards a departed employee on the
 * example IAM server (`examples/mcp-server/`) with the MCP SDK's `Client` and Streamable HTTP transport,
 * whose `fetch` is `task.mcpFetch`. It discovers the server's RFC 9728 metadata from the `401` challenge,
 * starts a task with the least scope (`iam:read-user`), reads the user, disables them (the server's
 * `403 insufficient_scope` makes `mcpFetch` step up to `iam:disable-user`, which waits for a human's approval),
 * reads the user again, and completes the task, which kills its tokens.
 *
 * `test/agent/mcp.test.ts` runs it end to end against a test broker.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Tessera } from '@tessera/agent';

/** The parts of a protected resource metadata document (RFC 9728 §2) the agent reads. */
interface ResourceMetadata {
  resource: string;
  authorization_servers: string[];
  scopes_supported: string[];
}

/** What the agent did, step by step. */
export interface OffboardingReport {
  taskId: string;
  metadata: ResourceMetadata;
  tools: string[];
  before: string;
  disabled: string;
  after: string;
}

/**
 * RFC 9728 §5: an unauthenticated request's `401` names the metadata URL as `resource_metadata`. The agent
 * trusts the document only when it names `broker` as the authorization server and `audience` as the
 * resource: a server may not pick which of the agent's APIs it gets a token for.
 */
export async function discover(serverUrl: string, broker: string, audience: string): Promise<ResourceMetadata> {
  const challenge = await fetch(serverUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'ping' }),
  });
  const header = challenge.headers.get('www-authenticate') ?? '';
  const url = /resource_metadata="([^"]+)"/.exec(header)?.[1];
  if (challenge.status !== 401 || url === undefined) throw new Error(`${serverUrl} sent no resource_metadata`);
  const metadata = (await (await fetch(url)).json()) as ResourceMetadata;
  if (!metadata.authorization_servers.includes(broker)) throw new Error(`${serverUrl} does not trust ${broker}`);
  if (metadata.resource !== audience) throw new Error(`${serverUrl} is ${metadata.resource}, not ${audience}`);
  return metadata;
}

/** The text of a tool call's first content item. */
function textOf(result: Awaited<ReturnType<Client['callTool']>>): string {
  const [first] = result.content as { type: string; text?: string }[];
  if (result.isError === true || first?.text === undefined) throw new Error(`tool call failed: ${first?.text}`);
  return first.text;
}

/**
 * Disables `userId` on the MCP server at `serverUrl` (audience `audience`, trusting the broker `broker`) as
 * one task of `tessera`, and reports each step.
 *
 * @example
 * const report = await offboard(tessera, { serverUrl, broker, audience: 'https://iam.example.com', userId: 'jdoe' });
 */
export async function offboard(
  tessera: Tessera,
  options: { serverUrl: string; broker: string; audience: string; userId: string },
): Promise<OffboardingReport> {
  const metadata = await discover(options.serverUrl, options.broker, options.audience);
  await using task = await tessera.task({
    description: `Disable the account of departed employee ${options.userId}`,
    justification: 'HR offboarding ticket 4711',
  });
  const transport = new StreamableHTTPClientTransport(new URL(options.serverUrl), {
    fetch: task.mcpFetch({ audience: metadata.resource, scope: 'iam:read-user' }),
  });
  const client = new Client({ name: 'tessera-example-offboarding', version: '1.0.0' });
  await client.connect(transport);
  try {
    const { tools } = await client.listTools();
    const user = { id: options.userId };
    const before = textOf(await client.callTool({ name: 'get-user', arguments: user }));
    const disabled = textOf(await client.callTool({ name: 'disable-user', arguments: user }));
    const after = textOf(await client.callTool({ name: 'get-user', arguments: user }));
    return { taskId: task.id, metadata, tools: tools.map((tool) => tool.name), before, disabled, after };
  } finally {
    await client.close();
  }
}
