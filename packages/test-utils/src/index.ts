export { ALL_TEST_BACKENDS, describeBackends, selectedTestBackends, skipReason } from './backends';
export type { BackendContext } from './backends';
export { BACKEND_SKIPS } from './skips';
export type { BackendSkip } from './skips';
export { expectClose, goldenErrorReport, maxAbs } from './compare';
export type { CloseOptions, GoldenErrorReport, NumericArray } from './compare';
export { goldenFileNames, goldenInputs, goldensDir, goldenTensor, loadGolden, nchwToNhwc, nchwValues } from './goldens';
export type { GoldenFile, GoldenTensor } from './goldens';
