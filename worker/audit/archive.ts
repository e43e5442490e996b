/**
 * The audit log's archive: D1 is a bounded hot window, and older records move to R2 in segments. A segment
 * is one immutable object of gzipped NDJSON, a line per record in `seq` order with every D1 column and the
 * record's seal (`seal_prev_hash`, `seal_hash`), so `zcat | jq` or DuckDB (`read_json`) reads it without
 * Tessera, and it checks alone: its seals continue the seal chain, its records continue their decision-time
 * chains. Each segment is listed in D1 (`audit_archive`) with the SHA-256 of its bytes, and chained to the
 * segment before it; beside it, every chain's head after it (a JSON object), where D1's chains go on.
 *
 * Moving a segment: the records are read from D1, written to R2, read back and checked (bytes, hash, the
 * records one by one); only then, in one D1 transaction, is the segment listed and its records and seals
 * deleted, the one delete the append-only triggers allow (a record a listed segment holds), and the move is
 * recorded in the audit log. A failure anywhere before that transaction deletes nothing, and the next run
 * starts again from D1; an object a failed run left in R2 is never listed (its key names its hash).
 */

import { sha256Hex } from '../core/hex';
import type { Settings } from '../policy/bundle';
import { type ChainLink, ChainLinks, type ChainProblem, type Row, sealHash, type VerifyStart } from './chain';
import { type ChainHead, canonicalRecord, GENESIS } from './record';

/** Where segments, chain heads and manifests live in the bucket; a bucket lock rule on `archive/` keeps them. */
export const ARCHIVE_PREFIX = 'archive/';
/** Records read from D1 per query while a segment is built. */
const PAGE = 1000;
/** A run stops starting segments after this long: the next run (a minute later) goes on. */
const RUN_BUDGET_MS = 20_000;

/** A segment as D1 lists it (`audit_archive`, column names). */
export interface SegmentRow {
  segment: number;
  key: string;
  first_seq: number;
  last_seq: number;
  records: number;
  bytes: number;
  sha256: string;
  first_at: number;
  last_at: number;
  seal_hash: string;
  heads_key: string;
  heads_sha256: string;
  prev_hash: string;
  hash: string;
  archived_at: number;
}

/**
 * Every decision-time chain's head after a segment, and the seal chain's. A chain's head is its last record
 * with none missing before it; records the archive holds past a gap (the missing one reached D1 later: a
 * queue delivers a message it retried after the ones behind it) are `ahead`, until the gap is filled.
 */
export interface ArchiveHeads {
  seal: ChainHead;
  chains: Record<string, ChainHead>;
  ahead?: Record<string, ChainLink[]>;
}

/** The bucket as the archive uses it (`worker/audit/archive-bucket.ts`: bounded, fail-closed calls). */
export interface ArchiveBucket {
  put(key: string, body: Uint8Array, sha256: string): Promise<void>;
  /** The object's bytes, or null when there is none. */
  get(key: string): Promise<Uint8Array<ArrayBuffer> | null>;
}

/** What a run did: segments moved, and why it stopped. */
export type ArchiveRun = {
  segments: SegmentRow[];
  /** D1's rows written by the moves' transactions (the listing, the heads, every deleted record and index entry). */
  rowsWritten: number;
} & (
  | { stopped: 'nothing_due' | 'budget' }
  /** A read, an upload, its check or D1's commit failed: nothing of that segment left D1; the next run retries. */
  | { stopped: 'failed'; error: string }
);

/** How long a due record may wait for its segment to fill: a quiet log still leaves D1 within a day. */
const PARTIAL_AFTER_MS = 86_400_000;

/**
 * Whether the due records make a segment now: a full one; or a partial one when the oldest has waited a day
 * past the window (a quiet log), or when D1 is over its budget (`dueRecords` then returns records of any age).
 */
