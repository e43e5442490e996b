/**
 * The archive (issue 18): D1 is a bounded hot window. What is older moves to R2 in segments of gzipped
 * NDJSON, written, read back and checked before D1 lets go of it; the move is the one delete the append-only
 * triggers allow, and it is recorded. The chains go on across the boundary, and the check reads both sides.
 */
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import creds from '../../scripts/demo/admin-credentials.json';
import { gunzip, segmentRecords } from '../../worker/audit/archive';
import { adminFetch, bearer } from '../helpers/admin';
import { agentObject, evictAgentObject } from '../helpers/agent-object';
import { auditRecords, drainAudit } from '../helpers/audit';
import { useForwardClock } from '../helpers/clock';
import { DEMO_AGENT } from '../helpers/demo';
import { issue } from '../helpers/tokens';

const DAY_SECONDS = 86_400;
/** Past the policy's hot window (30 days) and the day a partial segment may wait. */
const PAST_THE_WINDOW = 32 * DAY_SECONDS;

const clock = useForwardClock();
const sealer = () => env.AUDIT_SEALER.get(env.AUDIT_SEALER.idFromName('global'));

interface Segment {
  segment: number;
  key: string;
  first_seq: number;
  last_seq: number;
  records: number;
  sha256: string;
}

async function adminJson<T>(path: string): Promise<T> {
  const response = await adminFetch(path, { headers: bearer(creds.auditor) });
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as T;
}

const verify = (query = '') =>
  adminJson<{
    valid: boolean;
    problems: { problem: string; segment?: number }[];
    archive: { segments: number; records: number };
  }>(`/admin/audit/verify${query}`);

const seqsInD1 = async () =>
  (await env.AUDIT_DB.prepare('SELECT seq FROM audit_events ORDER BY seq').all<{ seq: number }>()).results.map(
    (row) => row.seq,
  );

const segmentsListed = async () =>
  (await env.AUDIT_DB.prepare('SELECT * FROM audit_archive ORDER BY segment').all<Segment>()).results;

