/**
 * The billing meter: counts, in this isolate's module state, every operation Cloudflare bills (Worker
 * invocations, Durable Object requests and alarms, Durable Object storage rows, D1 queries and rows, Queue
 * and R2 operations), for `npm run bench`'s cost model. Off unless the Worker var `BILLING_METER` is `"on"`;
 * off, every function here hands back the object it was given. Observational only: it never changes what a
 * call does or answers.
 *
 * It is wired at the entry points only: {@link meteredHandler} around the Worker's handlers and
 * {@link MeteredObject} as the base of every Durable Object, which meter the `env` (by binding type, so a
 * Queue or R2 binding added later is counted with no more work) and the object's storage.
 *
 * Module state is one count for the whole broker because locally (Miniflare, workerd) the Worker and all its
 * Durable Objects run in ONE isolate: checked on 2026-12-07 with a throwaway Worker whose object incremented
 * a module-level counter that the Worker's next `fetch` then read (same isolate id, same counter). On
 * Cloudflare each object may run in an isolate of its own, so there a snapshot is one isolate's share only.
 */
import { DurableObject } from 'cloudflare:workers';

export interface MeterCounts {
  /** Worker invocations: `fetch`, `scheduled` and `queue` handler calls. */
  workerInvocations: number;
  /** Durable Object requests: each RPC method call (or `fetch`) through a stub. */
  doRequests: number;
  /** Durable Object alarm invocations (billed as requests too). */
  doAlarms: number;
  /** Rows read and written by the objects' SQL (`SqlStorageCursor.rowsRead` / `rowsWritten`). */
  doSqlRowsRead: number;
  doSqlRowsWritten: number;
  /** Key-value API on SQLite-backed objects: a row read per key got or listed, a row written per key put or
   * deleted and per `setAlarm` / `deleteAlarm`. */
  doKvRowsRead: number;
  doKvRowsWritten: number;
  /** D1 queries (each statement of a batch is one), and the rows D1's `meta` reports. */
  d1Queries: number;
  d1RowsRead: number;
  d1RowsWritten: number;
  /** D1 queries whose rows D1 does not report (`raw()` and `exec()` drop `meta`): counted, rows unknown. */
  d1QueriesWithoutMeta: number;
  /** Queue messages sent, and the 64 KB units they were billed as when written. */
  queueMessagesSent: number;
  queueUnitsWritten: number;
  /** 64 KB units of messages delivered to a `queue` handler (each is read once and deleted once if acked). */
  queueUnitsRead: number;
  /** R2 class A (writes, lists, multipart) and class B (reads, heads) operations. */
  r2ClassA: number;
  r2ClassB: number;
}

const counts: MeterCounts = {
  workerInvocations: 0,
  doRequests: 0,
  doAlarms: 0,
  doSqlRowsRead: 0,
  doSqlRowsWritten: 0,
  doKvRowsRead: 0,
  doKvRowsWritten: 0,
  d1Queries: 0,
  d1RowsRead: 0,
  d1RowsWritten: 0,
  d1QueriesWithoutMeta: 0,
  queueMessagesSent: 0,
  queueUnitsWritten: 0,
  queueUnitsRead: 0,
  r2ClassA: 0,
  r2ClassB: 0,
};

/** Whether `env` turns the meter on. */
export function meterOn(env: unknown): boolean {
  return typeof env === 'object' && env !== null && Reflect.get(env, 'BILLING_METER') === 'on';
}

/**
 * SQL cursors not read yet. A cursor's `rowsRead` grows as it is iterated (workerd runs the first step at
 * `exec`), so each is read a microtask after it was made, once the synchronous code that made it has
 * consumed it, as every statement here is; a snapshot reads the rest.
 */
let cursors: SqlStorageCursor<Record<string, SqlStorageValue>>[] = [];

function foldCursors(): void {
  for (const cursor of cursors) {
    counts.doSqlRowsRead += cursor.rowsRead;
    counts.doSqlRowsWritten += cursor.rowsWritten;
  }
  cursors = [];
}

/** The counts so far. */
export function meterSnapshot(): MeterCounts {
  foldCursors();
  return { ...counts };
}

const KB64 = 64 * 1024;
const encoder = new TextEncoder();

/** The 64 KB units a Queue message is billed as (its body as sent: bytes, text or JSON). */
function queueUnits(body: unknown): number {
  let bytes: number;
  if (typeof body === 'string') bytes = encoder.encode(body).byteLength;
  else if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) bytes = body.byteLength;
  else bytes = encoder.encode(JSON.stringify(body) ?? '').byteLength;
  return Math.max(1, Math.ceil(bytes / KB64));
}

/** A function property of `target`, bound to it, or the property itself. */
function bound(target: object, key: string | symbol): unknown {
  const value: unknown = Reflect.get(target, key);
  return typeof value === 'function' ? value.bind(target) : value;
}

/** `target` behind a proxy whose listed methods are `wrapped`; everything else passes through, bound. */
function intercept<T extends object>(target: T, wrapped: Record<string, (...args: unknown[]) => unknown>): T {
  return new Proxy(target, {
    get(object, key) {
      const own = typeof key === 'string' ? wrapped[key] : undefined;
      return own ?? bound(object, key);
    },
  });
}

