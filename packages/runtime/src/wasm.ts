// Setting the wasm backend up: where its .wasm binaries are in Node, and the training kernels it lacks.
import { registerWasmTrainingKernels } from '@sparkmim/wasm-kernels';

/** True in Node.js (and Bun, Deno with Node compatibility); false in browsers and web workers. */
export const isNode = typeof process !== 'undefined' && !!process.versions?.node;
let pathsSet = false;

/**
 * Imports tfjs-backend-wasm, points it at its own `.wasm` files when in Node, and registers sparkmim's
 * training kernels for it. Must run before `tf.setBackend('wasm')`.
 *
 * Why the paths: the backend finds its binaries next to the script that loaded it; once bundled (the CLI,
 * scripts/run-ts.mjs) that script is the bundle, so Node is told where the package's `dist/` is. In a
 * browser the page's bundler serves the binaries (see the tfjs-backend-wasm README), so nothing is set.
 */
export async function prepareWasmBackend(): Promise<void> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  if (isNode && !pathsSet) {
    const folder = locateWasmBinaries();
    if (folder) {
      wasm.setWasmPaths(folder);
      // The backend's Emscripten loader reads the free variable __dirname in Node, which an ES module
      // bundle does not have; without it the backend fails to initialise ("__dirname is not defined").
      const scope = globalThis as { __dirname?: string };
      if (typeof __dirname === 'undefined' && scope.__dirname === undefined) scope.__dirname = folder;
    }
    pathsSet = true;
  }
  registerWasmTrainingKernels();
}

/** `.../@tensorflow/tfjs-backend-wasm/dist/` in Node, through the bundle's or jest's `require`. */
function locateWasmBinaries(): string | undefined {
  // Both bundles (the CLI's tsup banner, run-ts) and jest give modules a `require`; the runtime package
  // declares the wasm backend, so resolving from it works from any app that depends on the runtime.
  const nodeRequire = typeof require === 'function' ? require : undefined;
  if (!nodeRequire) return undefined;
  const attempts: (() => string)[] = [
    () => nodeRequire.resolve('@tensorflow/tfjs-backend-wasm/package.json'),
    () => {
      const runtimeDir = nodeRequire.resolve('@sparkmim/runtime/package.json').replace(/package\.json$/, '');
      return nodeRequire.resolve('@tensorflow/tfjs-backend-wasm/package.json', { paths: [runtimeDir] });
    },
  ];
  for (const attempt of attempts) {
    try {
      return attempt().replace(/package\.json$/, 'dist/');
    } catch {
      // try the next way
    }
  }
  return undefined;
}
