/**
 * Builds dist/ for @tessera/agent: ESM (dist/esm) then CommonJS (dist/cjs), each with declarations, one tsc
 * run after the other; dist/cjs is marked `"type": "commonjs"` so that Node and TypeScript read it as such.
 */
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const packageDir = fileURLToPath(new URL('.', import.meta.url));
const tscBin = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(`${packageDir}/dist`, { recursive: true, force: true });
for (const project of ['tsconfig.json', 'tsconfig.cjs.json'])
  execFileSync(process.execPath, [tscBin, '-p', project], { cwd: packageDir, stdio: 'inherit' });
writeFileSync(`${packageDir}/dist/cjs/package.json`, '{ "type": "commonjs" }\n');