function worthMoving(rows: readonly DueRow[], settings: Settings['audit'], now: number): boolean {
  const oldest = rows[0];
  if (oldest === undefined) return false;
  if (rows.length >= settings.segmentRecords) return true;
  const cutoff = now - settings.hotDays * 86_400_000;
  const storedAt = oldest.stored_at ?? oldest.at;
  return storedAt >= cutoff || storedAt < cutoff - PARTIAL_AFTER_MS;
}

async function through(stream: ReadableStream<Uint8Array>, transform: CompressionStream | DecompressionStream) {
  return new Uint8Array(await new Response(stream.pipeThrough(transform)).arrayBuffer());
}

export const gzip = (bytes: Uint8Array) => through(new Blob([bytes]).stream(), new CompressionStream('gzip'));
export const gunzip = (bytes: Uint8Array) => through(new Blob([bytes]).stream(), new DecompressionStream('gzip'));

/** The segment chain's link: what a segment's `hash` is made of. */
export const segmentHash = (prev: string, row: Pick<SegmentRow, 'sha256' | 'seal_hash' | 'heads_sha256'>) =>
  sha256Hex(`${prev}\n${row.sha256}\n${row.seal_hash}\n${row.heads_sha256}`);

/** The heads as stored: canonical JSON (sorted chains), so its hash is the same wherever it is made. */
export function headsJson(heads: ArchiveHeads): string {
  const sorted = <T>(entries: Record<string, T>) =>
    Object.fromEntries(Object.entries(entries).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const ahead = sorted(heads.ahead ?? {});
  return JSON.stringify({
    seal: heads.seal,
    chains: sorted(heads.chains),
    ...(Object.keys(ahead).length > 0 && { ahead }),
  });
}

/** The heads after `rows`, moved on from `before`: each chain as far as its records link without a gap. */
function advanceHeads(before: ArchiveHeads, rows: readonly Row[], seal: ChainHead): ArchiveHeads {
  const chains = { ...before.chains };
  const waiting = new Map<string, Map<number, ChainLink>>();
  const wait = (chain: string, link: ChainLink) => {
    const links = waiting.get(chain) ?? new Map<number, ChainLink>();
    links.set(link.seq, link);
    waiting.set(chain, links);
  };
  for (const [chain, links] of Object.entries(before.ahead ?? {})) for (const link of links) wait(chain, link);
  for (const row of rows) {
    if (typeof row.chain !== 'string') continue;
    wait(row.chain, { seq: row.chain_seq as number, hash: row.chain_hash as string, prev: row.chain_prev as string });
  }
  const ahead: Record<string, ChainLink[]> = {};
  for (const [chain, links] of waiting) {
    let head = chains[chain] ?? { seq: 0, hash: GENESIS };
    for (let next = links.get(head.seq + 1); next !== undefined; next = links.get(head.seq + 1)) {
      links.delete(next.seq);
      head = { seq: next.seq, hash: next.hash };
    }
    if (head.seq > 0) chains[chain] = head;
    if (links.size > 0) ahead[chain] = [...links.values()].sort((a, b) => a.seq - b.seq);
  }
  return { seal, chains, ahead };
}

/** A segment's records, parsed from its (gunzipped) NDJSON. */
export function segmentRecords(ndjson: Uint8Array): Record<string, unknown>[] {
  const text = new TextDecoder().decode(ndjson);
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The segments D1 lists, oldest first. */
export async function listSegments(db: D1Database): Promise<SegmentRow[]> {
  const { results } = await db.prepare('SELECT * FROM audit_archive ORDER BY segment').all<SegmentRow>();
  return results;
}

/** The newest segment, or null before the first. */
async function lastSegment(db: D1Database): Promise<SegmentRow | null> {
  return db.prepare('SELECT * FROM audit_archive ORDER BY segment DESC LIMIT 1').first<SegmentRow>();
}

/** The chains' heads after `segment` (none before the first), checked against the hash D1 lists. */
export async function headsAfter(bucket: ArchiveBucket, segment: SegmentRow | null): Promise<ArchiveHeads> {
  if (segment === null) return { seal: { seq: 0, hash: GENESIS }, chains: {} };
  const bytes = await bucket.get(segment.heads_key);
  if (bytes === null) throw new Error(`archive heads ${segment.heads_key} are missing`);
  if ((await sha256Hex(bytes)) !== segment.heads_sha256)
    throw new Error(`archive heads ${segment.heads_key} do not match their hash`);
  return JSON.parse(new TextDecoder().decode(bytes)) as ArchiveHeads;
}

type DueRow = Row & { at: number; stored_at: number | null };

/**
 * The records of the next segment, if one is due: from the first record after the last segment, in `seq`
 * order, sealed ones only, while they are older than the hot window, or (D1 over its budget) the oldest
 * anyway; at most `segmentRecords`. With their seals.
 */
async function dueRecords(
  db: D1Database,
  after: number,
  sealedThrough: number,
  settings: Settings['audit'],
  now: number,
): Promise<(DueRow & { seal_prev_hash: string; seal_hash: string })[]> {
  const size = (await db.prepare('SELECT 1').run()).meta.size_after;
  const overBudget = size > settings.hotMaxBytes;
  const cutoff = now - settings.hotDays * 86_400_000;
  const out: (DueRow & { seal_prev_hash: string; seal_hash: string })[] = [];
  let from = after;
  while (out.length < settings.segmentRecords) {
    const { results } = await db
      .prepare(
        `SELECT e.*, s.prev_hash AS seal_prev_hash, s.hash AS seal_hash FROM audit_events e
         JOIN audit_seals s ON s.seq = e.seq
         WHERE e.seq > ? AND e.seq <= ? ORDER BY e.seq LIMIT ?`,
      )
      .bind(from, sealedThrough, Math.min(PAGE, settings.segmentRecords - out.length))
      .all<DueRow & { seal_prev_hash: string; seal_hash: string }>();
    for (const row of results) {
      // Arrival order: a record stored after the cutoff ends the segment, unless D1 must shrink.
      if (!overBudget && (row.stored_at ?? row.at) >= cutoff) return out;
      out.push(row);
    }
    const last = results.at(-1);
    if (last === undefined || results.length < PAGE) return out;
    from = last.seq;
  }
  return out;
}

/**
 * Moves every segment that is due from D1 to the archive, one after another, within the run's budget; the
 * caller serialises runs (one `AuditSealer` object) and has sealed D1 first, through `sealedThrough`.
 * `recordMove` commits the audit record of a segment's move.
 */
export async function archiveDue(
  db: D1Database,
  bucket: ArchiveBucket,
  settings: Settings['audit'],
  sealedThrough: number,
  recordMove: (segment: SegmentRow) => Promise<void>,
  now: () => number = Date.now,
): Promise<ArchiveRun> {
  const started = now();
  const segments: SegmentRow[] = [];
  let rowsWritten = 0;
  try {
    for (;;) {
      if (now() - started > RUN_BUDGET_MS) return { segments, rowsWritten, stopped: 'budget' };
      const previous = await lastSegment(db);
      const rows = await dueRecords(db, previous?.last_seq ?? 0, sealedThrough, settings, now());
      if (!worthMoving(rows, settings, now())) return { segments, rowsWritten, stopped: 'nothing_due' };
      const moved = await moveSegment(db, bucket, previous, rows, now());
      segments.push(moved.segment);
      rowsWritten += moved.rowsWritten;
      await recordMove(moved.segment);
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { segments, rowsWritten, stopped: 'failed', error: message };
  }
}

async function moveSegment(
  db: D1Database,
  bucket: ArchiveBucket,
  previous: SegmentRow | null,
  rows: readonly (DueRow & { seal_prev_hash: string; seal_hash: string })[],
  now: number,
): Promise<{ segment: SegmentRow; rowsWritten: number }> {
  const first = rows[0];
  const last = rows.at(-1);
  if (first === undefined || last === undefined) throw new Error('an empty segment');
  // Every chain's head after this segment: the previous segment's, moved on by this one's records.
  const advanced = advanceHeads(await headsAfter(bucket, previous), rows, { seq: last.seq, hash: last.seal_hash });
  const heads = headsJson(advanced);
  const ndjson = new TextEncoder().encode(`${rows.map((row) => JSON.stringify(row)).join('\n')}\n`);
  const body = await gzip(ndjson);
  const sha256 = await sha256Hex(body);
  const headsSha256 = await sha256Hex(heads);
  const number = (previous?.segment ?? 0) + 1;
  const name = String(number).padStart(8, '0');
  // The hash in the key: a run that failed after its upload leaves an object no later run overwrites.
  const key = `${ARCHIVE_PREFIX}segments/${name}-${first.seq}-${last.seq}-${sha256.slice(0, 16)}.ndjson.gz`;
  const headsKey = `${ARCHIVE_PREFIX}heads/${name}-${headsSha256.slice(0, 16)}.json`;
  await bucket.put(key, body, sha256);
  await bucket.put(headsKey, new TextEncoder().encode(heads), headsSha256);
  await checkWritten(bucket, key, sha256, rows);
  const listed: Omit<SegmentRow, 'hash'> = {
    segment: number,
    key,
    first_seq: first.seq,
    last_seq: last.seq,
    records: rows.length,
    bytes: body.byteLength,
    sha256,
    first_at: Math.min(...rows.map((row) => row.at)),
    last_at: Math.max(...rows.map((row) => row.at)),
    seal_hash: last.seal_hash,
    heads_key: headsKey,
    heads_sha256: headsSha256,
    prev_hash: previous?.hash ?? GENESIS,
    archived_at: now,
  };
  const segment: SegmentRow = { ...listed, hash: await segmentHash(listed.prev_hash, listed) };
  const columns = Object.keys(segment);
  // One transaction: the segment listed, then what it holds deleted (the triggers allow it only now).
  // The chains this segment moved on: their archived heads (a record at or before one is in the archive).
  const moved: Record<string, ChainHead> = {};
  for (const row of rows) {
    const head = typeof row.chain === 'string' ? advanced.chains[row.chain] : undefined;
    if (head !== undefined) moved[row.chain as string] = head;
  }
  const results = await db.batch([
    db
      .prepare(`INSERT INTO audit_archive (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`)
      .bind(...columns.map((column) => segment[column as keyof SegmentRow])),
    db
      .prepare(
        `INSERT INTO audit_archive_heads (chain, seq, hash)
         SELECT key, value ->> '$.seq', value ->> '$.hash' FROM json_each(?) WHERE true
         ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash WHERE excluded.seq > seq`,
      )
      .bind(JSON.stringify(moved)),
    db.prepare('DELETE FROM audit_seals WHERE seq >= ? AND seq <= ?').bind(first.seq, last.seq),
    db.prepare('DELETE FROM audit_events WHERE seq >= ? AND seq <= ?').bind(first.seq, last.seq),
  ]);
  return { segment, rowsWritten: results.reduce((sum, result) => sum + (result.meta.rows_written ?? 0), 0) };
}

/** Reads a segment back: the bytes, their hash, and every record, in order, as D1 held it. */
async function checkWritten(
  bucket: ArchiveBucket,
  key: string,
  sha256: string,
  rows: readonly Record<string, unknown>[],
): Promise<void> {
  const stored = await bucket.get(key);
  if (stored === null) throw new Error(`archive segment ${key} is not in R2 after its upload`);
  if ((await sha256Hex(stored)) !== sha256) throw new Error(`archive segment ${key} does not match its hash`);
  const records = segmentRecords(await gunzip(stored));
  if (records.length !== rows.length) throw new Error(`archive segment ${key} holds ${records.length} records`);
  records.forEach((record, i) => {
    const row = rows[i] as Record<string, unknown>;
    if (canonicalRecord(record) !== canonicalRecord(row))
      throw new Error(`archive segment ${key}: record ${i} differs`);
  });
}

/**
 * Checks the archive as far as `full` says: the segment chain as D1 lists it (always), and, when `full`,
 * every segment's bytes against its hash and every record in it against its seal and its decision-time
 * chain, carrying both chains on, and each segment's heads against what its records give. Returns where the
 * check of D1 starts: the seal chain and every chain as the archive leaves them.
 */
export async function verifyArchive(
  segments: readonly SegmentRow[],
  bucket: ArchiveBucket,
  full: boolean,
): Promise<VerifyStart> {
  const problems: ChainProblem[] = [];
  const changed = (segment: SegmentRow, problem: 'segment_changed' | 'segment_missing' = 'segment_changed') =>
    problems.push({ seq: segment.first_seq, segment: segment.segment, problem });
  let prevHash = GENESIS;
  let seal: ChainHead = { seq: 0, hash: GENESIS };
  let links = new ChainLinks(problems);
  let records = 0;
  let chainRecords = 0;
  for (const segment of segments) {
    if (segment.prev_hash !== prevHash || segment.hash !== (await segmentHash(prevHash, segment))) changed(segment);
    prevHash = segment.hash;
    if (!full) continue;
    const bytes = await bucket.get(segment.key);
    if (bytes === null || (await sha256Hex(bytes)) !== segment.sha256) {
      changed(segment, bytes === null ? 'segment_missing' : 'segment_changed');
      // Go on from the heads listed after it, so one bad segment is reported once.
      const heads = await headsAfter(bucket, segment).catch(() => null);
      if (heads !== null) {
        seal = heads.seal;
        chainRecords += [...links.heads().values()].reduce((sum, at) => sum + at.records, 0);
        links = new ChainLinks(problems, heads.chains, new Map(), heads.ahead);
      }
      continue;
    }
    for (const line of segmentRecords(await gunzip(bytes))) {
      const { seal_prev_hash: sealPrev, seal_hash: sealed, ...row } = line as Row & Record<string, unknown>;
      records += 1;
      const hash = await sealHash(seal.hash, row);
      if (sealed !== hash || sealPrev !== seal.hash) problems.push({ seq: row.seq, problem: 'record_changed' });
      seal = { seq: row.seq, hash: typeof sealed === 'string' ? sealed : hash };
      if (typeof row.chain === 'string') links.add(row);
    }
    const heads = await headsAfter(bucket, segment).catch(() => null);
    const agree =
      heads !== null &&
      heads.seal.hash === seal.hash &&
      [...links.heads()].every(
        ([chain, at]) => heads.chains[chain]?.hash === at.hash && heads.chains[chain]?.seq === at.seq,
      );
    if (!agree) changed(segment);
  }
  if (!full) {
    const last = segments.at(-1) ?? null;
    const heads = await headsAfter(bucket, last).catch(() => null);
    if (heads === null || (last !== null && heads.seal.hash !== last.seal_hash)) {
      if (last !== null) changed(last);
      return { problems, segments: segments.length };
    }
    return { seal: heads.seal, chains: heads.chains, ahead: heads.ahead ?? {}, problems, segments: segments.length };
  }
  // What waits past a gap goes on to D1's check, where the missing record may be.
  const chains = links.heads();
  chainRecords += [...chains.values()].reduce((sum, at) => sum + at.records, 0);
  return {
    seal,
    chains: Object.fromEntries([...chains].map(([chain, at]) => [chain, { seq: at.seq, hash: at.hash }])),
    ahead: links.pending(),
    problems,
    records,
    chainRecords,
    segments: segments.length,
    archivedRecords: records,
  };
}
