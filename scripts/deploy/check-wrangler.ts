/**
 * Deploy checks of `wrangler.toml`: the broker's `ISSUER`, the D1 database id, Durable Object classes
 * without a migration, secrets left in `[vars]`, and where the Worker will answer. Bindings and Durable
 * Objects are read from the file, never assumed.
 */
import { type HostKind, hostKind } from './hosts';
import { type DeployProblem, error, warning } from './problems';
import type { WranglerConfig } from './wrangler-config';

/** The broker's secrets (`worker/env.d.ts`): set with `wrangler secret put`, never in `[vars]`. */
export const BROKER_SECRETS = ['APPROVAL_WEBHOOK_SECRET', 'SIGNING_KEY'] as const;

const SET_ISSUER = 'set ISSUER in [vars] to the public https URL agents and APIs will reach the broker at';
const PLACEHOLDER_ID = /^0{8}-0{4}-0{4}-0{4}-0{12}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function records(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.map(record) : [];
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item) => typeof item === 'string') : [];
}

const HOST_PROBLEMS: Record<
  Exclude<HostKind, 'public'>,
  { code: 'issuer-not-public' | 'issuer-example'; why: string }
> = {
  private: {
    code: 'issuer-not-public',
    why: 'a local or private address: agents and APIs elsewhere cannot reach it, and every token names it',
  },
  example: { code: 'issuer-example', why: 'a name reserved for examples, which never resolves' },
};

/** `ISSUER` must be the broker's public https origin: it is the `iss` of every token and the `aud` of attestations. */
function checkIssuer(config: WranglerConfig): { problems: DeployProblem[]; issuer?: URL } {
  const at = { file: config.path, line: config.lineOf(['vars', 'ISSUER']) };
  const raw = record(config.value.vars).ISSUER;
  if (typeof raw !== 'string' || raw === '') {
    return { problems: [error('issuer-missing', at, 'no ISSUER in [vars]', SET_ISSUER)] };
  }
  const url = URL.parse(raw);
  if (url === null || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    return { problems: [error('issuer-invalid', at, `ISSUER ${raw} is not an http(s) URL`, SET_ISSUER)] };
  }
  const problems: DeployProblem[] = [];
  if (raw !== url.origin) {
    problems.push(
      error(
        'issuer-invalid',
        at,
        `ISSUER ${raw} is not a bare origin: the broker serves /token and /.well-known/* at the root, and a path or trailing slash breaks the metadata URLs`,
        `set ISSUER to ${url.origin}`,
      ),
    );
  }
  if (url.protocol === 'http:') {
    problems.push(
      error(
        'issuer-not-https',
        at,
        `ISSUER ${raw} is plain http: tokens and attestations would cross in clear`,
        SET_ISSUER,
      ),
    );
  }
  const kind = hostKind(url.hostname);
  if (kind !== 'public') {
    const { code, why } = HOST_PROBLEMS[kind];
    problems.push(error(code, at, `ISSUER ${raw} is ${why}`, SET_ISSUER));
  }
  return { problems, issuer: url };
}

/** Route patterns (`route`, `routes`): host and path of each, custom domains as the whole host. */
function routePatterns(config: WranglerConfig): { host: string; path: string }[] {
  const { route, routes } = config.value;
  const all = [...(route === undefined ? [] : [route]), ...(Array.isArray(routes) ? routes : [])];
  return all.flatMap((entry) => {
    const pattern = typeof entry === 'string' ? entry : record(entry).pattern;
    if (typeof pattern !== 'string') return [];
    const bare = pattern.replace(/^https?:\/\//, '');
    const slash = bare.indexOf('/');
    return [{ host: slash < 0 ? bare : bare.slice(0, slash), path: slash < 0 ? '' : bare.slice(slash) }];
  });
}

function globMatches(glob: string, value: string): boolean {
  const escaped = glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${escaped.join('.*')}$`, 'i').test(value);
}

/** Whether the Worker this file deploys answers at `ISSUER`, and not also somewhere it should not. */
function checkRouting(config: WranglerConfig, issuer: URL): DeployProblem[] {
  const name = typeof config.value.name === 'string' ? config.value.name : '';
  const workersDev = config.value.workers_dev !== false;
  const routesKey = ['routes', 'route'].find((key) => config.value[key] !== undefined);
  const at = { file: config.path, line: config.lineOf(routesKey === undefined ? ['vars', 'ISSUER'] : [routesKey]) };
  if (issuer.hostname.endsWith('.workers.dev')) {
    if (workersDev && issuer.hostname.split('.')[0] === name) return [];
    return [
      warning(
        'issuer-not-routed',
        { file: config.path, line: config.lineOf(['vars', 'ISSUER']) },
        `ISSUER ${issuer.origin} is on workers.dev, but this Worker ${workersDev ? `is named ${name}` : 'has workers_dev = false'}`,
        `use https://${name}.<your-subdomain>.workers.dev with workers_dev enabled, or a custom domain`,
      ),
    ];
  }
  const served = routePatterns(config).some(
    (route) => globMatches(route.host, issuer.hostname) && ['', '/', '/*', '*'].includes(route.path),
  );
  const problems: DeployProblem[] = [];
  if (!served) {
    problems.push(
      warning(
        'issuer-not-routed',
        at,
        `no route or custom domain in ${config.path} serves ${issuer.hostname}/*, the host of ISSUER`,
        `add routes = [{ pattern = "${issuer.hostname}", custom_domain = true }] (or attach the domain in the dashboard and ignore this)`,
      ),
    );
  }
  if (workersDev) {
    problems.push(
      warning(
        'workers-dev-exposed',
        { file: config.path, line: config.lineOf(['workers_dev']) },
        `the broker will also answer at ${name}.<subdomain>.workers.dev, outside the rules (WAF, Access) of ${issuer.hostname}`,
        'set workers_dev = false',
      ),
    );
  }
  return problems;
}

