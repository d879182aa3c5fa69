// Bundles the demo page into dist/ (index.html + main.js). tfjs resolves to its ESM builds, so the
// gradient registrations that @sparkmim/runtime imports join the same copy of tfjs-core.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

mkdirSync('dist', { recursive: true });
await build({
  entryPoints: ['src/main.ts'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  outfile: 'dist/main.js',
  conditions: ['@sparkmim/source'],
  mainFields: ['module', 'browser', 'main'],
  // No externals: every library entry bundles for the browser as it is (a Node built-in reaching the
  // bundle fails the build; test/browser-bundles.test.ts checks the same for each library).
  sourcemap: true,
  logLevel: 'warning',
});
copyFileSync('index.html', 'dist/index.html');
console.log('demo: built dist/index.html and dist/main.js');
