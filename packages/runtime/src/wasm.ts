// Setting the wasm backend up: where its .wasm binaries are in Node, its threads, and the training kernels
// it lacks.
import { registerWasmTrainingKernels } from '@sparkmim/wasm-kernels';
import * as tf from '@tensorflow/tfjs-core';

/** True in Node.js (and Bun, Deno with Node compatibility); false in browsers and web workers. */
export const isNode = typeof process !== 'undefined' && !!process.versions?.node;
let pathsSet = false;

/** The environment variable that sets the wasm backend's thread count (`1` turns threads off). */
export const WASM_THREADS_ENV = 'SPARKMIM_WASM_THREADS';

/**
 * The most threads tfjs-backend-wasm 4.22 can use: its threaded binary starts 8 workers (Emscripten's
 * PTHREAD_POOL_SIZE) and caps XNNPACK's thread pool at 8.
 */
export const MAX_WASM_THREADS = 8;

/**
 * The thread count asked for: `threads` if given, else {@link WASM_THREADS_ENV}, else undefined (the
 * default: one thread in Node, tfjs's choice in a browser). Throws, naming the value, when it is not an
 * integer from 1 to {@link MAX_WASM_THREADS}.
 */
export function requestedWasmThreads(threads?: number): number | undefined {
  const fromEnv = isNode ? process.env[WASM_THREADS_ENV] : undefined;
  const source = threads !== undefined ? `threads ${threads}` : `${WASM_THREADS_ENV}=${fromEnv}`;
  const value = threads ?? (fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : undefined);
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1 || value > MAX_WASM_THREADS) {
    throw new RangeError(`wasm: expected a thread count from 1 to ${MAX_WASM_THREADS}, got ${source}`);
  }
  return value;
}

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

/**
 * Starts the wasm backend (after {@link prepareWasmBackend}) on `threads` threads where the platform
 * allows, and makes it the active backend. Returns whether it started and on how many threads it runs.
 *
 * - Node: tfjs 4.22 never uses threads there (its `WASM_HAS_MULTITHREAD_SUPPORT` flag is false under
 *   Node), and forcing the flag fails: Emscripten's loader creates its workers from the blob: URL tfjs
 *   gives it, which `worker_threads` rejects (ERR_WORKER_PATH). {@link installNodePthreadWorker} gives the
 *   loader a Worker that opens tfjs's worker script from source, and the threaded build starts. Default:
 *   one thread, as tfjs in Node has always run; threads only when asked. XNNPACK's idle threads spin
 *   between kernels, and a SparK step of small kernels ran at half speed on two threads in every pair
 *   measured (README); a larger machine was not measured. If the threaded start fails, one thread.
 * - Browsers: tfjs uses threads by itself on cross-origin isolated pages (COOP/COEP headers, which make
 *   SharedArrayBuffer available), on half the logical cores (`navigator.hardwareConcurrency / 2`, 1 to 8);
 *   `threads` can only lower that.
 * - Only the first start chooses: a backend already running keeps its threads.
 *
 * @example
 * await prepareWasmBackend();
 * const { ok, threads } = await startWasmBackend(2);
 */
export async function startWasmBackend(threads?: number): Promise<{ ok: boolean; threads: number }> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const threadCount = () => {
    try {
      return wasm.getThreadsCount();
    } catch {
      return 1;
    }
  };
  if (tf.engine().registry.wasm) return { ok: await tf.setBackend('wasm'), threads: threadCount() };
  if (!isNode) {
    if (threads !== undefined) wasm.setThreadsCount(threads);
    return { ok: await tf.setBackend('wasm'), threads: threadCount() };
  }
  const wanted = threads ?? 1;
  if (wanted > 1 && installNodePthreadWorker()) {
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
    wasm.setThreadsCount(wanted);
    if (await withReportedCores(2 * wanted, () => tf.setBackend('wasm'))) return { ok: true, threads: threadCount() };
    // The threaded start failed (its error is already printed): the single-threaded build is the fallback.
    // (A worker that throws while loading ends the process instead: Emscripten rethrows its errors.)
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    wasm.setThreadsCount(1);
  }
  return { ok: await tf.setBackend('wasm'), threads: threadCount() };
}

