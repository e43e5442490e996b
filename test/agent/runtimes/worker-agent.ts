/**
 * The task of `task-flow.ts` in a Worker: its bindings name the broker and hold the demo agent's private JWK
 * as a secret would (a Worker has no files); a `POST` with `{ "api": "<url>" }` runs the task and answers
 * its report.
 */
import { createTessera, type SelfSignedKey, selfSigned } from '@tessera/agent';
import { runTask } from './task-flow.ts';

interface Env {
  /** The broker's issuer URL. */
  TESSERA_BROKER: string;
  /** The agent's private JWK, as `wrangler secret put TESSERA_AGENT_KEY` stores it. */
  TESSERA_AGENT_KEY: string;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const tessera = createTessera({
      broker: env.TESSERA_BROKER,
      attestation: selfSigned({ agent: 'demo-agent', key: JSON.parse(env.TESSERA_AGENT_KEY) as SelfSignedKey }),
    });
    const { api } = (await request.json()) as { api: string };
    return Response.json(await runTask(tessera, api));
  },
};
