export {
  BACKEND_NAMES,
  BackendUnavailableError,
  exposeNodeWebGpu,
  gradientsRegistered,
  installNodeWebGpu,
  setupBackend,
  isSoftwareAdapter,
  setupFastestBackend,
} from './backends';
export type { BackendInfo, BackendName } from './backends';
