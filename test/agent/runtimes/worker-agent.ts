/**
 * The task of `task-flow.ts` in a Worker: its bindings name the broker and hold the demo agent's key (a
 * Worker has no files); a `POST` with `{ "api": "<url>" }` runs the task and answers its report.
 */
import { createTessera, selfSigned } from '@tessera/agent';
import type { JWK } from 'jose';
import { runTask } from './task-flow.ts';

interface Env {
  BROKER: string;
  AGENT_KEY: JWK;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const { api } = (await request.json()) as { api: string };
    const tessera = createTessera({
      broker: env.BROKER,
      attestation: selfSigned({ agent: 'demo-agent', key: env.AGENT_KEY }),
    });
    return Response.json(await runTask(tessera, api));
  },
};
