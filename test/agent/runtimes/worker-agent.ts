/**
 * An agent in a Worker, as docs/agents.md shows it: its bindings name the broker and hold the demo agent's
 * private JWK as a secret would (a Worker has no files). A `POST` with `{ "api": "<url>" }` reads a ticket
 * from that API (as the tickets API's audience) in a task, answers what the API answered, and completes
 * the task as it leaves the `await using` block.
 */
import { createTessera, type SelfSignedKey, selfSigned } from '@tessera/agent';

interface Env {
  TESSERA_BROKER: string;
  TESSERA_AGENT_KEY: string;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const tessera = createTessera({
      broker: env.TESSERA_BROKER,
      attestation: selfSigned({ agent: 'demo-agent', key: JSON.parse(env.TESSERA_AGENT_KEY) as SelfSignedKey }),
    });
    const { api } = (await request.json()) as { api: string };
    await using task = await tessera.task({ description: 'Summarise ticket T-1234' });
    // `return await`: leaving the block completes the task, so the call must have answered first.
    return await task.fetch(`${api}/tickets/T-1234`, {
      audience: 'https://tickets.example.com',
      scope: 'tickets:read',
    });
  },
};
