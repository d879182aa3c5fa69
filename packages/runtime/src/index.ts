export {
  BACKEND_NAMES,
  BackendUnavailableError,
  exposeNodeWebGpu,
  gradientsRegistered,
  installNodeWebGpu,
  setupBackend,
  setupFastestBackend,
} from './backends';
export type { BackendInfo, BackendName } from './backends';
