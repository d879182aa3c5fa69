// Bundles the demo page into dist/: index.html, main.js, the bundled sample pictures (public/samples), the
// shipped weights (weights/) and the wasm backend's binaries, so that dist/ is a static site any file
// server can host and nothing is fetched from another origin.
//   node build.mjs           build once
//   node build.mjs --serve   build, then rebuild on change and serve dist/ (esbuild's server; PORT, default 8000)
// tfjs resolves to its ESM builds, so the gradient registrations that @sparkmim/runtime imports join the same
// copy of tfjs-core.
import { context } from 'esbuild';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const appDir = dirname(fileURLToPath(import.meta.url));
const dist = join(appDir, 'dist');
const serve = process.argv.includes('--serve');

/** The static files next to the bundle. */
function copyStatic() {
  mkdirSync(join(dist, 'weights'), { recursive: true });
  copyFileSync(join(appDir, 'index.html'), join(dist, 'index.html'));
  cpSync(join(appDir, 'public'), dist, { recursive: true });
  // The shipped model: the run's model.*.safetensors under one stable name, with its settings and curve.
  const weights = join(appDir, 'weights');
  const model = readdirSync(weights).find((name) => /^model\..*\.safetensors$/.test(name));
  if (!model) throw new Error(`demo build: no model.*.safetensors in ${weights} (make it with scripts/make-weights.mjs)`);
  copyFileSync(join(weights, model), join(dist, 'weights', 'spark-demo.safetensors'));
  for (const name of ['config.json', 'loss-curve.png']) {
    if (existsSync(join(weights, name))) copyFileSync(join(weights, name), join(dist, 'weights', name));
  }
  // tfjs-backend-wasm loads its binaries from next to the script that loaded it (dist/).
  const runtimeRequire = createRequire(createRequire(import.meta.url).resolve('@sparkmim/runtime/package.json'));
  const wasmDist = join(dirname(runtimeRequire.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  for (const name of readdirSync(wasmDist).filter((file) => file.endsWith('.wasm'))) copyFileSync(join(wasmDist, name), join(dist, name));
}

mkdirSync(dist, { recursive: true });
const ctx = await context({
  entryPoints: [join(appDir, 'src', 'main.ts')],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  outfile: join(dist, 'main.js'),
  conditions: ['@sparkmim/source'],
  mainFields: ['module', 'browser', 'main'],
  // No externals: every library entry bundles for the browser as it is (a Node built-in reaching the
  // bundle fails the build; test/browser-bundles.test.ts checks the same for each library).
  sourcemap: true,
  minify: !serve,
  logLevel: 'warning',
  plugins: [{ name: 'static', setup: (build) => build.onEnd(() => copyStatic()) }],
});
if (serve) {
  await ctx.watch();
  const { hosts, port } = await ctx.serve({ servedir: dist, port: Number(process.env.PORT ?? 8000) });
  console.log(`demo: serving dist/ at http://${hosts[0] ?? 'localhost'}:${port}/ (rebuilds on change; Ctrl-C stops)`);
} else {
  await ctx.rebuild();
  await ctx.dispose();
  console.log('demo: built dist/ (index.html, main.js, samples/, weights/, *.wasm)');
}
