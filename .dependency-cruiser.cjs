/**
 * The worker's layers, checked by `npm run lint` (dependency-cruiser). From the bottom up:
 *
 *   core/ and policy/     pure: claims, checks, errors, the policy bundle and engine; no I/O, no binding
 *   audit/, agents/, control/, keys/, approvals/, durable/, status/
 *                         the Durable Objects and the audit path (queue consumer, archive), with what they share
 *   stores/               the worker's side of every object and database: the deadline and the 503
 *   exchange/             the /token pipeline, over stores passed in
 *   http/, admin/         request plumbing: bodies, errors, the audit trail, admin sign-in
 *   routes/, index.ts     the Hono app
 *
 * An import may go down or sideways, never up, and no module may import itself round a circle.
 * See docs/architecture.md.
 */
const layer = (folders) => `^worker/(${folders.join('|')})/`;

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Modules that import each other cannot be read, tested or loaded one at a time.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'core-is-pure',
      comment: 'The core and the policy take what they need as arguments: they import nothing that does I/O.',
      severity: 'error',
      from: { path: layer(['core', 'policy']) },
      to: {
        path: '^worker/',
        pathNot: [layer(['core', 'policy']), '^worker/audit/record\\.ts$'],
        dependencyTypesNot: ['type-only'],
      },
    },
    {
      name: 'objects-below-stores',
      comment: 'The objects and the audit path are what the stores call: they never call a store or a route.',
      severity: 'error',
      from: { path: layer(['audit', 'agents', 'control', 'keys', 'approvals', 'durable', 'status']) },
      to: { path: layer(['stores', 'exchange', 'http', 'admin', 'routes']) },
    },
    {
      name: 'stores-below-requests',
      comment: 'A store bounds a call to state; it knows nothing of the request that makes it.',
      severity: 'error',
      from: { path: layer(['stores']) },
      to: { path: layer(['exchange', 'http', 'admin', 'routes']) },
    },
    {
      name: 'pipeline-below-http',
      comment: 'The /token pipeline is given its input and stores; the route renders its answer.',
      severity: 'error',
      from: { path: layer(['exchange']) },
      to: { path: layer(['http', 'admin', 'routes']) },
    },
    {
      name: 'http-below-routes',
      comment: 'Request plumbing serves every route and imports none.',
      severity: 'error',
      from: { path: layer(['http', 'admin']) },
      to: { path: layer(['routes']) },
    },
    {
      name: 'worker-stands-alone',
      comment: 'The worker bundles nothing from the scripts, tests or console beside it.',
      severity: 'error',
      from: { path: '^worker/' },
      to: { path: '^(scripts|test|console|examples)/' },
    },
  ],
  options: {
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '\\.generated\\.json$' },
  },
};