/** Calls `target[key](...args)`. */
function call(target: object, key: string, args: unknown[]): unknown {
  const method: unknown = Reflect.get(target, key);
  if (typeof method !== 'function') throw new TypeError(`${key} is not a method`);
  return Reflect.apply(method, target, args);
}

/** A stub whose every method call (RPC or `fetch`) counts as one Durable Object request. */
function meteredStub(stub: DurableObjectStub): DurableObjectStub {
  return new Proxy(stub, {
    get(object, key) {
      const value: unknown = Reflect.get(object, key);
      if (typeof value !== 'function' || key === 'then') return value;
      return (...args: unknown[]) => {
        counts.doRequests += 1;
        return Reflect.apply(value, object, args);
      };
    },
  });
}

function meteredNamespace(namespace: DurableObjectNamespace): DurableObjectNamespace {
  return intercept(namespace, {
    get: (...args) => meteredStub(call(namespace, 'get', args) as DurableObjectStub),
    getByName: (...args) => meteredStub(call(namespace, 'getByName', args) as DurableObjectStub),
    jurisdiction: (...args) => meteredNamespace(call(namespace, 'jurisdiction', args) as DurableObjectNamespace),
  });
}

/** The statements behind the metered ones: `batch` takes D1's own. */
const statements = new WeakMap<D1PreparedStatement, D1PreparedStatement>();

function countD1(result: D1Result | D1Response): void {
  counts.d1Queries += 1;
  counts.d1RowsRead += result.meta.rows_read;
  counts.d1RowsWritten += result.meta.rows_written;
}

function meteredStatement(statement: D1PreparedStatement): D1PreparedStatement {
  const metered = intercept(statement, {
    bind: (...args) => meteredStatement(call(statement, 'bind', args) as D1PreparedStatement),
    run: async () => {
      const result = await statement.run();
      countD1(result);
      return result;
    },
    all: async () => {
      const result = await statement.all();
      countD1(result);
      return result;
    },
    // `first()` drops `meta`: the same query through `all()` (which D1's `first()` is made of), its first row.
    first: async (column) => {
      const result = await statement.all<Record<string, unknown>>();
      countD1(result);
      const row = result.results[0];
      if (row === undefined) return null;
      if (typeof column !== 'string') return row;
      if (!(column in row)) throw new Error(`D1_COLUMN_NOTFOUND: Column not found (${column})`);
      return row[column];
    },
    raw: async (...args) => {
      counts.d1QueriesWithoutMeta += 1;
      return call(statement, 'raw', args);
    },
  });
  statements.set(metered, statement);
  return metered;
}

function meteredD1(db: D1Database): D1Database {
  return intercept(db, {
    prepare: (...args) => meteredStatement(call(db, 'prepare', args) as D1PreparedStatement),
    batch: async (list) => {
      const own = (list as D1PreparedStatement[]).map((statement) => statements.get(statement) ?? statement);
      const results = await db.batch(own);
      for (const result of results) countD1(result);
      return results;
    },
    exec: async (...args) => {
      const result = (await call(db, 'exec', args)) as D1ExecResult;
      counts.d1QueriesWithoutMeta += result.count;
      return result;
    },
  });
}

function meteredQueue(queue: Queue): Queue {
  return intercept(queue, {
    send: (...args) => {
      counts.queueMessagesSent += 1;
      counts.queueUnitsWritten += queueUnits(args[0]);
      return call(queue, 'send', args);
    },
    sendBatch: (...args) => {
      for (const message of args[0] as Iterable<MessageSendRequest>) {
        counts.queueMessagesSent += 1;
        counts.queueUnitsWritten += queueUnits(message.body);
      }
      return call(queue, 'sendBatch', args);
    },
  });
}

const classA =
  (target: object, key: string) =>
  (...args: unknown[]) => {
    counts.r2ClassA += 1;
    return call(target, key, args);
  };

function meteredUpload(upload: R2MultipartUpload): R2MultipartUpload {
  return intercept(upload, { uploadPart: classA(upload, 'uploadPart'), complete: classA(upload, 'complete') });
}

function meteredR2(bucket: R2Bucket): R2Bucket {
  const classB =
    (key: string) =>
    (...args: unknown[]) => {
      counts.r2ClassB += 1;
      return call(bucket, key, args);
    };
  return intercept(bucket, {
    put: classA(bucket, 'put'),
    list: classA(bucket, 'list'),
    get: classB('get'),
    head: classB('head'),
    createMultipartUpload: async (...args) => {
      counts.r2ClassA += 1;
      return meteredUpload((await call(bucket, 'createMultipartUpload', args)) as R2MultipartUpload);
    },
    resumeMultipartUpload: (...args) => meteredUpload(call(bucket, 'resumeMultipartUpload', args) as R2MultipartUpload),
  });
}

