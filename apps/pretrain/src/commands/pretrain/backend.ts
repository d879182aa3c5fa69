// Choosing the backend of a run without noise: Dawn (the WebGPU of Node) writes its diagnostics straight to
// the process's stderr when it finds no usable GPU (`vkCreateInstance: Found no drivers!`, source paths of
// Dawn's C++). So WebGPU is first probed in a child process whose stderr is captured; Dawn is loaded into
// this process only when the probe found an adapter. What the probe printed is shown with --verbose, or
// when --backend webgpu was asked for and is unavailable.
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import {
  BackendUnavailableError,
  MAX_WASM_THREADS,
  WASM_THREADS_ENV,
  isSoftwareAdapter,
  setupBackend,
  setupFastestBackend,
  type BackendInfo,
} from '@sparkmim/runtime';
import { UsageError } from '../../errors';

export interface WebGpuProbe {
  /** The adapter found, or undefined. */
  adapter?: { vendor: string; architecture: string; description: string; device: string };
  /** Why there is none (no `webgpu` package, no adapter, the probe failed). */
  failure?: string;
  /** What Dawn wrote to stderr meanwhile. */
  stderr: string;
}

const PROBE = `
const [moduleUrl] = process.argv.slice(1);
import(moduleUrl).then(async (webgpu) => {
  const gpu = webgpu.create([]);
  const adapter = await gpu.requestAdapter();
  const info = adapter ? (adapter.info ?? (await adapter.requestAdapterInfo?.()) ?? {}) : undefined;
  const pick = (key) => (info && typeof info[key] === 'string' ? info[key] : '');
  process.stdout.write(JSON.stringify(info ? { adapter: { vendor: pick('vendor'), architecture: pick('architecture'), description: pick('description'), device: pick('device') } } : {}));
  process.exit(0);
}, (error) => {
  process.stdout.write(JSON.stringify({ failure: String(error && error.message || error) }));
  process.exit(0);
});
`;

/** Looks for a WebGPU adapter in a child process (Dawn's output captured); takes about a second. */
export function probeWebGpu(): WebGpuProbe {
  let moduleUrl: string;
  try {
    // The `webgpu` package is an optional dependency of this app (its native Dawn build per platform).
    // (`require` is Node's in tests and the bundle's own, made by its banner, in dist/cli.js.)
    moduleUrl = pathToFileURL(require.resolve('webgpu')).href;
  } catch {
    return { failure: "the optional 'webgpu' package is not installed", stderr: '' };
  }
  const child = spawnSync(process.execPath, ['-e', PROBE, moduleUrl], { encoding: 'utf8', timeout: 60_000 });
  const stderr = child.stderr ?? '';
  try {
    const result = JSON.parse(child.stdout) as { adapter?: WebGpuProbe['adapter']; failure?: string };
    if (result.adapter) return { adapter: result.adapter, stderr };
    return { failure: result.failure ?? 'Dawn found no GPU adapter', stderr };
  } catch {
    return { failure: `the probe ended with ${child.signal ?? `code ${child.status}`}${child.error ? ` (${child.error.message})` : ''}`, stderr };
  }
}

function showProbeOutput(stderr: string): void {
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  for (const line of lines) process.stderr.write(`sparkmim: dawn: ${line}\n`);
}

/**
 * The decoder work per step, `batch x (input / 32)^2 x decoderWidth^2` (proportional to the decoder's
 * multiply-adds: each of its five stages does `(7 * 2^i)^2 x (width / 2^i)^2` per image), from which a run on
 * wasm uses threads. Measured on the 2-core machine (`sparkmim bench`, SPARKMIM_WASM_THREADS=1 vs 2,
 * 2026-11-30): the quickstart (8 x 3^2 x 32^2 = 7.4e4) ran at 0.78x on two threads, small kernels paying
 * for XNNPACK's thread hand-offs; ResNet-18 at 224 with decoder 768 at batch 8 (2.3e8) at 1.50x, its
 * large convolutions splitting well. The bound sits between them on a log scale; nothing in between was
 * measured.
 */
export const WASM_THREADS_MIN_DECODER_WORK = 4e6;

/**
 * The wasm thread count for a run of `config`: undefined when SPARKMIM_WASM_THREADS is set (it decides),
 * else the cores (up to the backend's 8) when the decoder's work per step reaches
 * {@link WASM_THREADS_MIN_DECODER_WORK}, else one.
 */
export function wasmThreadsForRun(
  config: { batchSize: number; decoderWidth: number; inputSize: { height: number; width: number } },
  cores = availableParallelism(),
): number | undefined {
  if (process.env[WASM_THREADS_ENV]) return undefined;
  const { batchSize, decoderWidth, inputSize } = config;
  const work = batchSize * (inputSize.height / 32) * (inputSize.width / 32) * decoderWidth ** 2;
  return work >= WASM_THREADS_MIN_DECODER_WORK ? Math.max(1, Math.min(cores, MAX_WASM_THREADS)) : 1;
}

/**
 * Sets up `name` ('auto': the fastest that works) for training, quietly: WebGPU only once a child process
 * found an adapter (and, for 'auto', one that is not a software rasteriser). `threads`: wasm's thread count
 * (see {@link wasmThreadsForRun}).
 */
export async function setUpTrainingBackend(name: string, { verbose, threads }: { verbose: boolean; threads?: number }): Promise<BackendInfo> {
  let info: BackendInfo;
  if (name === 'auto') {
    const probe = probeWebGpu();
    if (verbose) {
      process.stderr.write(
        `sparkmim: webgpu probe: ${probe.adapter ? `adapter ${probe.adapter.description || probe.adapter.vendor}` : probe.failure}\n`,
      );
      showProbeOutput(probe.stderr);
    }
    const usable = probe.adapter !== undefined && !isSoftwareAdapter(probe.adapter);
    // wasm before cpu: `sparkmim bench --scenario quickstart` ran a training step 5x faster on it.
    const candidates = usable
      ? (['tensorflow-gpu', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const)
      : (['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const);
    info = await setupFastestBackend(candidates, { threads });
  } else {
    if (name === 'webgpu') {
      const probe = probeWebGpu();
      if (verbose) showProbeOutput(probe.stderr);
      if (!probe.adapter) {
        if (!verbose) showProbeOutput(probe.stderr);
        throw new UsageError(
          `--backend webgpu: ${probe.failure}; without a GPU, Chromium's SwiftShader driver works: ` +
            'apt-get install -y chromium libvulkan1 and set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json (or use --backend cpu)',
        );
      }
    }
    try {
      info = await setupBackend(name, name === 'wasm' ? { threads } : {});
    } catch (error) {
      if (error instanceof BackendUnavailableError) throw new UsageError(`--backend: ${error.message}`);
      throw error;
    }
  }
  if (!info.canTrain) throw new UsageError(`--backend ${info.name} cannot train (no gradients): use cpu, webgpu, tensorflow or tensorflow-gpu`);
  return info;
}
