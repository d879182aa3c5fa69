// Public API of @sparkmim/masking: see README.md.
export { keepCount, patchMaskFromNoise, randomPatchMask } from './generate';
export type { RandomPatchMaskOptions } from './generate';
export { seededRandom } from './random';
export { applyMask, maskPicture, upsampleMask } from './apply';
export type { MaskPictureOptions } from './apply';
export { assertBinaryMask, assertBinaryMaskValues, assertMaskShape, assertPositiveInteger, formatShape } from './validate';
