/**
 * The archive as an auditor reads it, without Tessera: records pass through the real audit queue into a D1
 * with a 1 MB budget, the keeper moves the oldest to R2, and DuckDB (a second reader nobody here wrote)
 * reads the segment the broker serves, gzipped NDJSON, straight from a file: every record, its chain fields
 * and its seal, in `seq` order, the same records the keeper listed.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import admins from '../../scripts/demo/admin-credentials.json';
import { archivePolicies, chainedRecords, keeper } from '../../scripts/lib/archive-fixtures';
import { bundleWorker, type LocalBroker, startLocalBroker, type WorkerBundle } from '../../scripts/lib/local-broker';

/** Past a 1 MB budget at about 1 KB a record. */
const RECORDS = 2000;
const CHAINS = 20;

let broker: LocalBroker;
let bundle: WorkerBundle;
let policies: { dir: string; dispose(): Promise<void> };
let dir: string;
const ids: string[] = [];

beforeAll(async () => {
  policies = await archivePolicies({ hot_days: 1, hot_max_bytes: 1_000_000, segment_records: 500 });
  bundle = await bundleWorker({ policyDir: policies.dir });
  broker = await startLocalBroker({ bundle, assets: false });
  dir = await mkdtemp(join(tmpdir(), 'tessera-duckdb-'));
  const queue = await broker.miniflare.getQueueProducer<string>('AUDIT_QUEUE', 'tessera');
  const records = [...chainedRecords(RECORDS, CHAINS, bundle.policyVersion)];
  ids.push(...records.map((record) => record.id));
  for (let i = 0; i < records.length; i += 25) {
    await queue.send(
      `[${records
        .slice(i, i + 25)
        .map((record) => record.json)
        .join(',')}]`,
      { contentType: 'text' },
    );
  }
  const db = await broker.miniflare.getD1Database('AUDIT_DB');
  for (let waited = 0; ; waited += 100) {
    const row = await db.prepare('SELECT records_written AS n FROM audit_writer_stats').first<{ n: number }>();
    if ((row?.n ?? 0) >= RECORDS) break;
    if (waited > 30_000) throw new Error('the records did not reach D1');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}, 120_000);

afterAll(async () => {
  await broker?.dispose();
  await bundle?.dispose();
  await policies?.dispose();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

const auditor = { authorization: `Bearer ${admins.auditor}` };

async function query<T>(sql: string): Promise<T[]> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    return (await connection.runAndReadAll(sql)).getRowObjectsJson() as T[];
  } finally {
    connection.closeSync();
  }
}

describe('an archive segment, read by DuckDB', () => {
  it('holds every record the keeper listed for it, in seq order, with its chain and its seal', async () => {
    const run = await (await keeper(broker)).maintain();
    expect(run.stopped).toBe('nothing_due');
    expect(run.segments.length).toBeGreaterThan(0);
    const [segment] = run.segments;
    if (segment === undefined) throw new Error('no segment');

    const response = await fetch(`${broker.url}/admin/audit/archive/${segment.segment}`, { headers: auditor });
    expect(response.status).toBe(200);
    const file = join(dir, 'segment.ndjson.gz');
    await writeFile(file, Buffer.from(await response.arrayBuffer()));

    const [summary] = await query<{ n: string; ids: string; first: string; last: string; sealed: string }>(
      `SELECT count(*) AS n, count(DISTINCT id) AS ids, min(seq) AS first, max(seq) AS last,
         count(seal_hash) AS sealed FROM read_json('${file}', format = 'newline_delimited')`,
    );
    expect(Number(summary?.n)).toBe(segment.records);
    expect(Number(summary?.ids)).toBe(segment.records);
    expect(Number(summary?.sealed)).toBe(segment.records);
    expect(Number(summary?.last) - Number(summary?.first) + 1).toBe(segment.records);

    const rows = await query<{ id: string; chain: string; chain_seq: string; chain_hash: string; event: string }>(
      `SELECT id, chain, chain_seq, chain_hash, event FROM read_json('${file}', format = 'newline_delimited') ORDER BY seq`,
    );
    expect(ids).toEqual(expect.arrayContaining(rows.map((row) => row.id)));
    expect(new Set(rows.map((row) => row.event))).toEqual(new Set(['token.exchange']));
    expect(rows.every((row) => /^[0-9a-f]{64}$/.test(row.chain_hash))).toBe(true);
  });
});
