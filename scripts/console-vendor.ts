/**
 * `npm run console:vendor` (part of `npm run build`, so `npm ci`, `npm run dev` and the tests run it)
 * copies the console's third-party files from node_modules into `console/public/vendor/`, where Workers
 * Static Assets serve them from the broker's own origin under the console's Content-Security-Policy. The
 * copies are not committed: the version in package-lock.json is the one served.
 *
 * Chart.js is copied as its UMD build, which carries its one dependency (@kurkle/color) inside and sets
 * `globalThis.Chart`: the ES module build imports that dependency by a bare name, which a page could only
 * resolve with an inline import map, and the CSP allows no inline script.
 */
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const VENDOR = join(ROOT, 'console/public/vendor');

/** What the console loads: a package (installed at the root by npm ci), its file, and its name in `vendor/`. */
const FILES = [{ pkg: 'chart.js', file: 'dist/chart.umd.min.js', to: 'chart.umd.min.js' }];

await mkdir(VENDOR, { recursive: true });
for (const { pkg, file, to } of FILES) {
  const dir = join(ROOT, 'node_modules', pkg);
  const { version } = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8'));
  await copyFile(join(dir, file), join(VENDOR, to));
  console.log(`console: ${pkg} ${version} -> console/public/vendor/${to}`);
}
