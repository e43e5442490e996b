/**
 * Load on loopback with autocannon: every request takes the next body of a pre-generated pool, so each
 * attestation is sent once, and a run is bounded both in time and in count.
 *
 * autocannon stops a timed run by dropping its connections, which loses the answers still in flight: a
 * token could be issued (and audited) that the benchmark never saw. So a run here is bounded by `amount`
 * (the pool) and, at the deadline, each connection finishes the request it has in flight and sends no
 * other: every request sent is answered and counted.
 *
 * Every 2xx answer's `Server-Timing` header is read too: the broker names in it each storage round trip
 * the answer waited for in series, one entry each (see {@link serverTimingEntries}).
 */
import autocannon from 'autocannon';

/** The bodies to send, in order, each once; `next` is the index of the next unused one. */
export interface RequestPool {
  contentType: string;
  bodies: string[];
  next: number;
}

export interface LoadSettings {
  connections: number;
  /** Seconds after which no new request is sent. */
  seconds: number;
  /** At most this many requests (default: the whole pool). */
  requests?: number;
}

export interface LoadResult {
  /** Requests answered. */
  requests: number;
  /** 2xx answers carrying an access token. */
  tokens: number;
  /** Answers that were not 2xx, by status. */
  non2xx: Record<string, number>;
  /** 2xx answers without an access token (a JWT with a `jti`) in their body. */
  withoutToken: number;
  /** Connection errors and timeouts (requests without an answer). */
  errors: number;
  /** From the first request sent to the last answer, in seconds. */
  elapsed: number;
  tokensPerSecond: number;
  /** Latency of every answer, in milliseconds. */
  latency: { p50: number; p99: number; max: number; mean: number };
  /** The `Server-Timing` headers of the 2xx answers. */
  serverTiming: ServerTimingTally;
  /** The `jti` of every access token received, in order. */
  tokenIds: string[];
}

/** What the 2xx answers' `Server-Timing` headers held, over a run. */
export interface ServerTimingTally {
  /** 2xx answers that carried the header. */
  answers: number;
  /** 2xx answers that did not. */
  without: number;
  /** Entries over all answers that carried the header. */
  entries: number;
  /** Entries by name (`agent`, `lease`, ...). */
  names: Record<string, number>;
}

/** The bits of autocannon's per-connection client that bound it; not in its type declarations. */
interface BoundedClient {
  reqsMade: number;
  responseMax: number;
}

/** The `jti` of an access token in a token response body, or undefined if the body carries none. */
export function tokenId(body: string): string | undefined {
  try {
    const token = (JSON.parse(body) as { access_token?: unknown }).access_token;
    if (typeof token !== 'string') return undefined;
    const payload = token.split('.')[1];
    if (payload === undefined) return undefined;
    const { jti } = JSON.parse(Buffer.from(payload, 'base64url').toString()) as { jti?: unknown };
    return typeof jti === 'string' ? jti : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The entries of a `Server-Timing` header's values (W3C Server Timing: a comma-separated list of
 * `name;param=value` metrics, quoted strings may hold commas), as their names.
 */
export function serverTimingEntries(values: string | string[]): string[] {
  const text = Array.isArray(values) ? values.join(',') : values;
  const entries = text.match(/(?:[^,"]|"(?:[^"\\]|\\.)*")+/g) ?? [];
  return entries.map((entry) => (entry.split(';')[0] ?? '').trim()).filter((name) => name.length > 0);
}

/** The `Server-Timing` values of an answer's headers (their names keep the server's case), if any. */
function serverTimingOf(headers: Record<string, string | string[]>): string | string[] | undefined {
  for (const [name, value] of Object.entries(headers)) if (name.toLowerCase() === 'server-timing') return value;
  return undefined;
}

/** The value at quantile `q` of ascending `sorted` (nearest rank). */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}

/**
 * POSTs pool bodies to `url` for `settings.seconds` (or until the pool runs out) over
 * `settings.connections` keep-alive connections, one request in flight on each.
 */
export async function runLoad(url: string, pool: RequestPool, settings: LoadSettings): Promise<LoadResult> {
  const remaining = pool.bodies.length - pool.next;
  if (remaining < settings.connections) throw new Error(`the pool has ${remaining} bodies left: too few to run`);
  const clients: BoundedClient[] = [];
  const latencies: number[] = [];
  const tokenIds: string[] = [];
  const non2xx: Record<string, number> = {};
  let tokens = 0;
  let withoutToken = 0;
  let lastAnswer = 0;
  const timing = { answers: 0, without: 0, entries: 0, names: new Map<string, number>() };

  let finish: (error: Error | null, result: autocannon.Result) => void = () => undefined;
  const finished = new Promise<autocannon.Result>((resolve, reject) => {
    finish = (error, result) => (error ? reject(error) : resolve(result));
  });
  const started = performance.now();
  const instance = autocannon(
    {
      url,
      method: 'POST',
      connections: settings.connections,
      pipelining: 1,
      amount: Math.min(remaining, settings.requests ?? remaining),
      timeout: 10,
      headers: { 'content-type': pool.contentType },
      setupClient: (client) => {
        clients.push(client as unknown as BoundedClient);
      },
      requests: [
        {
          setupRequest: (request) => {
            // autocannon builds each request just before sending it: take the next body, never one twice.
            const body = pool.bodies[pool.next++];
            return { ...request, body };
          },
          onResponse: (status, body, _context, headers) => {
            if (status >= 200 && status < 300) {
              const header = serverTimingOf(headers as Record<string, string | string[]>);
              if (header === undefined) timing.without++;
              else {
                timing.answers++;
                for (const name of serverTimingEntries(header)) {
                  timing.entries++;
                  timing.names.set(name, (timing.names.get(name) ?? 0) + 1);
                }
              }
              const jti = tokenId(body);
              if (jti === undefined) withoutToken++;
              else {
                tokens++;
                tokenIds.push(jti);
              }
            } else {
              non2xx[status] = (non2xx[status] ?? 0) + 1;
            }
          },
        },
      ],
    },
    (error, result) => finish(error, result),
  );
  instance.on('response', (_client, _status, _bytes, responseTime) => {
    latencies.push(responseTime);
    lastAnswer = performance.now();
  });
  const deadline = setTimeout(() => {
    // Each connection stops after the request it has in flight; autocannon finishes once all have.
    for (const client of clients) client.responseMax = Math.max(1, client.reqsMade);
  }, settings.seconds * 1000);
  const result = await finished.finally(() => clearTimeout(deadline));

  const sorted = Float64Array.from(latencies).sort();
  const elapsed = (lastAnswer - started) / 1000;
  return {
    requests: latencies.length,
    tokens,
    non2xx,
    withoutToken,
    errors: result.errors,
    elapsed,
    tokensPerSecond: elapsed > 0 ? tokens / elapsed : 0,
    latency: {
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      max: sorted.length > 0 ? (sorted[sorted.length - 1] ?? Number.NaN) : Number.NaN,
      mean: latencies.reduce((sum, value) => sum + value, 0) / Math.max(1, latencies.length),
    },
    serverTiming: { ...timing, names: Object.fromEntries(timing.names) },
    tokenIds,
  };
}
