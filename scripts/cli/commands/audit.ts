/**
 * `audit list|verify|backlog|archive|export`: what was decided, whether the hash chains over it hold (across
 * D1 and the archive), what is still on its way to D1, the archive's segments, and a time range of records
 * from both for an auditor's file (`/admin/audit`).
 */

import { writeFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { z } from 'zod';
import { CliError } from '../errors';
import { download, request } from '../http';
import { jsonOption, pageLimit, required } from '../options';
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
/** A page as the broker sends it, every member kept: what `audit export` writes. */
const RawPage = z.object({
  records: z.array(
    z.looseObject({
      seq: z.number(),
      detail: z.unknown(),
      prev_hash: z.string().nullable(),
      hash: z.string().nullable(),
    }),
  ),
  next_cursor: z.string().nullable(),
});
const Verification = z.object({
  valid: z.boolean(),
  records: z.number(),
  head: z.object({ seq: z.number(), hash: z.string() }),
  chains: z.object({ checked: z.number(), records: z.number() }),
  archive: z.object({ segments: z.number(), records: z.number() }),
  problems: z.array(
    z.object({ seq: z.number(), chain: z.string().optional(), segment: z.number().optional(), problem: z.string() }),
  ),
});
const Segment = z.object({
  segment: z.number(),
  key: z.string(),
  first_seq: z.number(),
  last_seq: z.number(),
  records: z.number(),
  bytes: z.number(),
  sha256: z.string(),
  first_at: z.string(),
  last_at: z.string(),
  hash: z.string(),
  archived_at: z.string(),
});
const Segments = z.object({ segments: z.array(Segment) });
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
  hot_window: z.object({
    size_bytes: z.number(),
    budget_bytes: z.number(),
    hot_days: z.number(),
    records: z.number(),
    bytes_per_record: z.number().nullable(),
    oldest_days: z.number().nullable(),
    days_to_budget: z.number().nullable(),
    warning: z.string().nullable(),
  }),
  archive: z.object({ segments: z.number(), records: z.number(), last_archived_at: z.string().nullable() }),
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
  npm run cli -- audit verify --archive
  npm run cli -- audit backlog
  npm run cli -- audit archive
  npm run cli -- audit export --since 2026-11-01T00:00:00Z --until 2026-12-01T00:00:00Z --out november.ndjson`,
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
    .option('--archive', 'read every archive segment too, not only the segment chain as D1 lists it')
    .addOption(jsonOption())
    .action(async (options) => {
      const session = open();
      const report = await request(
        session,
        {
          method: 'GET',
          path: '/admin/audit/verify',
          query: { archive: options.archive ? 'full' : undefined },
          bearer: session.adminToken(ROLE),
        },
        { schema: Verification, role: ROLE },
      );
      const archived =
        report.archive.segments === 0
          ? ''
          : `; the archive: ${report.archive.segments} segments${options.archive ? `, ${report.archive.records} records read` : ' (their chain as listed; --archive reads them)'}`;
      if (options.json) session.io.out(jsonText(report));
      else if (report.valid)
        session.io.out(
          `the audit chain holds: ${report.records} records, head seq ${report.head.seq} (${report.head.hash}); ${report.chains.checked} decision-time chains, ${report.chains.records} records${archived}\n`,
        );
      else
        session.io.out(
          table(
            ['CHAIN', 'SEQ', 'PROBLEM'],
            report.problems.map((problem) => [
              problem.chain ?? (problem.segment === undefined ? 'seals' : `segment ${problem.segment}`),
              String(problem.seq),
              problem.problem,
            ]),
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
      const hot = backlog.hot_window;
      const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
      session.io.out(
        `hot window: ${mb(hot.size_bytes)} of ${mb(hot.budget_bytes)}, ${hot.records} records${hot.bytes_per_record === null ? '' : ` (${hot.bytes_per_record} bytes each)`}${hot.oldest_days === null ? '' : `, the oldest ${hot.oldest_days.toFixed(1)} days old (kept ${hot.hot_days})`}${hot.days_to_budget === null ? '' : `; the budget in ${hot.days_to_budget.toFixed(1)} days at the last hour's rate`}\n`,
      );
      if (hot.warning !== null) session.io.out(`warning: ${hot.warning}\n`);
      session.io.out(`archive: ${backlog.archive.segments} segments, ${backlog.archive.records} records\n`);
      if (dead.count > 0)
        session.io.out(
          `dead letters: ${dead.count} in R2 (dead-letters/), the oldest ${age(dead.oldest_seconds)} old\n`,
        );
    });

  command
    .command('archive')
    .description('the archive: segments of records moved from D1 to R2, oldest first (role admin or auditor)')
    .addOption(jsonOption())
    .action(async (options) => {
      const session = open();
      const { segments } = await request(
        session,
        { method: 'GET', path: '/admin/audit/archive', bearer: session.adminToken(ROLE) },
        { schema: Segments, role: ROLE },
      );
      if (options.json) {
        session.io.out(jsonText({ segments }));
        return;
      }
      session.io.out(
        table(
          ['SEGMENT', 'SEQ', 'RECORDS', 'FROM', 'TO', 'BYTES', 'SHA-256'],
          segments.map((segment) => [
            String(segment.segment),
            `${segment.first_seq}-${segment.last_seq}`,
            String(segment.records),
            segment.first_at,
            segment.last_at,
            String(segment.bytes),
            segment.sha256.slice(0, 16),
          ]),
          'nothing is archived yet',
        ),
      );
    });

  command
    .command('export')
    .description('every record of a time range, from the archive and D1, as NDJSON (role admin or auditor)')
    .addOption(
      required('--since <time>', 'from this instant: ISO 8601, or a time ago (15m, 2h, 7d)').argParser(auditTime),
    )
    .addOption(required('--until <time>', 'up to this instant: ISO 8601, or a time ago').argParser(auditTime))
    .option('--out <file>', 'write to this file (default: standard output)')
    .action(async (options) => {
      const session = open();
      const bearer = session.adminToken(ROLE);
      const from = Date.parse(options.since);
      const to = Date.parse(options.until);
      const lines: { seq: number; line: string }[] = [];
      const { segments } = await request(
        session,
        { method: 'GET', path: '/admin/audit/archive', bearer },
        { schema: Segments, role: ROLE },
      );
      for (const segment of segments) {
        if (Date.parse(segment.last_at) < from || Date.parse(segment.first_at) > to) continue;
        const { bytes, headers } = await download(
          session,
          { method: 'GET', path: `/admin/audit/archive/${segment.segment}`, bearer },
          { role: ROLE },
        );
        if (headers.get('x-tessera-segment-sha256') !== segment.sha256)
          throw new CliError(`segment ${segment.segment} did not arrive as the broker lists it`);
        for (const line of gunzipSync(bytes).toString('utf8').split('\n')) {
          if (line.length === 0) continue;
          const record = JSON.parse(line) as { seq: number; at: number };
          if (record.at >= from && record.at <= to) lines.push({ seq: record.seq, line });
        }
      }
      // The hot window: D1's records as the API gives them, in the archive's form (detail as its JSON text).
      let cursor: string | undefined;
      do {
        const page = await request(
          session,
          {
            method: 'GET',
            path: '/admin/audit',
            query: { since: options.since, until: options.until, limit: '500', cursor },
            bearer,
          },
          { schema: RawPage, role: ROLE },
        );
        for (const { prev_hash, hash, detail, ...record } of page.records) {
          const row = {
            ...record,
            detail: detail === null ? null : JSON.stringify(detail),
            seal_prev_hash: prev_hash,
            seal_hash: hash,
          };
          lines.push({ seq: record.seq, line: JSON.stringify(row) });
        }
        cursor = page.next_cursor ?? undefined;
      } while (cursor !== undefined);
      const seen = new Set<number>();
      const text = lines
        .sort((a, b) => a.seq - b.seq)
        .filter(({ seq }) => !seen.has(seq) && seen.add(seq))
        .map(({ line }) => `${line}\n`)
        .join('');
      if (options.out === undefined) session.io.out(text);
      else {
        await writeFile(options.out, text);
        session.io.out(`${seen.size} records from ${options.since} to ${options.until} written to ${options.out}\n`);
      }
    });

  return command;
}
