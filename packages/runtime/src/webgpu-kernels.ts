// The webgpu backend's training kernels: @sparkmim/webgpu-kernels' or tfjs-backend-webgpu's own ("stock").
import { registerWebGpuTrainingKernels, restoreStockWebGpuKernels } from '@sparkmim/webgpu-kernels';
import { isNode } from './wasm';

/**
 * The environment variable choosing the webgpu training kernels when `setupBackend`'s `stockKernels` is
 * not given: `1` (or `true`) keeps tfjs-backend-webgpu's own, `0` (or `false`) takes @sparkmim/webgpu-kernels'.
 */
export const WEBGPU_STOCK_KERNELS_ENV = 'SPARKMIM_WEBGPU_STOCK_KERNELS';

/**
 * Whether to keep the stock kernels: `stockKernels` if given, else {@link WEBGPU_STOCK_KERNELS_ENV}, else
 * only on a software adapter. There (SwiftShader, llvmpipe: the GPU emulated on the CPU) the stock kernels'
 * plain loops ran 1.5-10x faster than our tiled GEMMs, whose workgroup memory and barriers are what a CPU
 * emulates worst (packages/webgpu-kernels/README.md); on a GPU the tiles are the point.
 */
export function wantsStockWebGpuKernels(stockKernels: boolean | undefined, softwareAdapter: boolean): boolean {
  if (stockKernels !== undefined) return stockKernels;
  const fromEnv = isNode ? process.env[WEBGPU_STOCK_KERNELS_ENV] : undefined;
  if (fromEnv === '1' || fromEnv === 'true') return true;
  if (fromEnv === '0' || fromEnv === 'false') return false;
  return softwareAdapter;
}

/**
 * Registers @sparkmim/webgpu-kernels' training kernels for webgpu, or puts the backend's own back when
 * `stock`. Runs after `@tensorflow/tfjs-backend-webgpu` is imported (its import registers its kernels); the
 * registry is global, so the last call decides for every later op.
 */
export function selectWebGpuKernels(stock: boolean): void {
  if (stock) restoreStockWebGpuKernels();
  else registerWebGpuTrainingKernels();
}
