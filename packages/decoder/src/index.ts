// Public API of @sparkmim/decoder: see README.md.
export { createDensifyLayers, DENSIFY_NORM_KINDS, densifyConfigFromState, DensifyLayers, MaskTokens } from './densify';
export type { DensifyConfig, DensifyNorm, DensifyNormKind, DensifyProjection } from './densify';
export { ConvTranspose2d, Identity } from './layers';
export type { ConvTranspose2dConfig } from './layers';
export { LightDecoder, lightDecoderConfigFromState, UNetBlock } from './light-decoder';
export type { LightDecoderConfig } from './light-decoder';
