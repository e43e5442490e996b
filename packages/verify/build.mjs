/**
 * Builds dist/: the ESM build (dist/esm) and the CommonJS build (dist/cjs), each with its own declarations,
 * by tsc, in parallel. dist/cjs gets a package.json of `"type": "commonjs"`, so that Node and TypeScript read
 * its .js and .d.ts files as CommonJS.
 */
import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

const here = new URL('.', import.meta.url);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

/** Runs tsc on one project file; rejects when it reports an error. */
function compile(project) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', project], { cwd: here, stdio: 'inherit' });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tsc -p ${project} exited with ${code}`))));
  });
}

await rm(new URL('dist', here), { recursive: true, force: true });
await Promise.all([compile('tsconfig.json'), compile('tsconfig.cjs.json')]);
await writeFile(new URL('dist/cjs/package.json', here), '{ "type": "commonjs" }\n');
