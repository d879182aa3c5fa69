import { defineConfig } from 'tsup';

// One self-contained bundle: tfjs-core resolves to its ESM build (the `module` field), so the gradient
// registrations imported by @sparkmim/runtime join the same copy of tfjs-core. Native and optional
// packages stay external and load at run time.
export default defineConfig({
  entry: { cli: 'src/cli.ts' },
  format: ['esm'],
  platform: 'node',
  target: 'node20',
  clean: true,
  sourcemap: true,
  noExternal: [/.*/],
  external: ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'sharp'],
  esbuildOptions(options) {
    options.conditions = ['@sparkmim/source'];
    options.mainFields = ['module', 'main'];
  },
  banner: { js: "import { createRequire as __sparkmimCreateRequire } from 'module'; const require = __sparkmimCreateRequire(import.meta.url);" },
});
