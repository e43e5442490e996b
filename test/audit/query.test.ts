/**
 * `GET /admin/audit` (spec: "Audit"): the audit log, newest first, paginated by an opaque cursor, filtered by
 * agent, task, decision, event and time; every read is itself audited; and the log is append-only at the
 * database, so a record once written cannot be changed or removed.
 */
import { env, exports } from 'cloudflare:workers';
import { beforeAll, describe, expect, it } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import type { AuditEvent } from '../../worker/audit/schema';
import { attestation } from '../helpers/attestation';
import { auditRecords, drainAudit, lastAudit } from '../helpers/audit';
import { DEMO_AGENT, GRAPH, ISSUER } from '../helpers/demo';
import { exchange, readError } from '../helpers/requests';

interface AuditPage {
  records: Record<string, unknown>[];
  next_cursor: string | null;
}

/** GET /admin/audit with `params`, as `credential` (the demo auditor by default). */
function readAudit(params: Record<string, string> | string = {}, credential = creds.auditor): Promise<Response> {
  const query = new URLSearchParams(params).toString();
  return exports.default.fetch(`${ISSUER}/admin/audit${query === '' ? '' : `?${query}`}`, {
    headers: { authorization: `Bearer ${credential}` },
  });
}

/** Reads one page and checks it answered 200 in the documented shape. */
async function page(params: Record<string, string> = {}): Promise<AuditPage> {
  const response = await readAudit(params);
  const body = (await response.json()) as AuditPage;
  expect(response.status, JSON.stringify(body)).toBe(200);
  expect(response.headers.get('cache-control')).toBe('no-store');
  expect(Array.isArray(body.records)).toBe(true);
  expect(body.next_cursor === null || typeof body.next_cursor === 'string').toBe(true);
  return body;
}

const seqs = (records: readonly { seq?: unknown }[]) => records.map((record) => record.seq as number);

/** Waits long enough that the next record's `at` (epoch milliseconds) is later than the last one's. */
const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

const iso = (epochMs: number) => new Date(epochMs).toISOString();

/** The same instant as `iso(epochMs)`, written with a +02:00 offset. */
function isoPlusTwo(epochMs: number): string {
  return new Date(epochMs + 2 * 3600 * 1000).toISOString().replace('Z', '+02:00');
}

const RUN = crypto.randomUUID().slice(0, 8);
const TASK_A = `audit-a-${RUN}`;
const TASK_B = `audit-b-${RUN}`;
const TASK_C = `audit-c-${RUN}`;

/** The records written by `beforeAll`, oldest first. */
const fixture: {
  taskAGranted?: AuditEvent;
  taskARefused?: AuditEvent;
  taskBGranted?: AuditEvent;
  taskCRefused?: AuditEvent;
  agentRead?: AuditEvent;
  anonymousRead?: AuditEvent;
} = {};

function record(name: keyof typeof fixture): AuditEvent {
  const found = fixture[name];
  if (found === undefined) throw new Error(`fixture record ${name} missing`);
  return found;
}

/** Sends one request, checks its status, and returns the audit record it wrote. */
async function recorded(send: () => Promise<Response>, status: number): Promise<AuditEvent> {
  const before = (await auditRecords()).length;
  const response = await send();
  expect(response.status, await response.text()).toBe(status);
  const after = await auditRecords();
  expect(after.length).toBe(before + 1);
  await tick();
  return after.at(-1) as AuditEvent;
}

