// Public API of @sparkmim/losses: see README.md.
export { patchify, unpatchify } from './patchify';
export { reconstructionComposite, sparkLoss } from './loss';
export type { ReconstructionComposite, SparkLossOptions } from './loss';
