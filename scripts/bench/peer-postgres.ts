/**
 * The durable peer's storage: an `oidc-provider` adapter over Postgres (with `pg`), in the shape its
 * documentation gives adapters (`example/my_adapter.js` in panva/node-oidc-provider: one instance per
 * model, `upsert`, `find`, `findByUid`, `findByUserCode`, `consume`, `destroy`, `revokeByGrantId`) and the
 * one-table layout of well-known SQL adapters such as Logto's: every model instance is a JSON payload
 * keyed by model and id, with its expiry.
 *
 * oidc-provider's own in-memory adapter is for development only (it says so at start-up); a team that runs
 * it for real gives it an adapter like this one. For the benchmark it matters because replay protection of
 * client assertions (`ReplayDetection`: a `find`, then an `upsert` of the assertion's `jti`) goes through
 * the adapter, so every token costs the peer a committed Postgres write, as every Tessera token costs a
 * durable write.
 */
import type { ClientBase, Pool } from 'pg';

/** The table and the indexes the adapter's lookups use (partial: only rows that carry the field). */
export const SCHEMA = `
  CREATE TABLE IF NOT EXISTS oidc_model_instances (
    model_name text NOT NULL,
    id text NOT NULL,
    payload jsonb NOT NULL,
    expires_at timestamptz,
    consumed_at timestamptz,
    PRIMARY KEY (model_name, id)
  );
  CREATE INDEX IF NOT EXISTS oidc_model_instances_uid
    ON oidc_model_instances (model_name, (payload->>'uid')) WHERE payload ? 'uid';
  CREATE INDEX IF NOT EXISTS oidc_model_instances_user_code
    ON oidc_model_instances (model_name, (payload->>'userCode')) WHERE payload ? 'userCode';
  CREATE INDEX IF NOT EXISTS oidc_model_instances_grant_id
    ON oidc_model_instances (model_name, (payload->>'grantId')) WHERE payload ? 'grantId';
`;

/** What oidc-provider stores for a model instance: its own JSON, opaque to the adapter. */
type Payload = Record<string, unknown>;

/** oidc-provider's adapter interface (its documentation's `MyAdapter`). */
export interface Adapter {
  upsert(id: string, payload: Payload, expiresIn: number | undefined): Promise<void>;
  find(id: string): Promise<Payload | undefined>;
  findByUid(uid: string): Promise<Payload | undefined>;
  findByUserCode(userCode: string): Promise<Payload | undefined>;
  consume(id: string): Promise<void>;
  destroy(id: string): Promise<void>;
  revokeByGrantId(grantId: string): Promise<void>;
}

const LIVE = '(expires_at IS NULL OR expires_at > now())';

interface Row {
  payload: Payload;
  consumed_at: Date | null;
}

/** The payload as oidc-provider expects it back: a consumed instance carries `consumed` (epoch seconds). */
function payloadOf(rows: Row[]): Payload | undefined {
  const [row] = rows;
  if (row === undefined) return undefined;
  return row.consumed_at === null
    ? row.payload
    : { ...row.payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) };
}

/**
 * The adapter factory oidc-provider's `adapter` setting takes: called with a model's name, it returns that
 * model's adapter, every query on `pool`.
 */
export function postgresAdapter(pool: Pool): (model: string) => Adapter {
  return (model) => ({
    async upsert(id, payload, expiresIn) {
      await pool.query(
        `INSERT INTO oidc_model_instances (model_name, id, payload, expires_at)
         VALUES ($1, $2, $3, CASE WHEN $4::double precision IS NULL THEN NULL ELSE now() + make_interval(secs => $4) END)
         ON CONFLICT (model_name, id)
         DO UPDATE SET payload = excluded.payload, expires_at = excluded.expires_at, consumed_at = NULL`,
        [model, id, payload, expiresIn ?? null],
      );
    },
    async find(id) {
      const { rows } = await pool.query<Row>(
        `SELECT payload, consumed_at FROM oidc_model_instances WHERE model_name = $1 AND id = $2 AND ${LIVE}`,
        [model, id],
      );
      return payloadOf(rows);
    },
    async findByUid(uid) {
      const { rows } = await pool.query<Row>(
        `SELECT payload, consumed_at FROM oidc_model_instances
         WHERE model_name = $1 AND payload ? 'uid' AND payload->>'uid' = $2 AND ${LIVE}`,
        [model, uid],
      );
      return payloadOf(rows);
    },
    async findByUserCode(userCode) {
      const { rows } = await pool.query<Row>(
        `SELECT payload, consumed_at FROM oidc_model_instances
         WHERE model_name = $1 AND payload ? 'userCode' AND payload->>'userCode' = $2 AND ${LIVE}`,
        [model, userCode],
      );
      return payloadOf(rows);
    },
    async consume(id) {
      await pool.query('UPDATE oidc_model_instances SET consumed_at = now() WHERE model_name = $1 AND id = $2', [
        model,
        id,
      ]);
    },
    async destroy(id) {
      await pool.query('DELETE FROM oidc_model_instances WHERE model_name = $1 AND id = $2', [model, id]);
    },
    async revokeByGrantId(grantId) {
      await pool.query(
        `DELETE FROM oidc_model_instances WHERE model_name = $1 AND payload ? 'grantId' AND payload->>'grantId' = $2`,
        [model, grantId],
      );
    },
  });
}

/** How many replay marks (`ReplayDetection` instances, one per client assertion accepted) Postgres holds. */
export async function replayMarkCount(db: ClientBase): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM oidc_model_instances WHERE model_name = 'ReplayDetection'`,
  );
  return Number(rows[0]?.n ?? 0);
}
