/**
 * `npm run bench:archive`: a million audit records through the real writer path (the audit queue and its
 * consumer) into a D1 with a small budget, moved to the archive in R2 by the real keeper (`AuditSealer`), then
 * the whole log checked: D1 stays under its budget, every record is in D1 or the archive exactly once, and
 * `GET /admin/audit/verify?archive=full` passes end to end. Reports the archive's throughput (records moved
 * per second of the keeper's runs), the time to verify everything, and what a record weighs in D1 and in R2.
 *
 * The records are made here, chained as the deciding objects chain them (one chain per bench agent), and sent
 * to the queue as the objects send them (a JSON array per message): the broker's `/token` path is measured by
 * `npm run bench`; this measures what comes after it.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { archivePolicies, chainedRecords, keeper } from '../lib/archive-fixtures';
import { bundleWorker, freePort, PROJECT_ROOT, startLocalBroker } from '../lib/local-broker';
import { log } from './measure';
import { benchAdminCredential } from './storage';

const { values: flags } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    budget: { type: 'string', default: '200000000' },
    chains: { type: 'string', default: '1000' },
  },
});
const RECORDS = Number(flags.records);
const BUDGET = Number(flags.budget);
const CHAINS = Number(flags.chains);
if (![RECORDS, BUDGET, CHAINS].every((n) => Number.isSafeInteger(n) && n > 0)) {
  console.error('usage: npm run bench:archive [-- --records N --budget BYTES --chains N]');
  process.exit(2);
}
/** Records per queue message (about 35 KB), and messages per send. */
const PER_MESSAGE = 25;
const PER_SEND = 7;
/** Records fed before the keeper runs: about a minute of a busy fleet's records. */
const WAVE = 100_000;
const SEGMENT_RECORDS = 50_000;