beforeAll(async () => {
  const task = (id: string) => ({ description: `Audit listing fixture ${id}`, id });
  fixture.taskAGranted = await recorded(() => exchange({ task: task(TASK_A), scope: 'tickets:read' }), 200);
  // Refused by policy: attack-path analysis needs a written justification.
  fixture.taskARefused = await recorded(
    () => exchange({ task: task(TASK_A), audience: GRAPH, scope: 'graph:attack-path' }),
    400,
  );
  fixture.taskBGranted = await recorded(() => exchange({ task: task(TASK_B) }), 200);
  // Refused at the verification gate, before the agent is known.
  const now = Math.floor(Date.now() / 1000);
  const expired = await attestation({ claims: { iat: now - 900, exp: now - 600 } });
  fixture.taskCRefused = await recorded(() => exchange({ task: task(TASK_C), subject_token: expired }), 400);
  fixture.agentRead = await recorded(
    () =>
      exports.default.fetch(`${ISSUER}/admin/agents/release-bot`, {
        headers: { authorization: `Bearer ${creds.auditor}` },
      }),
    200,
  );
  fixture.anonymousRead = await recorded(() => exports.default.fetch(`${ISSUER}/admin/kill-switch`), 401);

  expect(record('taskAGranted')).toMatchObject({ decision: 'granted', agent: DEMO_AGENT, taskId: TASK_A });
  expect(record('taskARefused')).toMatchObject({ decision: 'refused', agent: DEMO_AGENT, taskId: TASK_A });
  expect(record('taskBGranted')).toMatchObject({ decision: 'granted', agent: DEMO_AGENT, taskId: TASK_B });
  expect(record('taskCRefused')).toMatchObject({ decision: 'refused', agent: null, taskId: TASK_C });
  expect(record('agentRead')).toMatchObject({ event: 'admin.agent.read', agent: 'release-bot' });
  expect(record('anonymousRead')).toMatchObject({ event: 'admin.kill_switch.read', decision: 'refused' });
});

/** The fixture, newest first, as the API should list it. */
function fixtureNewestFirst(): AuditEvent[] {
  return [
    record('anonymousRead'),
    record('agentRead'),
    record('taskCRefused'),
    record('taskBGranted'),
    record('taskARefused'),
    record('taskAGranted'),
  ];
}

/**
 * Reads with `params` (one page of up to 500) and checks the answer is exactly the records, newest first, that
 * `matches` selects from the log as it stood just before the read. Returns them.
 */
async function expectListed(
  params: Record<string, string>,
  matches: (record: AuditEvent) => boolean,
): Promise<Record<string, unknown>[]> {
  const log = await auditRecords();
  const expected = log.filter(matches).reverse();
  const body = await page({ ...params, limit: '500' });
  expect(seqs(body.records)).toEqual(seqs(expected));
  expect(body.next_cursor).toBeNull();
  return body.records;
}

describe('GET /admin/audit: order and shape', () => {
  it('lists the newest record first', async () => {
    const body = await page({ limit: '500' });
    const listed = seqs(body.records);
    expect(listed.length).toBeGreaterThanOrEqual(6);
    expect(listed).toEqual([...listed].sort((a, b) => b - a));
    const times = body.records.map((r) => r.at as number);
    expect(times).toEqual([...times].sort((a, b) => b - a));
    const fixtureSeqs = new Set(seqs(fixtureNewestFirst()));
    expect(listed.filter((seq) => fixtureSeqs.has(seq))).toEqual(seqs(fixtureNewestFirst()));
  });

  it('shows every column of a record under its D1 (snake_case) name', async () => {
    const granted = record('taskAGranted');
    const [listed] = (await page({ task: TASK_A, decision: 'granted' })).records;
    const row = await env.AUDIT_DB.prepare('SELECT * FROM audit_events WHERE seq = ?')
      .bind(granted.seq)
      .first<Record<string, unknown>>();
    expect(row).not.toBeNull();
    // Every D1 column, plus the record's place in the hash chain (null until the sealer reaches it).
    expect(Object.keys(listed ?? {}).sort()).toEqual([...Object.keys(row ?? {}), 'prev_hash', 'hash'].sort());
    expect(listed).toMatchObject({
      seq: granted.seq,
      id: granted.id,
      at: granted.at,
      event: 'token.exchange',
      decision: 'granted',
      error_code: null,
      agent: DEMO_AGENT,
      owner: 'alice@example.com',
      task_id: TASK_A,
      token_jti: granted.tokenJti,
      token_exp: granted.tokenExp,
      granted_actions: 'tickets:read',
      policy_version: granted.policyVersion,
      actor: null,
    });
  });

  it('returns detail as parsed JSON, and null where a record has none', async () => {
    const granted = record('taskAGranted');
    const refused = record('taskARefused');
    const { records } = await page({ task: TASK_A });
    const [newest, oldest] = records;
    expect(typeof oldest?.detail).toBe('object');
    expect(oldest?.detail).toEqual(JSON.parse(granted.detail ?? 'null'));
    expect(oldest?.detail).toMatchObject({ ttl: 300 });
    expect(newest?.detail).toEqual(JSON.parse(refused.detail ?? 'null'));
    expect(newest).toMatchObject({ error_code: 'invalid_scope', reason: 'justification_required' });

    const agentRead = record('agentRead');
    expect(agentRead.detail).toBeNull();
    const [listedRead] = (await page({ agent: 'release-bot' })).records;
    expect(listedRead).toMatchObject({ seq: agentRead.seq, detail: null });
  });
});

