export { ALL_TEST_BACKENDS, describeBackends, selectedTestBackends, skipReason } from './backends';
export type { BackendContext } from './backends';
export { BACKEND_SKIPS } from './skips';
export type { BackendSkip } from './skips';
export { expectClose, maxAbs } from './compare';
export type { CloseOptions, NumericArray } from './compare';
export { goldenFileNames, goldensDir, goldenTensor, loadGolden, nchwToNhwc } from './goldens';
export type { GoldenFile, GoldenTensor } from './goldens';
