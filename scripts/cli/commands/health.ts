/** `health`: is the broker up (`GET /healthz`)? Liveness only: it touches no store. */
import { Command } from '@commander-js/extra-typings';
import { z } from 'zod';
import { request } from '../http';
import { jsonOption } from '../options';
import { jsonText } from '../render';
import type { Session } from '../session';

const Health = z.object({ status: z.literal('ok'), issuer: z.string(), policy: z.string() });

export function healthCommand(open: () => Session): Command {
  return new Command('health')
    .description('whether the broker is up with a valid policy (GET /healthz; no credential needed)')
    .addOption(jsonOption())
    .addHelpText(
      'after',
      `
Liveness only: the broker answers without touching a store, so "ok" says nothing about its Durable
Objects, D1 or signing keys (/token checks those on every request, and refuses with 503 when they fail).`,
    )
    .action(async (options) => {
      const session = open();
      const health = await request(session, { method: 'GET', path: '/healthz' }, { schema: Health });
      if (options.json) session.io.out(jsonText(health));
      else
        session.io.out(
          `ok: the broker at ${session.url} is up (issuer ${health.issuer}, policy ${health.policy}); liveness only, no store checked\n`,
        );
    });
}