describe('GET /admin/audit: pagination', () => {
  it('walks every record exactly once, page by page, and ends with next_cursor null', async () => {
    const log = seqs(await auditRecords()).reverse();
    const walked: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const body: AuditPage = await page(cursor === null ? { limit: '4' } : { limit: '4', cursor });
      expect(body.records.length).toBeLessThanOrEqual(4);
      walked.push(...seqs(body.records));
      cursor = body.next_cursor;
      pages += 1;
      expect(pages).toBeLessThanOrEqual(Math.ceil(log.length / 4));
    } while (cursor !== null);
    expect(new Set(walked).size).toBe(walked.length);
    expect(walked).toEqual(log);
    expect(pages).toBe(Math.ceil(log.length / 4));
  });

  it('walks a filtered listing the same way', async () => {
    const log = (await auditRecords()).filter((r) => r.agent === DEMO_AGENT).reverse();
    expect(log.length).toBeGreaterThanOrEqual(3);
    const walked: number[] = [];
    let cursor: string | null = null;
    do {
      const params: Record<string, string> = { agent: DEMO_AGENT, limit: '1' };
      if (cursor !== null) params.cursor = cursor;
      const body: AuditPage = await page(params);
      expect(body.records).toHaveLength(1);
      walked.push(...seqs(body.records));
      cursor = body.next_cursor;
    } while (cursor !== null);
    expect(walked).toEqual(seqs(log));
  });

  it('gives no next_cursor when the page holds exactly the last matching records', async () => {
    const full = await page({ task: TASK_A, limit: '2' });
    expect(seqs(full.records)).toEqual([record('taskARefused').seq, record('taskAGranted').seq]);
    expect(full.next_cursor).toBeNull();

    const first = await page({ task: TASK_A, limit: '1' });
    expect(seqs(first.records)).toEqual([record('taskARefused').seq]);
    expect(first.next_cursor).not.toBeNull();
    const second = await page({ task: TASK_A, limit: '1', cursor: first.next_cursor ?? '' });
    expect(seqs(second.records)).toEqual([record('taskAGranted').seq]);
    expect(second.next_cursor).toBeNull();
  });

  it('does not let records written during a walk shift its pages', async () => {
    const first = await page({ limit: '2' });
    expect(first.next_cursor).not.toBeNull();
    // New records arrive between pages (this read and others).
    await exchange({ task: { description: 'Written mid-walk', id: `audit-mid-${RUN}` } });
    const second = await page({ limit: '2', cursor: first.next_cursor ?? '' });
    const firstSeqs = seqs(first.records);
    const lowest = Math.min(...firstSeqs);
    expect(seqs(second.records).every((seq) => seq < lowest)).toBe(true);
    expect(seqs(second.records)).toHaveLength(2);
  });

  it('returns 50 records by default and up to 500 on request', async () => {
    // Refused anonymous calls are the cheapest records to write.
    while ((await auditRecords()).length <= 60) {
      expect((await exports.default.fetch(`${ISSUER}/admin/kill-switch`)).status).toBe(401);
    }
    const total = (await auditRecords()).length;
    const byDefault = await page();
    expect(byDefault.records).toHaveLength(50);
    expect(byDefault.next_cursor).not.toBeNull();
    await drainAudit();
    const large = await page({ limit: '500' });
    expect(large.records).toHaveLength(Math.min(total + 1, 500));
  });
});

