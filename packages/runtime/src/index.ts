export {
  BACKEND_NAMES,
  BackendUnavailableError,
  DAWN_PROFILING_OPTIONS,
  exposeNodeWebGpu,
  gradientsRegistered,
  installNodeWebGpu,
  setupBackend,
  isSoftwareAdapter,
  setupFastestBackend,
} from './backends';
export { WEBGPU_STOCK_KERNELS_ENV } from './webgpu-kernels';
export { MAX_WASM_THREADS, WASM_THREADS_ENV } from './wasm';
export type { BackendInfo, BackendName, SetupBackendOptions } from './backends';
