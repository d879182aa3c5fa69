#!/usr/bin/env node
// Runs a TypeScript entry (a benchmark, an example) with Node: `node scripts/run-ts.mjs <entry.ts> [args...]`.
//
// Why bundle instead of a TS loader: tfjs-core's Node bundle registers no gradients (they ship only as ESM
// files beside dist/index.js), so the entry must see the ESM builds of tfjs, as jest and the apps do. esbuild
// bundles the entry with the workspace's source export condition (no build of our packages first) and
// `module` before `main`, into packages/runtime/node_modules/.cache/run-ts/, and Node runs the bundle with the remaining arguments.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** esbuild is a root devDependency of the workspace. */
async function loadEsbuild() {
  const fromRoot = createRequire(path.join(repoRoot, 'package.json'));
  return await import(pathToFileURL(fromRoot.resolve('esbuild')).href);
}

const [entryArgument, ...forwardedArgs] = process.argv.slice(2);
if (!entryArgument) {
  console.error('usage: node scripts/run-ts.mjs <entry.ts> [args...]');
  process.exit(2);
}
const entry = path.resolve(entryArgument);
if (!existsSync(entry)) {
  console.error(`run-ts: entry ${entry} does not exist`);
  process.exit(2);
}

// Inside @sparkmim/runtime's node_modules, so that the bundle's external imports (the optional 'webgpu'
// package, tfjs-node when installed) resolve from the package that declares them.
const outDir = path.join(repoRoot, 'packages/runtime/node_modules/.cache/run-ts');
mkdirSync(outDir, { recursive: true });
// RUN_TS_OUTFILE: only bundle, to that file (e.g. for a machine without this workspace), and do not run.
const bundleOnly = process.env.RUN_TS_OUTFILE;
const outfile = bundleOnly
  ? path.resolve(bundleOnly)
  : path.join(
      outDir,
      `${path
        .relative(repoRoot, entry)
        .replace(/[\\/]/g, '__')
        .replace(/\.[cm]?tsx?$/, '')}.mjs`,
    );

const esbuild = await loadEsbuild();
await esbuild.build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: bundleOnly ? false : 'inline',
  conditions: ['@sparkmim/source'],
  mainFields: ['module', 'main'],
  external: ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'],
  // Bundled CommonJS dependencies may call require(); give the ESM bundle one.
  banner: { js: "import { createRequire as __runTsCreateRequire } from 'node:module'; const require = __runTsCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});

if (bundleOnly) process.exit(0);
const result = spawnSync(process.execPath, ['--enable-source-maps', outfile, ...forwardedArgs], { stdio: 'inherit' });
process.exit(result.status ?? 1);