describe('GET /admin/audit: filters', () => {
  it('filters by agent', async () => {
    const listed = await expectListed({ agent: 'release-bot' }, (r) => r.agent === 'release-bot');
    expect(seqs(listed)).toEqual([record('agentRead').seq]);
    const demo = await expectListed({ agent: DEMO_AGENT }, (r) => r.agent === DEMO_AGENT);
    expect(seqs(demo)).toEqual(
      expect.arrayContaining([record('taskAGranted').seq, record('taskARefused').seq, record('taskBGranted').seq]),
    );
    expect(seqs(demo)).not.toContain(record('taskCRefused').seq);
  });

  it('filters by task', async () => {
    const listed = await expectListed({ task: TASK_A }, (r) => r.taskId === TASK_A);
    expect(seqs(listed)).toEqual([record('taskARefused').seq, record('taskAGranted').seq]);
    expect(seqs(await expectListed({ task: TASK_C }, (r) => r.taskId === TASK_C))).toEqual([
      record('taskCRefused').seq,
    ]);
  });

  it('filters by decision', async () => {
    const refused = await expectListed({ decision: 'refused' }, (r) => r.decision === 'refused');
    expect(refused.every((r) => r.decision === 'refused')).toBe(true);
    expect(seqs(refused)).toEqual(
      expect.arrayContaining([record('taskARefused').seq, record('taskCRefused').seq, record('anonymousRead').seq]),
    );
    const granted = await expectListed({ decision: 'granted' }, (r) => r.decision === 'granted');
    expect(seqs(granted)).toEqual(
      expect.arrayContaining([record('taskAGranted').seq, record('taskBGranted').seq, record('agentRead').seq]),
    );
    expect(seqs(granted)).not.toContain(record('taskARefused').seq);
  });

  it('filters by event', async () => {
    const reads = await expectListed({ event: 'admin.agent.read' }, (r) => r.event === 'admin.agent.read');
    expect(seqs(reads)).toEqual([record('agentRead').seq]);
    const exchanges = await expectListed({ event: 'token.exchange' }, (r) => r.event === 'token.exchange');
    expect(exchanges.length).toBeGreaterThanOrEqual(4);
    expect(seqs(exchanges)).not.toContain(record('agentRead').seq);
  });

  it('filters by time: since and until are inclusive, ISO 8601 with an offset', async () => {
    const from = record('taskARefused');
    const to = record('taskCRefused');
    expect(from.at).toBeLessThan(to.at);
    const between = [record('taskCRefused').seq, record('taskBGranted').seq, record('taskARefused').seq];

    const utc = await expectListed({ since: iso(from.at), until: iso(to.at) }, (r) => r.at >= from.at && r.at <= to.at);
    expect(seqs(utc)).toEqual(between);
    const offset = await page({ since: isoPlusTwo(from.at), until: isoPlusTwo(to.at), limit: '500' });
    expect(seqs(offset.records)).toEqual(between);

    const after = await expectListed({ since: iso(from.at + 1) }, (r) => r.at >= from.at + 1);
    expect(seqs(after)).not.toContain(from.seq);
    expect(seqs(after)).toContain(record('taskBGranted').seq);
    const before = await expectListed({ until: iso(to.at - 1) }, (r) => r.at <= to.at - 1);
    expect(seqs(before)).not.toContain(to.seq);
    expect(seqs(before)).toContain(record('taskBGranted').seq);
  });

  it('combines filters', async () => {
    const grantedOfA = await page({ task: TASK_A, decision: 'granted' });
    expect(seqs(grantedOfA.records)).toEqual([record('taskAGranted').seq]);

    const start = record('taskAGranted').at;
    const end = record('anonymousRead').at;
    const refusedExchanges = await expectListed(
      { agent: DEMO_AGENT, decision: 'refused', event: 'token.exchange', since: iso(start), until: iso(end) },
      (r) =>
        r.agent === DEMO_AGENT &&
        r.decision === 'refused' &&
        r.event === 'token.exchange' &&
        r.at >= start &&
        r.at <= end,
    );
    expect(seqs(refusedExchanges)).toEqual([record('taskARefused').seq]);
  });

  it('answers an empty page when nothing matches', async () => {
    const body = await page({ agent: 'no-such-agent' });
    expect(body).toEqual({ records: [], next_cursor: null });
    const inverted = await page({ since: iso(record('taskCRefused').at), until: iso(record('taskAGranted').at) });
    expect(inverted).toEqual({ records: [], next_cursor: null });
  });
});

