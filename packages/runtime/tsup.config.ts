import { defineConfig } from 'tsup';

// The runtime is consumed bundled (by apps/pretrain, apps/demo and the bench runner), where the bundler
// resolves tfjs-core to its ESM sources; so the gradient registrations it imports land in the same copy.
export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'es2022',
  external: ['webgpu', /^@tensorflow\//, /^@sparkmim\//],
});