/** The require of the bundle (the CLI's tsup banner, run-ts) or of jest; undefined in a browser. */
function nodeRequireFunction(): NodeJS.Require | undefined {
  return typeof require === 'function' ? require : undefined;
}

/**
 * Runs `start` while Node's `os.cpus()` lists `cores` entries. tfjs's C++ side caps the thread count at
 * half the logical cores (Emscripten reads them from `os.cpus().length` in Node), as a guess at
 * hyper-threading, so a 2-core machine would get one thread whatever was asked; the count is read once,
 * while the module starts, so the list is lengthened only for that moment.
 */
async function withReportedCores<T>(cores: number, start: () => Promise<T>): Promise<T> {
  const os = nodeRequireFunction()?.('node:os') as typeof import('node:os') | undefined;
  if (!os) return await start();
  const realCpus = os.cpus;
  os.cpus = () => {
    const listed = realCpus.call(os);
    return listed.length >= cores ? listed : Array.from({ length: cores }, (_, index) => listed[index % listed.length]!);
  };
  try {
    return await start();
  } finally {
    os.cpus = realCpus;
  }
}

let pthreadWorkerInstalled = false;

/**
 * Lets tfjs-backend-wasm's threaded build start its workers in Node: defines `globalThis.Worker` as a
 * `worker_threads` Worker that (1) runs tfjs's own worker script from source when handed the blob: URL
 * tfjs makes of it (Node's Worker opens only files and data: URLs), and (2) tells each worker to load the
 * Emscripten script `wasm-out/tfjs-backend-wasm-threaded-simd.js` from disk, where tfjs would send a Blob
 * of the factory's source text, which outside tfjs's own Node bundle refers to variables of the bundle
 * around it. Emscripten assigns `global.Worker = worker_threads.Worker` as it starts; that assignment is
 * ignored, and the workers never keep Node running. Returns false, changing nothing, where a Worker of someone else's is already defined or the
 * scripts are not found.
 */
function installNodePthreadWorker(): boolean {
  if (pthreadWorkerInstalled) return true;
  const nodeRequire = nodeRequireFunction();
  const packageDir = locateWasmBinaries()?.replace(/dist\/$/, '');
  if (!nodeRequire || !packageDir) return false;
  const workerThreads = nodeRequire('node:worker_threads') as typeof import('node:worker_threads');
  const fs = nodeRequire('node:fs') as typeof import('node:fs');
  const NodeWorker = workerThreads.Worker;
  const scope = globalThis as { Worker?: unknown };
  if (scope.Worker !== undefined && scope.Worker !== NodeWorker) return false;
  const mainScript = `${packageDir}wasm-out/tfjs-backend-wasm-threaded-simd.js`;
  const workerModule = `${packageDir}wasm-out/tfjs-backend-wasm-threaded-simd.worker.js`;
  if (!fs.existsSync(mainScript) || !fs.existsSync(workerModule)) return false;
  // The script is a template literal whose "\n" escapes became newlines inside its string literals; tfjs
  // escapes them again before making its blob, and so does this.
  const workerSource = (nodeRequire(workerModule) as { wasmWorkerContents: string }).wasmWorkerContents.replace(/\n/g, '\\n');

  class PthreadWorker extends NodeWorker {
    constructor(script: string | URL, options?: import('node:worker_threads').WorkerOptions) {
      if (typeof script === 'string' && script.startsWith('blob:')) super(workerSource, { eval: true });
      else super(script, options);
    }

    override postMessage(message: unknown, transferList?: readonly import('node:worker_threads').TransferListItem[]): void {
      const isLoad = typeof message === 'object' && message !== null && (message as { cmd?: string }).cmd === 'load';
      super.postMessage(isLoad ? { ...(message as object), urlOrBlob: mainScript } : message, transferList);
    }

    // Emscripten refs a worker while it runs a pthread, and XNNPACK's pool threads run until the process
    // ends, so Node would never exit. The main thread waits for them synchronously (Atomics.wait) inside
    // each kernel, never through the event loop, so they need not hold the process.
    override ref(): void {}
  }

  Object.defineProperty(globalThis, 'Worker', {
    configurable: true,
    get: () => PthreadWorker,
    set(value: unknown) {
      if (value !== NodeWorker) Object.defineProperty(globalThis, 'Worker', { value, writable: true, configurable: true });
    },
  });
  pthreadWorkerInstalled = true;
  return true;
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