describe('GET /admin/audit: invalid queries', () => {
  it.each<[string, string]>([
    ['limit 0', 'limit=0'],
    ['limit 501', 'limit=501'],
    ['a non-numeric limit', 'limit=abc'],
    ['a negative limit', 'limit=-1'],
    ['a fractional limit', 'limit=1.5'],
    ['an empty limit', 'limit='],
    ['a cursor that is not a number', 'cursor=abc'],
    ['a zero cursor', 'cursor=0'],
    ['a negative cursor', 'cursor=-5'],
    ['an unknown parameter', 'actor=demo-admin'],
    ['an unknown parameter next to valid ones', 'task=x&limit=5&foo=1'],
    ['since that is not a date', 'since=yesterday'],
    ['since without a UTC offset', 'since=2026-01-01T00:00:00'],
    ['since as a bare date', 'since=2026-01-01'],
    ['since in epoch milliseconds', 'since=1767225600000'],
    ['until that is not a date', 'until=soon'],
    ['an unknown decision', 'decision=maybe'],
    ['an empty agent', 'agent='],
    ['an overlong event', `event=${'e'.repeat(65)}`],
  ])('refuses %s with 400 invalid_request, and audits the refusal', async (_name, query) => {
    const before = (await auditRecords()).length;
    const response = await readAudit(query);
    expect(response.status, await response.clone().text()).toBe(400);
    expect((await readError(response)).error).toBe('invalid_request');
    const after = await auditRecords();
    expect(after.length).toBe(before + 1);
    expect(after.at(-1)).toMatchObject({
      event: 'admin.audit.read',
      decision: 'refused',
      errorCode: 'invalid_request',
      reason: 'invalid_field',
      actor: 'demo-auditor',
      actorRole: 'auditor',
    });
  });
});

describe('GET /admin/audit: reading is audited', () => {
  it('records each read with who read and what they asked for', async () => {
    const before = (await auditRecords()).length;
    expect((await readAudit({ task: TASK_B, limit: '5' })).status).toBe(200);
    const after = await auditRecords();
    expect(after.length).toBe(before + 1);
    const read = await lastAudit();
    expect(read).toMatchObject({
      event: 'admin.audit.read',
      decision: 'granted',
      actor: 'demo-auditor',
      actorRole: 'auditor',
    });
    expect(JSON.parse(read.detail ?? 'null')).toEqual({ query: { task: TASK_B, limit: 5 } });
  });

  it('records an admin’s read under the admin’s identity', async () => {
    expect((await readAudit({ decision: 'refused' }, creds.admin)).status).toBe(200);
    expect(await lastAudit()).toMatchObject({
      event: 'admin.audit.read',
      decision: 'granted',
      actor: 'demo-admin',
      actorRole: 'admin',
    });
  });

  it('shows a read in the next read', async () => {
    await page({ task: TASK_C });
    const read = await lastAudit();
    const { records } = await page({ event: 'admin.audit.read', limit: '1' });
    expect(records[0]).toMatchObject({ seq: read.seq, actor: 'demo-auditor', detail: { query: { task: TASK_C } } });
  });
});

