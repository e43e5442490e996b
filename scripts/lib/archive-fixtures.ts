/**
 * What a run of the audit archive needs outside the broker: a policy with a small hot window, audit records
 * chained as the deciding objects chain them, and the keeper (`AuditSealer`) to call from Node. Used by `npm
 * run bench:archive` and by the interop test that reads a segment with DuckDB.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { type ChainHead, decideRecord, EMPTY_CHAIN, linkRecord } from '../../worker/audit/record';
import { type LocalBroker, PROJECT_ROOT } from './local-broker';

/** A copy of `policies/` whose `audit` settings are `audit` (as `policies/tessera.yaml` spells them). */
export async function archivePolicies(audit: {
  hot_days: number;
  hot_max_bytes: number;
  segment_records: number;
}): Promise<{ dir: string; dispose(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-archive-policies-'));
  await cp(join(PROJECT_ROOT, 'policies'), dir, { recursive: true });
  const file = join(dir, 'tessera.yaml');
  const document = parseDocument(await readFile(file, 'utf8'));
  document.set('audit', audit);
  await writeFile(file, document.toString());
  return { dir, dispose: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * `count` granted `token.exchange` records, chained round-robin over `chains` agents' chains as their objects
 * would chain them, their decisions spread over the last 3 days: each with its id and its JSON as committed.
 */
export function* chainedRecords(
  count: number,
  chains: number,
  policyVersion: string,
): Generator<{ id: string; json: string }> {
  const heads = new Map<string, ChainHead>();
  const start = Date.now() - 3 * 86_400_000;
  for (let i = 0; i < count; i += 1) {
    const agent = `archive-bench-${i % chains}`;
    const at = start + Math.floor((i / count) * 3 * 86_400_000);
    const decided = decideRecord(
      {
        at,
        event: 'token.exchange',
        agent,
        owner: 'bench@example.com',
        audience: 'https://tickets.example.com',
        requestedActions: 'tickets:read tickets:comment',
        grantedActions: 'tickets:read tickets:comment',
        taskId: crypto.randomUUID(),
        taskDescription: `Summarise ticket T-${i} and post the summary as a comment for the on-call engineer`,
        tokenJti: crypto.randomUUID(),
        tokenExp: Math.floor(at / 1000) + 300,
        ip: '203.0.113.7',
        details: { grants: ['support-read'], ttl: 300 },
      },
      { decision: 'granted' },
      policyVersion,
    );
    const chain = `agent:${agent}`;
    const linked = linkRecord(decided, chain, heads.get(chain) ?? EMPTY_CHAIN);
    heads.set(chain, { seq: linked.chainSeq, hash: linked.chainHash });
    yield { id: linked.id, json: JSON.stringify(linked) };
  }
}

/** What a keeper's run did, as it reaches Node (`ArchiveRun` in worker/audit/archive.ts, which needs Workers' types). */
export interface ArchiveRun {
  segments: { segment: number; key: string; records: number; sha256: string }[];
  rowsWritten: number;
  stopped: 'nothing_due' | 'budget' | 'failed';
  error?: string;
}

/** The broker's keeper, called from Node: seal, then move what is due; the archive run's outcome. */
export async function keeper(broker: LocalBroker): Promise<{ maintain(): Promise<ArchiveRun> }> {
  const namespace = (await broker.miniflare.getDurableObjectNamespace('AUDIT_SEALER', 'tessera')) as unknown as {
    idFromName(name: string): unknown;
    get(id: unknown): { maintain(): Promise<{ archive: ArchiveRun; [Symbol.dispose]?: () => void }> };
  };
  const stub = namespace.get(namespace.idFromName('global'));
  return {
    async maintain() {
      const result = await stub.maintain();
      // An RPC result that reaches Node holds stubs until disposed.
      result[Symbol.dispose]?.();
      return result.archive;
    },
  };
}
