/**
 * A downstream API's use of @tessera/verify, written as its users write it, and compiled by the package test
 * (`../verify-package.test.ts`) as ESM and as CommonJS in a project that installed the packed tarball.
 *
 * Usage: `node consumer.js <issuer> <audience> <introspection credential> <token>`. Verifies the token with
 * `verifyAgentToken` (asking the broker by introspection too, as the API `audience`), refuses it for another audience, passes it through `requireAgent` on a
 * Hono route and through an MCP server's `authorize` for a tool it grants and one it does not, and prints what it
 * saw as one line of JSON.
 */
import { VerifyError, verifyAgentToken } from '@tessera/verify';
import { type AgentVariables, requireAgent } from '@tessera/verify/hono';
import { mcpResource } from '@tessera/verify/mcp';
import { Hono } from 'hono';

async function main(): Promise<void> {
  const [issuer, audience, credential, token] = process.argv.slice(2);
  if (issuer === undefined || audience === undefined || credential === undefined || token === undefined) {
    throw new TypeError('usage: consumer <issuer> <audience> <introspection credential> <token>');
  }
  const introspection = { credential };
  const claims = await verifyAgentToken(token, { issuer, audience, actions: ['tickets:comment'], introspection });
  const refused = await verifyAgentToken(token, { issuer, audience: 'https://elsewhere.example' }).then(
    () => 'accepted',
    (error: unknown) => (error instanceof VerifyError ? error.code : String(error)),
  );

  const app = new Hono<{ Variables: AgentVariables }>();
  app.post('/tickets/:id/comments', requireAgent({ issuer, audience, actions: ['tickets:comment'] }), (c) =>
    c.json({ by: c.get('agent').sub, task: c.get('agent').task.id }, 201),
  );
  const comment = (headers: Record<string, string>) =>
    app.request('/tickets/T-1234/comments', { method: 'POST', headers });
  const accepted = await comment({ authorization: `Bearer ${token}` });
  const withoutToken = await comment({});

  const mcp = mcpResource({
    issuer,
    audience,
    tools: { 'comment-on-ticket': ['tickets:comment'], 'close-ticket': ['tickets:close'] },
  });
  const toolCall = { authorization: `Bearer ${token}`, dpop: undefined, method: 'POST', url: `${audience}/mcp` };
  const commented = await mcp.authorize(toolCall, 'comment-on-ticket');
  const closed = await mcp.authorize(toolCall, 'close-ticket');

  console.log(
    JSON.stringify({
      claims: { sub: claims.sub, owner: claims.owner, task: claims.task.id },
      otherAudience: refused,
      route: { status: accepted.status, body: await accepted.json() },
      routeWithoutToken: withoutToken.status,
      mcp: { comment: commented.ok, close: closed.ok ? 200 : closed.response.status },
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
