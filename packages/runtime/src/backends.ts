import * as tf from '@tensorflow/tfjs-core';
import './registrations';
import { isNode, prepareWasmBackend, requestedWasmThreads, startWasmBackend, WASM_THREADS_ENV } from './wasm';
import { selectWebGpuKernels, wantsStockWebGpuKernels } from './webgpu-kernels';

/** Backends sparkmim knows how to set up. */
export const BACKEND_NAMES = ['cpu', 'wasm', 'webgpu', 'tensorflow', 'tensorflow-gpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** What {@link setupBackend} got. */
export interface BackendInfo {
  /** The sparkmim name asked for. */
  name: BackendName;
  /** The tfjs backend name now active (`tensorflow` for both tfjs-node packages). */
  tfjsBackend: string;
  /** Whether this backend can train every sparkmim model (wasm can, with @sparkmim/wasm-kernels, which setupBackend registers). */
  canTrain: boolean;
  /** GPU adapter details for webgpu, as the adapter reports them. */
  adapter?: { vendor: string; architecture: string; description: string; device: string };
  /** The threads the wasm backend runs on (1 without threads; see {@link SetupBackendOptions.threads}). */
  threads?: number;
  /** webgpu: whose training kernels run (see {@link SetupBackendOptions.stockKernels}). */
  webgpuKernels?: 'sparkmim' | 'stock';
}

/** How {@link setupBackend} sets a backend up. */
export interface SetupBackendOptions {
  /**
   * wasm only: the thread count, 1 to 8 (default: the environment variable SPARKMIM_WASM_THREADS, else one
   * thread in Node; in browsers tfjs's half the logical cores). Browsers use threads only on cross-origin
   * isolated pages, and at most half the logical cores. The first wasm setup in a process
   * chooses; later ones keep its threads.
   */
  threads?: number;
  /**
   * webgpu only: `true` keeps tfjs-backend-webgpu 4.22's own training kernels (`Conv2DBackpropFilter`,
   * `Conv2DBackpropInput`), `false` registers @sparkmim/webgpu-kernels' in their place. Default: the
   * environment variable SPARKMIM_WEBGPU_STOCK_KERNELS (`1` or `0`), else ours on a GPU and the stock ones
   * on a software adapter (SwiftShader), where ours are slower. The kernel registry is global: the last
   * webgpu setup decides.
   */
  stockKernels?: boolean;
}

/** Thrown when a backend cannot be set up; `message` says what to do about it. */
export class BackendUnavailableError extends Error {
  constructor(
    readonly backend: string,
    message: string,
  ) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

// A module name held in a variable keeps bundlers from trying to resolve optional packages that the user
// may not have installed (tfjs-node, webgpu in the browser build).
async function importOptional<T = unknown>(moduleName: string): Promise<T | undefined> {
  try {
    return (await import(/* webpackIgnore: true */ /* @vite-ignore */ moduleName)) as T;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') return undefined;
    throw error;
  }
}

interface NodeWebGpuModule {
  create(options: string[]): GPU;
  globals: Record<string, unknown>;
}

/**
 * Dawn options for per-kernel GPU timing: timestamp queries at full resolution. Dawn rounds timestamps
 * (its `timestamp_quantization` toggle, on by default, a timing-attack guard for web pages), which blurs
 * the many sub-millisecond kernels of a training step; a benchmark turns it off.
 */
export const DAWN_PROFILING_OPTIONS: readonly string[] = ['enable-dawn-features=allow_unsafe_apis', 'disable-dawn-features=timestamp_quantization'];

/**
 * Makes `navigator.gpu` exist in Node through Dawn (the `webgpu` npm package). Must run before
 * `@tensorflow/tfjs-backend-webgpu` is imported: that package registers itself only when WebGPU exists.
 * `dawnOptions` go to the package's `create()` (e.g. {@link DAWN_PROFILING_OPTIONS}); they take effect
 * only on the first call, which creates the GPU object.
 *
 * @example
 * await installNodeWebGpu({ dawnOptions: DAWN_PROFILING_OPTIONS }); // then setupBackend('webgpu')
 */
export async function installNodeWebGpu({ dawnOptions = [] }: { dawnOptions?: readonly string[] } = {}): Promise<boolean> {
  const globalScope = globalThis as unknown as { navigator?: { gpu?: GPU } };
  if (globalScope.navigator?.gpu) return true;
  if (!isNode) return false;
  const webgpu = await importOptional<NodeWebGpuModule>('webgpu');
  if (!webgpu) return false;
  exposeNodeWebGpu(webgpu, dawnOptions);
  return true;
}

/** Puts Dawn's `GPU*` constants on the global scope and `gpu` on `navigator`, as a browser has them. */
export function exposeNodeWebGpu(webgpu: NodeWebGpuModule, dawnOptions: readonly string[] = []): void {
  const globalScope = globalThis as unknown as Record<string, unknown> & { navigator?: Record<string, unknown> };
  for (const [key, value] of Object.entries(webgpu.globals)) {
    if (!(key in globalScope)) globalScope[key] = value;
  }
  const gpu = webgpu.create([...dawnOptions]);
  if (globalScope.navigator) {
    Object.defineProperty(globalScope.navigator, 'gpu', { value: gpu, configurable: true });
  } else {
    globalScope.navigator = { gpu };
  }
}

const installHint: Record<'tensorflow' | 'tensorflow-gpu', string> = {
  tensorflow: 'npm install @tensorflow/tfjs-node@4.22.0',
  'tensorflow-gpu': 'npm install @tensorflow/tfjs-node-gpu@4.22.0',
};

async function registerBackend(name: BackendName): Promise<string> {
  switch (name) {
    case 'cpu':
      await import('@tensorflow/tfjs-backend-cpu');
      return 'cpu';
    case 'wasm':
      await prepareWasmBackend();
      return 'wasm';
    case 'webgpu': {
      if (!(await installNodeWebGpu())) {
        throw new BackendUnavailableError(
          'webgpu',
          isNode
            ? "webgpu: no WebGPU in this Node.js: install the optional 'webgpu' package (npm install webgpu@0.6.2)."
            : 'webgpu: this browser exposes no navigator.gpu (try a recent Chrome or Edge).',
        );
      }
      const gpu = (globalThis as unknown as { navigator: { gpu: GPU } }).navigator.gpu;
      if (!(await gpu.requestAdapter())) {
        throw new BackendUnavailableError(
          'webgpu',
          isNode
            ? 'webgpu: Dawn found no GPU adapter. Without a GPU, use the SwiftShader Vulkan driver: ' +
                'apt-get install -y chromium libvulkan1 and set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json'
            : 'webgpu: the browser offers no WebGPU adapter.',
        );
      }
      await import('@tensorflow/tfjs-backend-webgpu');
      return 'webgpu';
    }
    case 'tensorflow':
    case 'tensorflow-gpu': {
      const packageName = name === 'tensorflow' ? '@tensorflow/tfjs-node' : '@tensorflow/tfjs-node-gpu';
      if (!isNode) throw new BackendUnavailableError(name, `${name}: ${packageName} runs only in Node.js.`);
      const loaded = await importOptional(packageName);
      if (!loaded) {
        throw new BackendUnavailableError(name, `${name}: the package ${packageName} is not installed. Install it with: ${installHint[name]}`);
      }
      return 'tensorflow';
    }
  }
}

/**
 * Sets the tfjs backend by sparkmim name, registers gradients, and reports what it got.
 *
 * @example
 * const info = await setupBackend('webgpu');
 * console.log(info.tfjsBackend, info.adapter?.vendor);
 * const { threads } = await setupBackend('wasm', { threads: 2 }); // 2 in Node; in a browser, see SetupBackendOptions
 * await setupBackend('webgpu', { stockKernels: true }); // tfjs-backend-webgpu's own training kernels
 */
export async function setupBackend(name: string, options: SetupBackendOptions = {}): Promise<BackendInfo> {
  if (!(BACKEND_NAMES as readonly string[]).includes(name)) {
    throw new BackendUnavailableError(name, `unknown backend '${name}': expected one of ${BACKEND_NAMES.join(', ')}`);
  }
  const backendName = name as BackendName;
  const tfjsBackend = await registerBackend(backendName);
  let threads: number | undefined;
  let ok: boolean;
  if (tfjsBackend === 'wasm') {
    ({ ok, threads } = await startWasmBackend(wasmThreadsOption(options.threads)));
  } else {
    ok = await tf.setBackend(tfjsBackend);
  }
  if (!ok) {
    throw new BackendUnavailableError(backendName, `${backendName}: tfjs could not initialise the '${tfjsBackend}' backend`);
  }
  await tf.ready();
  if (tfjsBackend === 'cpu') {
    // The cpu backend's first write prints a banner recommending tfjs-node; sparkmim names its own
    // backends (`setupFastestBackend`, the CLI's --backend), so the banner is switched off here.
    (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  }
  const adapter = readAdapterInfo();
  let webgpuKernels: BackendInfo['webgpuKernels'];
  if (tfjsBackend === 'webgpu') {
    const stock = wantsStockWebGpuKernels(options.stockKernels, isSoftwareAdapter(adapter));
    selectWebGpuKernels(stock);
    webgpuKernels = stock ? 'stock' : 'sparkmim';
  }
  return {
    name: backendName,
    tfjsBackend,
    canTrain: true,
    adapter,
    ...(threads !== undefined && { threads }),
    ...(webgpuKernels !== undefined && { webgpuKernels }),
  };
}

function wasmThreadsOption(threads: number | undefined): number | undefined {
  try {
    return requestedWasmThreads(threads);
  } catch (error) {
    const hint = threads === undefined ? ` (unset ${WASM_THREADS_ENV} for the default)` : '';
    throw new BackendUnavailableError('wasm', `${(error as Error).message}${hint}`);
  }
}

function readAdapterInfo(): BackendInfo['adapter'] {
  const backend = tf.backend() as { adapterInfo?: Record<string, unknown> };
  const info = backend.adapterInfo;
  if (!info) return undefined;
  const text = (key: string) => (typeof info[key] === 'string' ? (info[key] as string) : '');
  return { vendor: text('vendor'), architecture: text('architecture'), description: text('description'), device: text('device') };
}

/**
 * Whether a WebGPU adapter runs on the CPU (SwiftShader, Mesa's llvmpipe/lavapipe): correct, but about
 * 1000x slower than a GPU and slower than the cpu backend, so never the fastest choice.
 */
export function isSoftwareAdapter(adapter: BackendInfo['adapter']): boolean {
  if (!adapter) return false;
  return /swiftshader|llvmpipe|lavapipe|software/i.test(`${adapter.vendor} ${adapter.architecture} ${adapter.description} ${adapter.device}`);
}

/**
 * The fastest backend that can be set up here, in order: tensorflow-gpu, tensorflow, webgpu, wasm, cpu
 * (wasm before cpu: `sparkmim bench` measured a SparK training step of the quickstart model 5x faster on
 * it, and ResNet-18 inference 30x faster, on a 2-core machine). A
 * WebGPU adapter that runs on the CPU (see {@link isSoftwareAdapter}) is passed over unless
 * `acceptSoftwareAdapter` (for pages that exist to show WebGPU, where a few small ops run fine on it).
 * `threads` goes to wasm if it is the one set up (see {@link SetupBackendOptions.threads}).
 *
 * @example
 * const info = await setupFastestBackend();
 * const shown = await setupFastestBackend(['webgpu', 'cpu'], { acceptSoftwareAdapter: true });
 * const wide = await setupFastestBackend(['wasm', 'cpu'], { threads: 2 });
 */
export async function setupFastestBackend(
  candidates: readonly BackendName[] = ['tensorflow-gpu', 'tensorflow', 'webgpu', 'wasm', 'cpu'],
  { acceptSoftwareAdapter = false, threads }: { acceptSoftwareAdapter?: boolean; threads?: number } = {},
): Promise<BackendInfo> {
  const failures: string[] = [];
  for (const [index, candidate] of candidates.entries()) {
    try {
      const info = await setupBackend(candidate, candidate === 'wasm' ? { threads } : {});
      const slow = candidate === 'webgpu' && !acceptSoftwareAdapter && isSoftwareAdapter(info.adapter);
      if (slow && index < candidates.length - 1) {
        failures.push(`webgpu: the adapter (${info.adapter!.architecture || info.adapter!.vendor}) runs on the CPU, slower than the cpu backend`);
        continue;
      }
      return info;
    } catch (error) {
      failures.push((error as Error).message);
    }
  }
  throw new BackendUnavailableError('auto', `no backend could be set up:\n${failures.join('\n')}`);
}

/** Whether gradients are registered for the kernels sparkmim trains through. */
export function gradientsRegistered(): boolean {
  return tf.getGradient('Conv2D') !== undefined && tf.getGradient('FusedBatchNorm') !== undefined;
}
