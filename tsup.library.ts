import { defineConfig } from 'tsup';

// The build every @sparkmim library shares: ESM + CJS + .d.ts from src/index.ts; tfjs and our own
// packages stay external (peer and workspace dependencies).
export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'es2022',
  external: [/^@tensorflow\//, /^@sparkmim\//],
});
