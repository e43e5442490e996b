/**
 * `audit list|verify|backlog`: what was decided, whether the hash chains over it hold, and what is still on
 * its way to D1 (`/admin/audit`).
 */
import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { z } from 'zod';
import { CliError } from '../errors';
import { request } from '../http';
import { jsonOption, pageLimit } from '../options';
import { instant, jsonText, table } from '../render';
import type { Session } from '../session';

const AuditRecord = z.object({
  seq: z.number(),
  at: z.number(),
  event: z.string(),
  decision: z.string(),
  error_code: z.string().nullable(),
  reason: z.string().nullable(),
  agent: z.string().nullable(),
  audience: z.string().nullable(),
  granted_actions: z.string().nullable(),
  task_id: z.string().nullable(),
  actor: z.string().nullable(),
  target: z.string().nullable(),
  admin_reason: z.string().nullable(),
});
type AuditRecord = z.infer<typeof AuditRecord>;

const Page = z.object({ records: z.array(AuditRecord), next_cursor: z.string().nullable() });
const Verification = z.object({
  valid: z.boolean(),
  records: z.number(),
  head: z.object({ seq: z.number(), hash: z.string() }),
  chains: z.object({ checked: z.number(), records: z.number() }),
  problems: z.array(z.object({ seq: z.number(), chain: z.string().optional(), problem: z.string() })),
});
const Backlog = z.object({
  waiting: z.number(),
  oldest_waiting_seconds: z.number().nullable(),
  chains: z.array(
    z.object({
      chain: z.string(),
      waiting: z.number(),
      unconfirmed: z.number(),
      oldest_waiting_seconds: z.number().nullable(),
      failures: z.number(),
      last_error: z.string().nullable(),
    }),
  ),
  d1: z.object({
    write_queries: z.number(),
    records_written: z.number(),
    retried_deliveries: z.number(),
    last_write_at: z.string().nullable(),
  }),
  dead_letters: z.object({ count: z.number(), oldest_seconds: z.number().nullable() }),
});

const ROLE = 'admin or auditor';
const UNITS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;

/** An instant for `since`/`until`: ISO 8601 with an offset, or a time ago (`90s`, `15m`, `2h`, `7d`). */
export function auditTime(value: string): string {
  const ago = /^([1-9][0-9]{0,6})([smhd])$/.exec(value);
  if (ago) return new Date(Date.now() - Number(ago[1]) * UNITS[ago[2] as keyof typeof UNITS] * 1000).toISOString();
  if (z.iso.datetime({ offset: true }).safeParse(value).success) return value;
  throw new InvalidArgumentError(
    'expected ISO 8601 with an offset (2026-11-20T03:00:00Z) or a time ago (15m, 2h, 7d).',
  );
}

function auditCursor(value: string): string {
  if (!/^[1-9][0-9]{0,14}$/.test(value))
    throw new InvalidArgumentError('expected the next_cursor of a page (a number).');
  return value;
}

/** What the record was about: the admin action's target, else the task or the API. */
function subject(record: AuditRecord): string {
  return record.target ?? record.task_id ?? record.audience ?? '';
}

/** Why: a refusal's code and reason, an admin's reason, or the actions granted. */
function why(record: AuditRecord): string {
  if (record.decision === 'refused') return [record.error_code, record.reason].filter(Boolean).join(': ');
  return record.admin_reason ?? record.granted_actions ?? '';
}

