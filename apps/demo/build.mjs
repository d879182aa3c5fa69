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
  // Node-only optional packages that @sparkmim/runtime imports by variable name never reach the bundle;
  // these stay external in case a dependency names them statically.
  external: ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'fs', 'path', 'worker_threads', 'perf_hooks', 'os', 'crypto'],
  sourcemap: true,
  logLevel: 'warning',
});
copyFileSync('index.html', 'dist/index.html');
console.log('demo: built dist/index.html and dist/main.js');
