/**
 * An example downstream API: a tickets service that accepts Tessera tokens. Every route names the actions
 * it needs; `requireAgent` does the rest, offline: the signature against the broker's JWKS, `typ`, `iss`,
 * `aud`, expiry, the actions, a DPoP proof for a bound token, and the token's entry in the broker's status
 * list (revoked, its task finished, its agent suspended, the kill switch), with no call to the broker per
 * request.
 *
 * Run it next to the broker: `npx wrangler dev -c examples/tickets-api/wrangler.toml` (`npm run demo`
 * starts it); for a broker elsewhere than localhost:8787, add `--var TESSERA_ISSUER:<the broker's issuer>`.
 * In production, TESSERA_ISSUER is the broker's URL and TICKETS_AUDIENCE this API's audience. An API that
 * must know of a revocation at once adds `introspection: { credential }` (docs/verification.md).
 */
import { env } from 'cloudflare:workers';
import { StatusLists } from '@tessera/verify';
import { type AgentVariables, requireAgent } from '@tessera/verify/hono';
import { Hono } from 'hono';

const { TESSERA_ISSUER, TICKETS_AUDIENCE } = env as unknown as { TESSERA_ISSUER: string; TICKETS_AUDIENCE: string };

/** What every route checks; each adds the actions it needs. */
const tessera = {
  issuer: TESSERA_ISSUER,
  audience: TICKETS_AUDIENCE,
  // One cache of the broker's status lists for every route. A list is used 5 s at most (the broker's `ttl`,
  // 60 s, is the longest allowed): a revoked token is refused within 6 s. A list that cannot be had refuses.
  statusLists: new StatusLists({ maxAge: 5 }),
};

const app = new Hono<{ Variables: AgentVariables }>();

app.get('/tickets/:id', requireAgent({ ...tessera, actions: ['tickets:read'] }), (c) => {
  const agent = c.get('agent');
  return c.json({ id: c.req.param('id'), status: 'open', readBy: agent.sub, task: agent.task.id });
});

app.post('/tickets/:id/comments', requireAgent({ ...tessera, actions: ['tickets:comment'] }), async (c) => {
  const agent = c.get('agent');
  const { text } = await c.req.json<{ text?: string }>().catch(() => ({ text: undefined }));
  if (typeof text !== 'string' || text === '') return c.json({ error: 'text is required' }, 400);
  // What an audit trail downstream wants: which agent, on whose behalf, for which task, bound or not.
  return c.json(
    {
      ticket: c.req.param('id'),
      comment: text,
      by: agent.sub,
      owner: agent.owner,
      task: agent.task.id,
      boundToKey: agent.cnf !== undefined,
    },
    201,
  );
});

export default app;
