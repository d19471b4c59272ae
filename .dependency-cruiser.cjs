/**
 * The layering rules of src/, checked by test/unit/architecture.test.ts (so `npm test` and CI run them) and by hand
 * with `npx depcruise src`.
 *
 * - No import cycle, type-only imports aside (they are erased at run time).
 * - db/ is the bottom layer: it imports only db/ itself and the leaf modules listed in DB_MAY_IMPORT.
 * - Queries live in db/: nothing else imports drizzle, the PostgreSQL drivers, or a table object of db/schema.ts
 *   (row types are fine).
 * - src/ never imports scripts/, test/ or bench/.
 */

/** Leaf modules db/ may use: they import nothing of the project's own. */
const DB_MAY_IMPORT = ['src/errors\\.ts$', 'src/json\\.ts$', 'src/shopify/topics\\.ts$'];

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycle',
      comment: 'An import cycle: modules that need each other to load. Move what both need into a module of its own.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'db-imports-upward',
      comment: 'db/ is the bottom layer: it must not import the domain. Move the type or function it needs into db/.',
      severity: 'error',
      from: { path: '^src/db/' },
      to: { path: '^src/', pathNot: ['^src/db/', ...DB_MAY_IMPORT] },
    },
    {
      name: 'query-outside-db',
      comment: 'Every query is a named function in db/: only db/ uses drizzle and the database drivers.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/db/' },
      // Resolved (node_modules/…) or not (a bare name), so the rule also holds where the package is not installed.
      to: { path: '(^|node_modules/)(@types/)?(drizzle-orm|pg|pg-[a-z-]+|@electric-sql/pglite)(/|$)' },
    },
    {
      name: 'table-outside-db',
      comment: 'A table object outside db/ is a query being built outside db/; import row types with `import type`.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/db/' },
      to: { path: '^src/db/schema\\.ts$', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'src-imports-outside-src',
      comment: 'src/ is what ships: it must not need scripts/, test/ or bench/.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(scripts|test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