/** A binding metered by its type (workerd's class names), or the binding itself. */
function meteredBinding(binding: unknown): unknown {
  if (typeof binding !== 'object' || binding === null) return binding;
  switch (binding.constructor?.name) {
    case 'DurableObjectNamespace':
      return meteredNamespace(binding as DurableObjectNamespace);
    case 'D1Database':
      return meteredD1(binding as D1Database);
    case 'WorkerQueue':
      return meteredQueue(binding as Queue);
    case 'R2Bucket':
      return meteredR2(binding as R2Bucket);
    default:
      return binding;
  }
}

const meteredEnvs = new WeakMap<object, object>();

/** `env` with its Durable Object, D1, Queue and R2 bindings metered; `env` itself when the meter is off. */
export function meteredEnv<E extends object>(env: E): E {
  if (!meterOn(env)) return env;
  const known = meteredEnvs.get(env);
  if (known !== undefined) return known as E;
  const metered = Object.fromEntries(Object.entries(env).map(([name, binding]) => [name, meteredBinding(binding)]));
  meteredEnvs.set(env, metered);
  return metered as E;
}

function meteredSql(sql: SqlStorage): SqlStorage {
  return intercept(sql, {
    exec: (...args) => {
      const cursor = call(sql, 'exec', args) as SqlStorageCursor<Record<string, SqlStorageValue>>;
      if (cursors.length === 0) queueMicrotask(foldCursors);
      cursors.push(cursor);
      return cursor;
    },
  });
}

/** Keys a key-value call names: one key, or an array of them, or the keys of an object of entries. */
function keyCount(keys: unknown): number {
  if (typeof keys === 'string') return 1;
  if (Array.isArray(keys)) return keys.length;
  return typeof keys === 'object' && keys !== null ? Object.keys(keys).length : 1;
}

/**
 * Storage whose SQL cursors are read and whose key-value calls are counted as the rows Cloudflare bills for a
 * SQLite-backed object: a row read per key got or listed, a row written per key put or deleted, and one per
 * `setAlarm` (https://developers.cloudflare.com/durable-objects/platform/pricing/, storage billing
 * footnotes 2 and 3). `deleteAlarm` is counted as `setAlarm` is; `getAlarm` is not billed.
 */
function meteredStorage(storage: DurableObjectStorage): DurableObjectStorage {
  const sql = meteredSql(storage.sql);
  const written =
    (key: string) =>
    (...args: unknown[]) => {
      counts.doKvRowsWritten += key === 'setAlarm' || key === 'deleteAlarm' ? 1 : keyCount(args[0]);
      return call(storage, key, args);
    };
  return new Proxy(storage, {
    get(object, key) {
      switch (key) {
        case 'sql':
          return sql;
        case 'get':
          return (...args: unknown[]) => {
            counts.doKvRowsRead += keyCount(args[0]);
            return call(object, 'get', args);
          };
        case 'list':
          return async (...args: unknown[]) => {
            const listed = (await call(object, 'list', args)) as Map<string, unknown>;
            counts.doKvRowsRead += Math.max(1, listed.size);
            return listed;
          };
        case 'put':
        case 'delete':
        case 'setAlarm':
        case 'deleteAlarm':
          return written(key);
        default:
          return bound(object, key);
      }
    },
  });
}

function meteredState<S extends DurableObjectState<unknown>>(ctx: S): S {
  const storage = meteredStorage(ctx.storage);
  return new Proxy(ctx, {
    get: (object, key) => (key === 'storage' ? storage : bound(object, key)),
  });
}

/**
 * The base of every Durable Object here: with the meter on, its `env` and `ctx.storage` are metered and its
 * alarm invocations counted. Subclasses use `this.ctx` and `this.env`, not the constructor's arguments.
 */
export class MeteredObject extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, meteredEnv(env));
    if (!meterOn(env)) return;
    // workerd takes only a real DurableObjectState in `super`; the metered one replaces it after.
    this.ctx = meteredState(this.ctx);
    const alarm: unknown = Reflect.get(this, 'alarm');
    if (typeof alarm === 'function') {
      // workerd finds `alarm` on the instance, so an own property takes the class's place.
      Object.defineProperty(this, 'alarm', {
        value: (...args: unknown[]) => {
          counts.doAlarms += 1;
          return Reflect.apply(alarm, this, args);
        },
      });
    }
  }
}

/** The Worker's handlers, each invocation counted and given the metered `env` when the meter is on. */
export function meteredHandler<H extends ExportedHandler<Env>>(handler: H): H {
  const { fetch, scheduled, queue } = handler;
  const metered: ExportedHandler<Env> = {
    ...handler,
    ...(fetch && {
      fetch(request, env, ctx) {
        if (meterOn(env)) counts.workerInvocations += 1;
        return fetch(request, meteredEnv(env), ctx);
      },
    }),
    ...(scheduled && {
      scheduled(controller, env, ctx) {
        if (meterOn(env)) counts.workerInvocations += 1;
        return scheduled(controller, meteredEnv(env), ctx);
      },
    }),
    ...(queue && {
      queue(batch, env, ctx) {
        if (meterOn(env)) {
          counts.workerInvocations += 1;
          for (const message of batch.messages) counts.queueUnitsRead += queueUnits(message.body);
        }
        return queue(batch, meteredEnv(env), ctx);
      },
    }),
  };
  return metered as H;
}
