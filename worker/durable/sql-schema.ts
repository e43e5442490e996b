/**
 * Schema steps for a Durable Object's SQLite storage, applied once each, in order, when the object starts:
 * an object created by an older version of the broker gets the newer steps, a new one gets them all.
 */
export function migrate(sql: SqlStorage, steps: readonly string[]): void {
  sql.exec('CREATE TABLE IF NOT EXISTS _schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)');
  const version = sql.exec<{ version: number }>('SELECT version FROM _schema').toArray()[0]?.version ?? 0;
  if (version >= steps.length) return;
  for (const step of steps.slice(version)) sql.exec(step);
  sql.exec('INSERT OR REPLACE INTO _schema (id, version) VALUES (1, ?)', steps.length);
}