/** Records issued now, in D1, then the clock moved past the hot window. */
async function aged(tokens = 3): Promise<{ jtis: string[]; seqs: number[] }> {
  const jtis: string[] = [];
  for (let i = 0; i < tokens; i += 1) jtis.push((await issue()).jti);
  await drainAudit();
  const seqs = await seqsInD1();
  clock.advance(PAST_THE_WINDOW);
  return { jtis, seqs };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('moving the hot window’s oldest records to the archive', () => {
  it('writes a segment to R2, reads it back, lists it, then deletes what it holds from D1, and says so', async () => {
    const movesBefore = (await auditRecords()).filter((record) => record.event === 'audit.archive').length;
    const { jtis, seqs } = await aged();
    const { archive } = await sealer().maintain();
    expect(archive.segments).toHaveLength(1);
    const [segment] = archive.segments;
    if (segment === undefined) throw new Error('no segment');
    expect(segment).toMatchObject({ first_seq: seqs[0], last_seq: seqs.at(-1), records: seqs.length });
    const left = await seqsInD1();
    expect(left.filter((seq) => seq <= segment.last_seq)).toEqual([]);

    const object = await env.AUDIT_ARCHIVE.get(segment.key);
    const records = segmentRecords(await gunzip(new Uint8Array(await (object as R2ObjectBody).arrayBuffer())));
    expect(records.map((record) => record.seq)).toEqual(seqs);
    for (const jti of jtis) expect(records.filter((record) => record.token_jti === jti)).toHaveLength(1);
    expect(records.every((record) => typeof record.seal_hash === 'string')).toBe(true);

    const moves = (await auditRecords()).filter((record) => record.event === 'audit.archive');
    expect(moves).toHaveLength(movesBefore + 1);
    expect(moves.at(-1)).toMatchObject({ decision: 'granted', target: `segment:${segment.segment}`, actor: 'tessera' });
  });

  it('moves nothing younger than the hot window', async () => {
    await issue();
    await drainAudit();
    const before = await seqsInD1();
    const { archive } = await sealer().maintain();
    expect(archive).toEqual({ segments: [], rowsWritten: 0, stopped: 'nothing_due' });
    expect(await seqsInD1()).toEqual(before);
  });

  it('lists the segments for admins, and serves each one’s bytes with its hash', async () => {
    await aged();
    const moved = (await sealer().maintain()).archive.segments;
    const { segments } = await adminJson<{ segments: Segment[] }>('/admin/audit/archive');
    expect(segments.map((segment) => segment.segment)).toEqual((await segmentsListed()).map((row) => row.segment));
    const newest = segments.at(-1) as Segment;
    expect(newest.segment).toBe(moved.at(-1)?.segment);
    const response = await adminFetch(`/admin/audit/archive/${newest.segment}`, { headers: bearer(creds.auditor) });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/gzip');
    expect(response.headers.get('x-tessera-segment-sha256')).toBe(newest.sha256);
    const lines = segmentRecords(await gunzip(new Uint8Array(await response.arrayBuffer())));
    expect(lines).toHaveLength(newest.records);
    const missing = newest.segment + 1;
    expect((await adminFetch(`/admin/audit/archive/${missing}`, { headers: bearer(creds.auditor) })).status).toBe(404);
  });
});

describe('tamper evidence across the boundary', () => {
  it('verifies D1 from where the archive leaves the chains, and the whole archive with ?archive=full', async () => {
    await aged();
    await sealer().maintain();
    // A decision after the move: its agent's chain goes on from the head the archive holds.
    const { jti } = await issue();
    await drainAudit();
    const segments = await segmentsListed();
    const archived = segments.reduce((sum, segment) => sum + segment.records, 0);
    const listed = await verify();
    expect(listed.problems).toEqual([]);
    expect(listed).toMatchObject({ valid: true, archive: { segments: segments.length, records: 0 } });
    const full = await verify('?archive=full');
    expect(full.problems).toEqual([]);
    expect(full).toMatchObject({ valid: true, archive: { segments: segments.length, records: archived } });
    const [after] = (await auditRecords()).filter((record) => record.tokenJti === jti);
    expect(after?.chain).toBe(`agent:${DEMO_AGENT}`);
    expect(after?.chainSeq).toBeGreaterThan(1);
  });

  it('reports a segment whose bytes changed in R2', async () => {
    await aged();
    const { archive } = await sealer().maintain();
    const [segment] = archive.segments;
    const key = segment?.key as string;
    const original = await (await env.AUDIT_ARCHIVE.get(key))?.arrayBuffer();
    await env.AUDIT_ARCHIVE.put(key, new TextEncoder().encode('{"seq":1}\n'));
    const report = await verify('?archive=full');
    expect(report.valid).toBe(false);
    expect(report.problems).toContainEqual(
      expect.objectContaining({ problem: 'segment_changed', segment: segment?.segment }),
    );
    await env.AUDIT_ARCHIVE.put(key, original as ArrayBuffer);
    expect((await verify('?archive=full')).valid).toBe(true);
  });

  it('refuses to delete a record no segment holds, and its seal', async () => {
    await issue();
    await drainAudit();
    await sealer().seal();
    const [seq] = await seqsInD1();
    await expect(env.AUDIT_DB.prepare('DELETE FROM audit_events WHERE seq = ?').bind(seq).run()).rejects.toThrow(
      /append-only/,
    );
    await expect(env.AUDIT_DB.prepare('DELETE FROM audit_seals WHERE seq = ?').bind(seq).run()).rejects.toThrow(
      /append-only/,
    );
  });
});

describe('a record the archive took before its object saw it in D1', () => {
  /** Issues a token and waits until D1 holds its record, without the object looking (as drainAudit would). */
  async function inD1Unseen(): Promise<{ jti: string; seq: number }> {
    const { jti } = await issue();
    for (;;) {
      const row = await env.AUDIT_DB.prepare('SELECT seq FROM audit_events WHERE token_jti = ?')
        .bind(jti)
        .first<{ seq: number }>();
      if (row !== null) return { jti, seq: row.seq };
      await scheduler.wait(10);
    }
  }

  const outboxJtis = () =>
    runInDurableObject(agentObject(), (_instance, state) =>
      state.storage.sql
        .exec<{ jti: string | null }>(`SELECT record ->> '$.tokenJti' AS jti FROM audit_outbox`)
        .toArray()
        .map((row) => row.jti),
    );

  it('is forgotten by its object as held, and never written to D1 again, even sent again after an eviction', async () => {
    const { jti } = await inD1Unseen();
    clock.advance(PAST_THE_WINDOW);
    await sealer().maintain();
    expect(await outboxJtis()).toContain(jti);
    // Evicted before it looked: a new instance sends again everything it keeps.
    await evictAgentObject();
    expect(await agentObject().flushAudit()).toBe(true);
    await drainAudit();
    expect(await outboxJtis()).not.toContain(jti);
    const rows = await env.AUDIT_DB.prepare('SELECT COUNT(*) AS n FROM audit_events WHERE token_jti = ?')
      .bind(jti)
      .first<{ n: number }>();
    expect(rows?.n).toBe(0);
    expect((await verify('?archive=full')).problems).toEqual([]);
  });
});

describe('faults while archiving', () => {
  it('deletes nothing from D1 while R2 fails, and moves the records once it answers', async () => {
    const { seqs } = await aged();
    const listed = await segmentsListed();
    const put = vi.spyOn(env.AUDIT_ARCHIVE, 'put').mockRejectedValue(new Error('R2 is down'));
    const failed = await sealer().maintain();
    expect(failed.archive).toMatchObject({
      segments: [],
      stopped: 'failed',
      error: expect.stringContaining('R2 is down'),
    });
    expect(await seqsInD1()).toEqual(expect.arrayContaining(seqs));
    expect(await segmentsListed()).toEqual(listed);
    put.mockRestore();
    const { archive } = await sealer().maintain();
    expect(archive.segments.map((segment) => segment.records)).toEqual([seqs.length]);
  });

  it('completes after a crash between the upload and the delete: nothing lost, nothing doubled', async () => {
    const { seqs } = await aged();
    const objects = async () => (await env.AUDIT_ARCHIVE.list({ prefix: 'archive/segments/' })).objects.length;
    const before = await objects();
    const prepare = env.AUDIT_DB.prepare.bind(env.AUDIT_DB);
    const crash = vi.spyOn(env.AUDIT_DB, 'prepare').mockImplementation((query: string) => {
      if (/insert into audit_archive/i.test(query)) throw new Error('the broker went away');
      return prepare(query);
    });
    const failed = await sealer().maintain();
    expect(failed.archive).toMatchObject({ stopped: 'failed', error: expect.stringContaining('went away') });
    expect(await objects()).toBe(before + 1);
    expect(await seqsInD1()).toEqual(expect.arrayContaining(seqs));
    crash.mockRestore();

    const { archive } = await sealer().maintain();
    expect(archive.segments).toHaveLength(1);
    // The same segment again: the object the failed run uploaded holds it, and is not written twice.
    expect(await objects()).toBe(before + 1);
    const object = await env.AUDIT_ARCHIVE.get(archive.segments[0]?.key as string);
    const records = segmentRecords(await gunzip(new Uint8Array(await (object as R2ObjectBody).arrayBuffer())));
    expect(records.map((record) => record.seq)).toEqual(seqs);
    expect((await seqsInD1()).filter((seq) => seqs.includes(seq))).toEqual([]);
    expect((await verify('?archive=full')).valid).toBe(true);
  });
});
