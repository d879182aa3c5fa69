import * as tf from '@tensorflow/tfjs-core';
import {
  densify,
  Module,
  ModuleList,
  SparseBatchNorm2d,
  SparseConv2d,
  SparseLayerNorm,
  type ActiveMask,
  type StateShapes,
  SeededRandom,
} from '@sparkmim/sparse-ops';
import { Identity } from './layers';

/**
 * The norm applied to each encoder feature map before densifying: sparse batch norm (SparK's choice for
 * ResNets), sparse layer norm over channels (for ConvNeXts), or none.
 */
export type DensifyNormKind = 'bn' | 'ln' | 'none';

export const DENSIFY_NORM_KINDS: readonly DensifyNormKind[] = ['bn', 'ln', 'none'];

export interface DensifyConfig {
  /** Encoder channels per feature map as the backbone reports them: largest map (stride 4) first. */
  featureChannels: readonly number[];
  /** Decoder width at the smallest map; it halves per level (SparK: `d_width //= 2`). */
  decoderWidth: number;
  /** Default 'bn'. */
  norm?: DensifyNormKind;
  /** Seed for the initialisation (mask tokens, projections); omitted: `Math.random`. */
  seed?: number;
}

/** A densify norm: sparse batch norm, sparse layer norm, or identity. */
export type DensifyNorm = SparseBatchNorm2d | SparseLayerNorm | Identity;

/** A densify projection: a conv with bias, or identity. */
export type DensifyProjection = SparseConv2d | Identity;

/**
 * SparK's mask tokens, one learned vector `[C_i]` per level, smallest map first; parameters named `0`, `1`,
 * … as PyTorch's `nn.ParameterList` names them, stored as `(1, C, 1, 1)` in PyTorch layout.
 *
 * @example
 * const tokens = new MaskTokens([768, 384], new SeededRandom(0));
 * tokens.token(0); // [768]
 */
export class MaskTokens extends Module {
  readonly tokens: tf.Variable[];

  constructor(channels: readonly number[], random: SeededRandom = new SeededRandom()) {
    super();
    // spark.py: trunc_normal_(p, mean=0, std=.02, a=-.02, b=.02), i.e. cut at one standard deviation.
    const init = random.truncatedNormal(0.02, -0.02, 0.02);
    this.tokens = channels.map((width, i) => this.registerParameter(String(i), init([width]), 'token'));
  }

  /** The token of level `i` (0 = smallest map): `[C_i]`. */
  token(i: number): tf.Tensor1D {
    const token = this.tokens[i];
    if (!token) throw new Error(`MaskTokens: no level ${i} (there are ${this.tokens.length})`);
    return token as tf.Tensor1D;
  }
}

/**
 * SparK's densify layers, one level per encoder feature map, smallest map first (SparK, Sec. 3.2): a
 * sparse norm, mask tokens filling the inactive sites, and a projection to the decoder width of that level
 * (1x1 at the smallest map, 3x3 elsewhere, identity at the smallest map when the widths agree). The three
 * lists are modules a model registers under the official names `densify_norms`, `densify_projs` and
 * `mask_tokens`; this object only groups them and owns nothing beyond them.
 *
 * @example
 * const layers = createDensifyLayers({ featureChannels: [256, 512, 1024, 2048], decoderWidth: 768, norm: 'bn' });
 * const toDecoder = layers.apply(encoderFeatures.slice().reverse(), active);
 * tf.dispose(toDecoder);
 * layers.dispose();
 */
export class DensifyLayers {
  constructor(
    readonly norms: ModuleList<DensifyNorm>,
    readonly projs: ModuleList<DensifyProjection>,
    readonly maskTokens: MaskTokens,
    readonly normKind: DensifyNormKind,
  ) {}

  /** Number of levels (feature maps). */
  get levels(): number {
    return this.norms.length;
  }

  /** Decoder channels per level, smallest map first (what {@link DensifyLayers.apply} returns). */
  get outputChannels(): number[] {
    return this.projs.items.map((proj, i) => (proj instanceof SparseConv2d ? proj.config.outChannels : this.maskTokens.token(i).shape[0]));
  }

  /**
   * Densifies one level: norm at the active sites, mask token at the inactive ones, projection.
   *
   * @param level 0 = smallest map
   * @param features `[B, H, W, C_level]`, zero at inactive sites (as a sparse encoder leaves them)
   * @param active `[B, h, w, 1]` at any resolution dividing `H x W` (or ActiveSites), 1 = visible
   * @returns `[B, H, W, decoder width of the level]`
   */
  applyLevel(level: number, features: tf.Tensor4D, active: ActiveMask): tf.Tensor4D {
    const norm = this.norms.items[level];
    if (!norm) throw new Error(`DensifyLayers: no level ${level} (there are ${this.levels})`);
    const token = this.maskTokens.token(level);
    if (features.rank !== 4 || features.shape[3] !== token.shape[0]) {
      throw new Error(`DensifyLayers: level ${level} expects features [B, H, W, ${token.shape[0]}], got [${features.shape.join(', ')}]`);
    }
    return tf.tidy(() => {
      const normed = norm instanceof Identity ? features : norm.apply(features, { active });
      const filled = densify(normed, active, token);
      const proj = this.projs.items[level];
      return proj instanceof Identity ? filled : proj.apply(filled);
    });
  }