async function main(): Promise<void> {
  const policies = await archivePolicies({ hot_days: 1, hot_max_bytes: BUDGET, segment_records: SEGMENT_RECORDS });
  const bundle = await bundleWorker({ policyDir: policies.dir });
  const storageRoot = await mkdtemp(join(process.platform === 'linux' ? '/dev/shm' : tmpdir(), 'tessera-archive-'));
  const port = await freePort();
  const broker = await startLocalBroker({ bundle, port, storageRoot, assets: false });
  const credential = await benchAdminCredential();
  try {
    const queue = await broker.miniflare.getQueueProducer<string>('AUDIT_QUEUE', 'tessera');
    const db = await broker.miniflare.getD1Database('AUDIT_DB');
    const sealer = await keeper(broker);
    const written = async () =>
      (await db.prepare('SELECT records_written AS n FROM audit_writer_stats WHERE id = 1').first<{ n: number }>())
        ?.n ?? 0;
    const size = async () => (await db.prepare('SELECT 1').run()).meta.size_after;

    const ids: string[] = [];
    let maxSize = 0;
    let maxSizeAfterKeeper = 0;
    let moved = 0;
    let keeperMs = 0;
    let moveRowsWritten = 0;
    let feedMs = 0;
    const made = chainedRecords(RECORDS, CHAINS, bundle.policyVersion);
    for (let fed = 0; fed < RECORDS; ) {
      const wave = Math.min(WAVE, RECORDS - fed);
      const started = performance.now();
      const before = await written();
      let batch: { body: string; contentType: 'text' }[] = [];
      let message: string[] = [];
      for (let i = 0; i < wave; i += 1) {
        const next = made.next().value as { id: string; json: string };
        ids.push(next.id);
        message.push(next.json);
        if (message.length === PER_MESSAGE || i === wave - 1) {
          batch.push({ body: `[${message.join(',')}]`, contentType: 'text' });
          message = [];
        }
        if (batch.length === PER_SEND || i === wave - 1) {
          await queue.sendBatch(batch);
          batch = [];
        }
      }
      // The consumer has written the wave when D1's count has grown by it.
      while ((await written()) - before < wave) await new Promise((resolve) => setTimeout(resolve, 100));
      feedMs += performance.now() - started;
      fed += wave;
      maxSize = Math.max(maxSize, await size());
      const kept = performance.now();
      for (;;) {
        const archive = await sealer.maintain();
        if (archive.stopped === 'failed') throw new Error(`the keeper failed: ${archive.error}`);
        moved += archive.segments.reduce((sum, segment) => sum + segment.records, 0);
        moveRowsWritten += archive.rowsWritten;
        if (archive.stopped === 'nothing_due') break;
      }
      keeperMs += performance.now() - kept;
      const after = await size();
      maxSizeAfterKeeper = Math.max(maxSizeAfterKeeper, after);
      log(
        `archive bench: ${fed} records fed, ${moved} archived, D1 ${(after / 1e6).toFixed(1)} MB (budget ${(BUDGET / 1e6).toFixed(0)} MB)`,
      );
    }

    // Every record in D1 or the archive, exactly once.
    const seen = new Map<string, number>();
    const { results } = await db.prepare('SELECT id FROM audit_events').all<{ id: string }>();
    for (const { id } of results) seen.set(id, (seen.get(id) ?? 0) + 1);
    const bucket = (await broker.miniflare.getR2Bucket('AUDIT_ARCHIVE')) as unknown as {
      get(key: string): Promise<{ arrayBuffer(): Promise<ArrayBuffer> } | null>;
    };
    const segments = (
      await db.prepare('SELECT key, records, bytes FROM audit_archive ORDER BY segment').all<{
        key: string;
        records: number;
        bytes: number;
      }>()
    ).results;
    let r2Bytes = 0;
    for (const segment of segments) {
      const object = await bucket.get(segment.key);
      if (object === null) throw new Error(`segment ${segment.key} is missing from R2`);
      const bytes = Buffer.from(await object.arrayBuffer());
      r2Bytes += bytes.byteLength;
      for (const line of gunzipSync(bytes).toString('utf8').split('\n')) {
        if (line.length === 0) continue;
        const { id } = JSON.parse(line) as { id: string };
        seen.set(id, (seen.get(id) ?? 0) + 1);
      }
    }
    const generated = new Set(ids);
    const missing = ids.filter((id) => !seen.has(id)).length;
    const doubled = [...seen.values()].filter((n) => n > 1).length;
    // The broker's own records (each move's `audit.archive`, the bench's admin reads) are in the log too.
    const own = [...seen.keys()].filter((id) => !generated.has(id)).length;

    const verifyStarted = performance.now();
    const response = await fetch(`${broker.url}/admin/audit/verify?archive=full`, {
      headers: { authorization: `Bearer ${credential}` },
    });
    const verifyMs = performance.now() - verifyStarted;
    const report = (await response.json()) as { valid: boolean; records: number; problems: unknown[] };
    if (!report.valid) console.error('verify found:', JSON.stringify(report.problems));
    const inD1 = results.length;
    const figures = {
      records: RECORDS,
      chains: CHAINS,
      budgetBytes: BUDGET,
      maxD1Bytes: maxSize,
      maxD1BytesAfterKeeper: maxSizeAfterKeeper,
      inD1,
      archived: moved,
      segments: segments.length,
      missing,
      doubled,
      brokersOwnRecords: own,
      feedRecordsPerSecond: RECORDS / (feedMs / 1000),
      archiveRecordsPerSecond: moved / (keeperMs / 1000),
      r2BytesPerRecord: moved === 0 ? null : r2Bytes / moved,
      d1BytesPerRecord: inD1 === 0 ? null : (await size()) / inD1,
      d1RowsWrittenPerArchivedRecord: moved === 0 ? null : moveRowsWritten / moved,
      verify: { status: response.status, valid: report.valid, records: report.records, seconds: verifyMs / 1000 },
    };
    console.log(JSON.stringify(figures, null, 2));
    await mkdir(join(PROJECT_ROOT, 'bench-results'), { recursive: true });
    await writeFile(join(PROJECT_ROOT, 'bench-results', 'archive.json'), `${JSON.stringify(figures, null, 2)}\n`);
    const ok = missing === 0 && doubled === 0 && report.valid && maxSizeAfterKeeper <= BUDGET;
    if (!ok) process.exitCode = 1;
  } finally {
    await broker.dispose();
    await bundle.dispose();
    await policies.dispose();
    await rm(storageRoot, { recursive: true, force: true });
  }
}

await main();
