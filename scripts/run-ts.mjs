#!/usr/bin/env node
// Runs a TypeScript entry (a benchmark, an example) with Node: `node scripts/run-ts.mjs <entry.ts> [args...]`.
//
// Why bundle instead of a TS loader: tfjs-core's Node bundle registers no gradients (they ship only as ESM
// files beside dist/index.js), so the entry must see the ESM builds of tfjs, as jest and the apps do. esbuild
// bundles the entry with the workspace's source export condition (no build of our packages first) and
// `module` before `main`, into .cache/run-ts/, and Node runs the bundle with the remaining arguments.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** esbuild is not a root dependency: take the one tsup uses, else the one in pnpm's store. */
async function loadEsbuild() {
  const fromRoot = createRequire(path.join(repoRoot, 'package.json'));
  const attempts = [];
  try {
    const tsupManifest = realpathSync(fromRoot.resolve('tsup/package.json'));
    return await import(pathToFileURL(createRequire(tsupManifest).resolve('esbuild')).href);
  } catch (error) {
    attempts.push(`via tsup: ${error.message.split('\n')[0]}`);
  }
  const store = path.join(repoRoot, 'node_modules/.pnpm');
  const candidates = existsSync(store) ? readdirSync(store).filter((name) => name.startsWith('esbuild@')).sort() : [];
  for (const candidate of candidates.reverse()) {
    const manifest = path.join(store, candidate, 'node_modules/esbuild/package.json');
    if (existsSync(manifest)) return await import(pathToFileURL(createRequire(manifest).resolve('esbuild')).href);
  }
  attempts.push(`no esbuild@* in ${store}`);
  throw new Error(`run-ts: esbuild not found (${attempts.join('; ')}); run pnpm install at the repository root`);
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

const outDir = path.join(repoRoot, '.cache/run-ts');
mkdirSync(outDir, { recursive: true });
const outfile = path.join(outDir, `${path.relative(repoRoot, entry).replace(/[\\/]/g, '__').replace(/\.[cm]?tsx?$/, '')}.mjs`);

const esbuild = await loadEsbuild();
await esbuild.build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'inline',
  conditions: ['@sparkmim/source'],
  mainFields: ['module', 'main'],
  external: ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'],
  // Bundled CommonJS dependencies may call require(); give the ESM bundle one.
  banner: { js: "import { createRequire as __runTsCreateRequire } from 'node:module'; const require = __runTsCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});

const result = spawnSync(process.execPath, ['--enable-source-maps', outfile, ...forwardedArgs], { stdio: 'inherit' });
process.exit(result.status ?? 1);