export function auditCommand(open: () => Session): Command {
  const command = new Command('audit')
    .description('the audit log: every decision, granted or refused, and the hash chain over it')
    .addHelpText(
      'after',
      `
Examples:
  npm run cli -- audit list --agent demo-agent --decision refused --since 1h
  npm run cli -- audit list --event admin.kill_switch.set --all --json
  npm run cli -- audit verify
  npm run cli -- audit backlog`,
    );

  command
    .command('list')
    .description('records, newest first, with the filters of GET /admin/audit (role admin or auditor)')
    .option('--agent <agent>', 'only this agent')
    .option('--task <task-id>', 'only this task')
    .addOption(new Option('--decision <decision>', 'only these').choices(['granted', 'refused'] as const))
    .option('--event <event>', 'only this event (token.exchange, token.revoke, admin.agent.suspend, ...)')
    .option('--since <time>', 'from this instant: ISO 8601, or a time ago (15m, 2h, 7d)', auditTime)
    .option('--until <time>', 'up to this instant: ISO 8601, or a time ago', auditTime)
    .option('--limit <n>', 'records per page, 1 to 500 (default 50)', pageLimit)
    .option('--cursor <cursor>', 'the next_cursor of the previous page', auditCursor)
    .option('--all', 'follow next_cursor to the end')
    .addOption(jsonOption())
    .action(async (options) => {
      const session = open();
      const bearer = session.adminToken(ROLE);
      const query = {
        agent: options.agent,
        task: options.task,
        decision: options.decision,
        event: options.event,
        since: options.since,
        until: options.until,
        limit: options.limit?.toString(),
      };
      const records: AuditRecord[] = [];
      let cursor = options.cursor;
      let page: z.infer<typeof Page>;
      do {
        page = await request(
          session,
          { method: 'GET', path: '/admin/audit', query: { ...query, cursor }, bearer },
          { schema: Page, role: ROLE },
        );
        records.push(...page.records);
        cursor = page.next_cursor ?? undefined;
      } while (options.all && cursor !== undefined);
      if (options.json) {
        session.io.out(jsonText(options.all ? { records, next_cursor: null } : page));
        return;
      }
      session.io.out(
        table(
          ['SEQ', 'TIME', 'EVENT', 'DECISION', 'AGENT', 'BY', 'ON', 'WHY'],
          records.map((record) => [
            String(record.seq),
            instant(record.at),
            record.event,
            record.decision,
            record.agent ?? '',
            record.actor ?? '',
            subject(record),
            why(record),
          ]),
          'no records match',
        ),
      );
      if (!options.all && page.next_cursor !== null)
        session.io.out(`more records: add --cursor ${page.next_cursor}, or --all\n`);
    });

  command
    .command('verify')
    .description('seal what is new and check that no record was changed or deleted (role admin or auditor)')
    .addOption(jsonOption())
    .action(async (options) => {
      const session = open();
      const report = await request(
        session,
        { method: 'GET', path: '/admin/audit/verify', bearer: session.adminToken(ROLE) },
        { schema: Verification, role: ROLE },
      );
      if (options.json) session.io.out(jsonText(report));
      else if (report.valid)
        session.io.out(
          `the audit chain holds: ${report.records} records, head seq ${report.head.seq} (${report.head.hash}); ${report.chains.checked} decision-time chains, ${report.chains.records} records\n`,
        );
      else
        session.io.out(
          table(
            ['CHAIN', 'SEQ', 'PROBLEM'],
            report.problems.map((problem) => [problem.chain ?? 'seals', String(problem.seq), problem.problem]),
            'no problems listed',
          ),
        );
      if (!report.valid)
        throw new CliError(
          `the audit chain is broken: ${report.problems.length} problems (records changed or deleted)`,
        );
    });

  command
    .command('backlog')
    .description('records committed and not yet in D1, and what the D1 writer has done (role admin or auditor)')
    .addOption(jsonOption())
    .action(async (options) => {
      const session = open();
      const backlog = await request(
        session,
        { method: 'GET', path: '/admin/audit/backlog', bearer: session.adminToken(ROLE) },
        { schema: Backlog, role: ROLE },
      );
      if (options.json) {
        session.io.out(jsonText(backlog));
        return;
      }
      const age = (seconds: number | null) => (seconds === null ? '' : `${seconds.toFixed(1)} s`);
      session.io.out(
        backlog.waiting === 0
          ? 'nothing waits for D1\n'
          : `${backlog.waiting} records wait for D1, the oldest for ${age(backlog.oldest_waiting_seconds)}\n`,
      );
      if (backlog.chains.length > 0)
        session.io.out(
          table(
            ['CHAIN', 'WAITING', 'UNCONFIRMED', 'OLDEST', 'FAILURES', 'LAST ERROR'],
            backlog.chains.map((chain) => [
              chain.chain,
              String(chain.waiting),
              String(chain.unconfirmed),
              age(chain.oldest_waiting_seconds),
              String(chain.failures),
              chain.last_error ?? '',
            ]),
            '',
          ),
        );
      const { d1, dead_letters: dead } = backlog;
      session.io.out(
        `D1: ${d1.write_queries} write queries, ${d1.records_written} records written, ${d1.retried_deliveries} deliveries retried\n`,
      );
      if (dead.count > 0)
        session.io.out(
          `dead letters: ${dead.count} in R2 (dead-letters/), the oldest ${age(dead.oldest_seconds)} old\n`,
        );
    });

  return command;
}