  /**
   * Densifies every level.
   *
   * @param features smallest map first (the reverse of a backbone's output), `features[i]`: `[B, H_i, W_i, C_i]`
   * @param active `[B, h, w, 1]` (or ActiveSites), 1 = visible; resampled to each level's resolution
   * @returns the decoder inputs, smallest map first
   */
  apply(features: readonly tf.Tensor4D[], active: ActiveMask): tf.Tensor4D[] {
    if (features.length !== this.levels) {
      throw new Error(`DensifyLayers: expected ${this.levels} feature maps (smallest first), got ${features.length}`);
    }
    return features.map((level, i) => this.applyLevel(i, level, active));
  }

  /** Frees the norms, projections and mask tokens. */
  dispose(): void {
    this.norms.dispose();
    this.projs.dispose();
    this.maskTokens.dispose();
  }
}

/**
 * Builds SparK's densify layers with the official initialisation: mask tokens trunc_normal(std .02, within
 * ±.02), norms at weight 1 / bias 0 (batch norm: running mean 0, variance 1), projections with PyTorch's
 * default conv initialisation (SparK does not re-initialise them).
 *
 * @example
 * const layers = createDensifyLayers({ featureChannels: [96, 192, 384, 768], decoderWidth: 768, norm: 'ln', seed: 1 });
 * layers.projs.items[0]; // Identity: the smallest map already has the decoder's width
 */
export function createDensifyLayers({ featureChannels, decoderWidth, norm = 'bn', seed }: DensifyConfig): DensifyLayers {
  if (!DENSIFY_NORM_KINDS.includes(norm)) {
    throw new Error(`createDensifyLayers: unknown norm '${norm}': expected one of ${DENSIFY_NORM_KINDS.join(', ')}`);
  }
  if (featureChannels.length === 0 || featureChannels.some((channels) => !Number.isInteger(channels) || channels < 1)) {
    throw new Error(`createDensifyLayers: featureChannels must be positive integers, got [${featureChannels.join(', ')}]`);
  }
  if (!Number.isInteger(decoderWidth) || decoderWidth < 2 ** (featureChannels.length - 1)) {
    throw new Error(
      `createDensifyLayers: decoderWidth must be an integer of at least ${2 ** (featureChannels.length - 1)} (it halves per level), got ${decoderWidth}`,
    );
  }
  const random = new SeededRandom(seed);
  const smallestFirst = [...featureChannels].reverse();
  const maskTokens = new MaskTokens(smallestFirst, random);
  const norms = new ModuleList<DensifyNorm>();
  const projs = new ModuleList<DensifyProjection>();
  let width = decoderWidth;
  smallestFirst.forEach((channels, i) => {
    if (norm === 'bn') norms.push(new SparseBatchNorm2d({ channels }));
    else if (norm === 'ln') norms.push(new SparseLayerNorm({ channels, epsilon: 1e-6 }));
    else norms.push(new Identity());
    if (i === 0 && channels === width) {
      projs.push(new Identity());
    } else {
      const kernelSize = i === 0 ? 1 : 3;
      const bound = 1 / Math.sqrt(channels * kernelSize * kernelSize);
      projs.push(
        new SparseConv2d({
          inChannels: channels,
          outChannels: width,
          kernelSize,
          pad: Math.floor(kernelSize / 2),
          filterInit: random.uniform(-bound, bound),
          biasInit: random.uniform(-bound, bound),
        }),
      );
    }
    width = Math.floor(width / 2);
  });
  return new DensifyLayers(norms, projs, maskTokens, norm);
}

/**
 * The densify configuration a SparK state dict implies: feature channels from `mask_tokens.i` (shape
 * `(1, C, 1, 1)`, i = 0 the smallest map), the norm from `densify_norms.0` (`running_mean`: 'bn', only
 * `weight`: 'ln', nothing: 'none'), the decoder width from `densify_projs.0.weight` (or, when that level
 * is an identity, the smallest map's channels).
 *
 * @example
 * const config = densifyConfigFromState(state); // { featureChannels: [...], decoderWidth: 768, norm: 'bn' }
 */
export function densifyConfigFromState(state: StateShapes, prefix = ''): Required<Omit<DensifyConfig, 'seed'>> {
  const caller = 'densifyConfigFromState';
  const smallestFirst: number[] = [];
  for (let i = 0; state.has(`${prefix}mask_tokens.${i}`); i++) {
    const shape = state.get(`${prefix}mask_tokens.${i}`)!.shape;
    if (shape.length !== 4 || shape[0] !== 1 || shape[2] !== 1 || shape[3] !== 1) {
      throw new Error(`${caller}: '${prefix}mask_tokens.${i}' must have shape (1, C, 1, 1), got [${shape.join(', ')}]`);
    }
    smallestFirst.push(shape[1]);
  }
  if (smallestFirst.length === 0) throw new Error(`${caller}: no '${prefix}mask_tokens.0' in the state dict: not a SparK model`);
  let norm: DensifyNormKind = 'none';
  if (state.has(`${prefix}densify_norms.0.running_mean`)) norm = 'bn';
  else if (state.has(`${prefix}densify_norms.0.weight`)) norm = 'ln';
  const firstProj = state.get(`${prefix}densify_projs.0.weight`);
  const decoderWidth = firstProj ? firstProj.shape[0] : smallestFirst[0];
  return { featureChannels: smallestFirst.reverse(), decoderWidth, norm };
}
