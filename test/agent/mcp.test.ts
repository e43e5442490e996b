/**
 * MCP with Tessera, end to end (MCP authorization 2026-07-28, RFC 9728): the example IAM MCP server
 * (`examples/mcp-server/`, `@tessera/verify/mcp`) against a test broker, and the example agent
 * (`examples/mcp-agent/`, the MCP SDK's client with `task.mcpFetch`). The agent discovers the server's
 * metadata, lists and calls tools, steps up on `403 insufficient_scope` through a human's approval, and
 * completes the task, after which its tokens are dead.
 */
import type { PendingApproval } from '@tessera/agent';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { offboard } from '../../examples/mcp-agent/agent';
import { IAM_AUDIENCE, type RunningMcpServer, startMcpServer } from '../../examples/mcp-server/server';
import { decide, demoTessera, isActive } from './demo';

const broker = inject('agentBrokerUrl');

let server: RunningMcpServer;

beforeAll(async () => {
  server = await startMcpServer({ issuer: broker });
});

afterAll(async () => {
  await server.close();
});

/** One request the agent sent to the MCP server: the token it carried and the status it got. */
interface Sent {
  token: string | undefined;
  status: number;
  challenge: string | null;
}

describe('the example MCP server (RFC 9728, MCP authorization)', () => {
  it('serves protected resource metadata naming the broker and every action of its tools', async () => {
    const metadataUrl = server.url.replace('/mcp', '/.well-known/oauth-protected-resource/mcp');
    const response = await fetch(metadataUrl);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      resource: IAM_AUDIENCE,
      authorization_servers: [broker],
      scopes_supported: ['iam:disable-user', 'iam:read-user'],
      bearer_methods_supported: ['header'],
    });
  });

  it('answers a request without a token 401 with resource_metadata', async () => {
    const response = await fetch(server.url, { method: 'POST', body: '{}' });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe(
      `Bearer resource_metadata="${server.url.replace('/mcp', '/.well-known/oauth-protected-resource/mcp')}"`,
    );
  });
});

describe('the example agent, with task.mcpFetch', () => {
  it('discovers the server, calls its tools, steps up on insufficient_scope, and completes the task', async () => {
    const sent: Sent[] = [];
    const told: PendingApproval[] = [];
    const tessera = demoTessera(broker, {
      fetch: async (input, init) => {
        const response = await fetch(input, init);
        if (String(input) === server.url) {
          const authorization = new Headers(init?.headers).get('authorization');
          const challenge = response.headers.get('www-authenticate');
          sent.push({ token: authorization?.split(' ')[1], status: response.status, challenge });
        }
        return response;
      },
      onApproval: async (pending) => {
        told.push(pending);
        await decide(broker, pending.approvalId, 'approve');
      },
    });

    const report = await offboard(tessera, { serverUrl: server.url, broker, audience: IAM_AUDIENCE, userId: 'jdoe' });

    expect(report.metadata.resource).toBe(IAM_AUDIENCE);
    expect(report.tools.sort()).toEqual(['disable-user', 'get-user']);
    expect(JSON.parse(report.before)).toMatchObject({ id: 'jdoe', active: true });
    expect(report.disabled).toBe('disabled jdoe');
    expect(JSON.parse(report.after)).toMatchObject({ id: 'jdoe', active: false });
    expect(server.disabled.get('jdoe')).toBe(report.taskId);

    // One 403 insufficient_scope, naming the tool's action; one approval, for the union of the scopes.
    const refused = sent.filter((request) => request.status === 403);
    expect(refused).toHaveLength(1);
    expect(refused[0]?.challenge).toContain('error="insufficient_scope"');
    expect(refused[0]?.challenge).toContain('scope="iam:disable-user"');
    expect(told).toEqual([
      expect.objectContaining({
        taskId: report.taskId,
        audience: IAM_AUDIENCE,
        scope: 'iam:disable-user iam:read-user',
      }),
    ]);

    const tokens = [...new Set(sent.map((request) => request.token))];
    expect(tokens).toHaveLength(2);
    const [first, stepped] = tokens.map((token) => decodeJwt(token as string));
    expect(first).toMatchObject({ aud: IAM_AUDIENCE, scope: 'iam:read-user', task: { id: report.taskId } });
    expect(stepped).toMatchObject({
      aud: IAM_AUDIENCE,
      scope: 'iam:disable-user iam:read-user',
      task: { id: report.taskId },
      approval: { id: told[0]?.approvalId },
    });
    expect(sent.every((request) => request.status < 400 || request.status === 403)).toBe(true);

    // Completing the task (the agent's `await using`) killed both.
    for (const token of tokens) expect(await isActive(broker, token as string, IAM_AUDIENCE)).toBe(false);
  });
});