function checkDatabases(config: WranglerConfig): DeployProblem[] {
  return records(config.value.d1_databases).flatMap((database, index) => {
    const id = database.database_id;
    if (typeof id === 'string' && UUID.test(id) && !PLACEHOLDER_ID.test(id)) return [];
    const name = typeof database.database_name === 'string' ? database.database_name : 'DATABASE';
    const at = { file: config.path, line: config.lineOf(['d1_databases', index, 'database_id']) };
    const what = typeof id !== 'string' ? 'has no database_id' : `has the placeholder database_id ${id}`;
    return [
      error(
        'd1-placeholder-id',
        at,
        `D1 database ${name} (${String(database.binding)}) ${what}`,
        `run \`npx wrangler d1 create ${name}\` and put the database_id it prints here`,
      ),
    ];
  });
}

/** Every Durable Object class this Worker binds must be created by a migration (and not deleted since). */
function checkDurableObjects(config: WranglerConfig): DeployProblem[] {
  const problems: DeployProblem[] = [];
  const created = new Set<string>();
  const tags = new Set<string>();
  for (const [index, migration] of records(config.value.migrations).entries()) {
    const tag = String(migration.tag);
    if (tags.has(tag)) {
      problems.push(
        error(
          'migration-duplicate-tag',
          { file: config.path, line: config.lineOf(['migrations', index, 'tag']) },
          `migration tag ${tag} appears twice`,
          'give every [[migrations]] entry its own tag, in order',
        ),
      );
    }
    tags.add(tag);
    for (const name of [...strings(migration.new_classes), ...strings(migration.new_sqlite_classes)]) created.add(name);
    for (const renamed of records(migration.renamed_classes)) {
      if (typeof renamed.from === 'string') created.delete(renamed.from);
      if (typeof renamed.to === 'string') created.add(renamed.to);
    }
    for (const name of strings(migration.deleted_classes)) created.delete(name);
  }
  for (const [index, binding] of records(record(config.value.durable_objects).bindings).entries()) {
    // A class of another Worker (`script_name`) is migrated there.
    if (typeof binding.class_name !== 'string' || binding.script_name !== undefined) continue;
    if (created.has(binding.class_name)) continue;
    problems.push(
      error(
        'do-class-without-migration',
        { file: config.path, line: config.lineOf(['durable_objects', 'bindings', index]) },
        `Durable Object ${String(binding.name)} binds class ${binding.class_name}, which no [[migrations]] entry creates: the deploy would fail`,
        `add [[migrations]] with a new tag and new_sqlite_classes = ["${binding.class_name}"]`,
      ),
    );
  }
  return problems;
}

function checkVars(config: WranglerConfig): DeployProblem[] {
  const vars = record(config.value.vars);
  const problems = BROKER_SECRETS.filter((name) => name in vars).map((name) =>
    error(
      'secret-in-vars',
      { file: config.path, line: config.lineOf(['vars', name]) },
      `${name} is in [vars]: vars are plain text, in this repository and in the dashboard`,
      `remove it from [vars] and store it with \`npx wrangler secret put ${name}\``,
    ),
  );
  // The benchmark's billing meter (worker/durable/meter.ts) wraps every binding and exposes /admin/meter.
  if ('BILLING_METER' in vars) {
    problems.push(
      error(
        'billing-meter-on',
        { file: config.path, line: config.lineOf(['vars', 'BILLING_METER']) },
        'BILLING_METER is in [vars]: the billing meter is for `npm run bench`, never a deployment',
        'remove BILLING_METER from [vars]',
      ),
    );
  }
  return problems;
}

function checkOperations(config: WranglerConfig): DeployProblem[] {
  const problems: DeployProblem[] = [];
  const observability = record(config.value.observability);
  if (observability.enabled !== true && record(observability.logs).enabled !== true) {
    problems.push(
      warning(
        'no-observability',
        { file: config.path, line: config.lineOf(['observability']) },
        'Workers Logs are off: the reasons the broker logs when it refuses or fails closed are kept nowhere',
        'add [observability] enabled = true (or read them live with `npx wrangler tail`)',
      ),
    );
  }
  if (config.value.env !== undefined) {
    problems.push(
      warning(
        'wrangler-env-unchecked',
        { file: config.path, line: config.lineOf(['env']) },
        '[env.*] sections are not checked: this check and `npm run deploy` use the top-level configuration',
        'deploy the top-level configuration, or check an environment by hand before `wrangler deploy --env`',
      ),
    );
  }
  return problems;
}

/** Runs every `wrangler.toml` check. */
export function checkWranglerConfig(config: WranglerConfig): DeployProblem[] {
  const { problems, issuer } = checkIssuer(config);
  return [
    ...problems,
    ...(issuer !== undefined && hostKind(issuer.hostname) === 'public' ? checkRouting(config, issuer) : []),
    ...checkDatabases(config),
    ...checkDurableObjects(config),
    ...checkVars(config),
    ...checkOperations(config),
  ];
}