describe('audit_events: append-only at the database', () => {
  it('refuses to UPDATE a record', async () => {
    const target = record('taskARefused');
    await expect(
      env.AUDIT_DB.prepare("UPDATE audit_events SET decision = 'granted', reason = NULL WHERE seq = ?")
        .bind(target.seq)
        .run(),
    ).rejects.toThrow();
    await expect(env.AUDIT_DB.prepare("UPDATE audit_events SET actor = 'someone-else'").run()).rejects.toThrow();
    await expect(
      env.AUDIT_DB.prepare(
        "INSERT INTO audit_events (seq, id, at, event, decision, policy_version) VALUES (?, ?, ?, 'token.exchange', 'granted', 'x') ON CONFLICT (seq) DO UPDATE SET decision = 'granted'",
      )
        .bind(target.seq, crypto.randomUUID(), target.at)
        .run(),
    ).rejects.toThrow();
    const [stored] = (await auditRecords()).filter((r) => r.seq === target.seq);
    expect(stored).toEqual(target);
  });

  it('refuses to DELETE a record, or all of them', async () => {
    const target = record('taskAGranted');
    const before = await auditRecords();
    await expect(
      env.AUDIT_DB.prepare('DELETE FROM audit_events WHERE seq = ?').bind(target.seq).run(),
    ).rejects.toThrow();
    await expect(env.AUDIT_DB.prepare('DELETE FROM audit_events').run()).rejects.toThrow();
    expect(await auditRecords()).toEqual(before);
  });

  it('refuses INSERT OR REPLACE over an existing record', async () => {
    const target = record('taskARefused');
    await expect(
      env.AUDIT_DB.prepare(
        "INSERT OR REPLACE INTO audit_events (seq, id, at, event, decision, policy_version) VALUES (?, ?, ?, 'token.exchange', 'granted', 'x')",
      )
        .bind(target.seq, target.id, target.at)
        .run(),
    ).rejects.toThrow();
    const [stored] = (await auditRecords()).filter((r) => r.seq === target.seq);
    expect(stored).toEqual(target);
  });
});

describe('GET /admin/audit: pages of more than 100 records (D1 binds at most 100 parameters a query)', () => {
  it('answers limit=101 and limit=500 with every sealed record’s seal', async () => {
    // A listing of one agent is recorded in full (not sampled like anonymous refusals, nor like the reads a
    // console polls): the quickest way past 500.
    while ((await auditRecords()).length < 520) {
      const reads = Array.from({ length: 20 }, () =>
        exports.default.fetch(`${ISSUER}/admin/agents?limit=1`, {
          headers: { authorization: `Bearer ${creds.auditor}` },
        }),
      );
      for (const response of await Promise.all(reads)) expect(response.status).toBe(200);
    }
    const verify = await exports.default.fetch(`${ISSUER}/admin/audit/verify`, {
      headers: { authorization: `Bearer ${creds.auditor}` },
    });
    expect(verify.status, await verify.clone().text()).toBe(200);
    const { head } = (await verify.json()) as { head: { seq: number } };
    await drainAudit();
    for (const limit of [101, 500]) {
      const { records } = await page({ limit: String(limit) });
      expect(records).toHaveLength(limit);
      const sealed = records.filter((listed) => (listed.seq as number) <= head.seq);
      expect(sealed.length).toBeGreaterThan(limit - 10);
      for (const [i, listed] of sealed.entries()) {
        expect(listed.hash, `seq ${listed.seq}`).toMatch(/^[0-9a-f]{64}$/);
        const older = sealed[i + 1];
        if (older !== undefined && older.seq === (listed.seq as number) - 1) expect(listed.prev_hash).toBe(older.hash);
      }
    }
  });
});
