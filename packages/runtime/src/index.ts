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
export type { BackendInfo, BackendName, SetupBackendOptions } from './backends';
