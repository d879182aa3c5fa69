import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList, SparseConv2d, SparseLayerNorm, activeAt, type ActiveSites, type RowSites } from '@sparkmim/sparse-ops';
import { checkBackboneInput, depthsOption, withActiveSites, type Backbone, type BackboneForwardOptions } from './backbone';
import { dropPath, gelu, Linear, linearDropPathRates } from './layers';
import { SeededRandom, constant } from '@sparkmim/sparse-ops';
import { convnextBlockRows, convnextForwardRows } from './convnext-rows';
import type { RowFeatures } from './resnet-rows';

/**
 * The official ConvNeXt (SparK's `models/convnext.py`, `num_classes=0`: no final norm, no head).
 *
 * @example
 * const config: ConvNeXtConfig = { depths: [3, 3, 9, 3], dims: [96, 192, 384, 768] }; // ConvNeXt-T
 */
export interface ConvNeXtConfig {
  /** Blocks per stage. */
  depths: readonly number[];
  /** Channels per stage. */
  dims: readonly number[];
  /** Stochastic depth, growing linearly from 0 at the first block to this at the last. Default 0. */
  dropPathRate?: number;
  /** Initial layer-scale `gamma`; 0 builds blocks without `gamma`. Default 1e-6. */
  layerScaleInit?: number;
  /** Seeds the initial weights and the drop-path draws. Default: unseeded. */
  seed?: number;
  /** Shown in error messages. Default 'convnext'. */
  name?: string;
}

interface BlockContext {
  random: SeededRandom;
}

/**
 * The official sparse ConvNeXt block (`SparseConvNeXtBlock`): depthwise 7x7 conv, channels-last layer
 * norm, Linear 4x, exact GELU, Linear back, layer scale `gamma`, then (masked) `x = input + drop_path(x)`.
 * Its state is `gamma`, `dwconv.*`, `norm.*`, `pwconv1.*`, `pwconv2.*`, PyTorch's order.
 *
 * @example
 * const block = new ConvNeXtBlock(96, { dropPathRate: 0, layerScaleInit: 1e-6, random: new SeededRandom(0) });
 * const y = block.apply(x, sites); // [B, H, W, 96] → [B, H, W, 96]
 */
export class ConvNeXtBlock extends Module {
  readonly gamma?: tf.Variable;
  readonly dwconv: SparseConv2d;
  readonly norm: SparseLayerNorm;
  readonly pwconv1: Linear;
  readonly pwconv2: Linear;
  readonly dropPathRate: number;
  private readonly random: SeededRandom;

  constructor(dim: number, { dropPathRate, layerScaleInit, random }: { dropPathRate: number; layerScaleInit: number } & BlockContext) {
    super();
    this.dropPathRate = dropPathRate;
    this.random = random;
    // Official init: trunc_normal_(std=.02) on conv and linear weights (bounds ±2: never cut), zero biases.
    const weightInit = random.truncatedNormal(0.02, -2, 2);
    const zeros = constant(0);
    this.dwconv = this.registerModule(
      'dwconv',
      new SparseConv2d({ inChannels: dim, outChannels: dim, kernelSize: 7, pad: 3, groups: dim, filterInit: weightInit, biasInit: zeros }),
    );
    this.norm = this.registerModule('norm', new SparseLayerNorm({ channels: dim, epsilon: 1e-6 }));
    this.pwconv1 = this.registerModule('pwconv1', new Linear({ inFeatures: dim, outFeatures: 4 * dim, weightInit, biasInit: zeros }));
    this.pwconv2 = this.registerModule('pwconv2', new Linear({ inFeatures: 4 * dim, outFeatures: dim, weightInit, biasInit: zeros }));
    if (layerScaleInit > 0) this.gamma = this.registerParameter('gamma', constant(layerScaleInit)([dim]));
  }

  /** `x: [B, H, W, dim]` → `[B, H, W, dim]`; `random` for drop path (default: the block's stream). */
  apply(x: tf.Tensor4D, active?: ActiveSites, random: SeededRandom | (() => number) = this.random): tf.Tensor4D {
    return tf.tidy(() => {
      let branch = this.dwconv.apply(x, { active });
      branch = this.norm.apply(branch, { active });
      // GELU(0) = 0, but pwconv2's bias is not: the official block masks once, after layer scale.
      branch = this.pwconv2.apply(gelu(this.pwconv1.apply(branch)));
      if (this.gamma) branch = tf.mul(branch, this.gamma);
      if (active) branch = tf.mul(branch, activeAt(active, branch, 'ConvNeXtBlock'));
      return tf.add(x, dropPath(branch, this.dropPathRate, this.training, random));
    });
  }

  /** The same block on rows (the visible sites, see `convnext-rows.ts`); call inside a tidy. */
  applyRows(x: RowFeatures, sites: RowSites, random: SeededRandom | (() => number) = this.random): RowFeatures {
    return convnextBlockRows(this, x, sites, random);
  }
}

/** The stem (`downsample_layers.0`): Conv2d(3, d0, 4, stride 4) then layer norm. */
export class ConvNeXtStem extends Module {
  readonly conv: SparseConv2d;
  readonly norm: SparseLayerNorm;

  constructor(outChannels: number, random: SeededRandom) {
    super();
    this.conv = this.registerModule(
      '0',
      new SparseConv2d({
        inChannels: 3,
        outChannels,
        kernelSize: 4,
        strides: 4,
        pad: 0,
        filterInit: random.truncatedNormal(0.02, -2, 2),
        biasInit: constant(0),
      }),
    );
    this.norm = this.registerModule('1', new SparseLayerNorm({ channels: outChannels, epsilon: 1e-6 }));
  }

  apply(x: tf.Tensor4D, active?: ActiveSites): tf.Tensor4D {
    return this.norm.apply(this.conv.apply(x, { active }), { active });
  }
}

/** A later downsample layer (`downsample_layers.i`, i ≥ 1): layer norm then Conv2d(k=2, stride 2). */
export class ConvNeXtDownsample extends Module {
  readonly norm: SparseLayerNorm;
  readonly conv: SparseConv2d;

  constructor(inChannels: number, outChannels: number, random: SeededRandom) {
    super();
    this.norm = this.registerModule('0', new SparseLayerNorm({ channels: inChannels, epsilon: 1e-6 }));
    this.conv = this.registerModule(
      '1',
      new SparseConv2d({
        inChannels,
        outChannels,
        kernelSize: 2,
        strides: 2,
        pad: 0,
        filterInit: random.truncatedNormal(0.02, -2, 2),
        biasInit: constant(0),
      }),
    );
  }

  apply(x: tf.Tensor4D, active?: ActiveSites): tf.Tensor4D {
    return this.conv.apply(this.norm.apply(x, { active }), { active });
  }
}

/** `ConvNeXt.forward`'s options: the backbone's, and the row path. */
export interface ConvNeXtForwardOptions extends BackboneForwardOptions {
  /**
   * Compute on the visible sites only, stored as rows (`RowSites.fromMask(active)`, built once per mask):
   * the same features as the masked path, without the work on masked sites. The image must be zero at
   * masked pixels; `active` is then optional (it is only checked).
   */
  rows?: RowSites;
}

/**
 * The official ConvNeXt as a SparK backbone: `downsample_layers.0` (4x4 stride-4 conv + LN), stage 0, then
 * three times (LN + 2x2 stride-2 conv, stage), returning every stage's output. With a mask every conv
 * (depthwise included) and every layer norm is the masked op, as official SparK's `SparseEncoder` makes
 * them; without one they are the ordinary ops.
 *
 * @example
 * const model = new ConvNeXt({ depths: [3, 3, 9, 3], dims: [96, 192, 384, 768], seed: 0 });
 * const features = model.forward(images, { active });
 * tf.dispose(features);
 * model.dispose();
 */
export class ConvNeXt extends Module implements Backbone {
  readonly kind = 'convnext' as const;
  readonly downsampleRatio = 32;
  readonly featureChannels: readonly number[];
  readonly name: string;
  /** The config with every default filled in. */
  readonly config: Readonly<ConvNeXtConfig>;
  readonly downsampleLayers: ModuleList<ConvNeXtStem | ConvNeXtDownsample>;
  readonly stages: ModuleList<ModuleList<ConvNeXtBlock>>;

  constructor(config: ConvNeXtConfig) {
    super();
    const { depths, dims, dropPathRate = 0, layerScaleInit = 1e-6, seed, name = 'convnext' } = config;
    validateConvNeXtConfig(name, depths, dims, layerScaleInit);
    this.name = name;
    this.config = { depths, dims, dropPathRate, layerScaleInit, seed, name };
    this.featureChannels = [...dims];
    const random = new SeededRandom(seed);
    this.downsampleLayers = this.registerModule('downsample_layers', new ModuleList<ConvNeXtStem | ConvNeXtDownsample>());
    this.downsampleLayers.push(new ConvNeXtStem(dims[0], random));
    for (let i = 1; i < 4; i++) this.downsampleLayers.push(new ConvNeXtDownsample(dims[i - 1], dims[i], random));
    // torch.linspace(0, drop_path_rate, sum(depths)), one rate per block in order.
    const rates = linearDropPathRates(
      dropPathRate,
      depths.reduce((sum, depth) => sum + depth, 0),
    );
    let blockIndex = 0;
    this.stages = this.registerModule('stages', new ModuleList<ModuleList<ConvNeXtBlock>>());
    depths.forEach((depth, stage) => {
      const blocks = new ModuleList<ConvNeXtBlock>();
      for (let i = 0; i < depth; i++) {
        blocks.push(new ConvNeXtBlock(dims[stage], { dropPathRate: rates[blockIndex++], layerScaleInit, random }));
      }
      this.stages.push(blocks);
    });
  }

  /**
   * `x: [B, H, W, 3]` (H, W multiples of 32; zero at masked pixels when `active` is given) → the output of
   * each stage: `[B, H/4, W/4, d0]`, `[B, H/8, W/8, d1]`, `[B, H/16, W/16, d2]`, `[B, H/32, W/32, d3]`.
   */
  forward(x: tf.Tensor4D, { active, random, rows }: ConvNeXtForwardOptions = {}): tf.Tensor4D[] {
    checkBackboneInput(x, this.downsampleRatio, `${this.name}.forward`, { active });
    if (rows) return convnextForwardRows(this, x, rows, random);
    return withActiveSites(active, (sites) =>
      tf.tidy(() => {
        let y = x;
        const features: tf.Tensor4D[] = [];
        this.stages.items.forEach((stage, i) => {
          y = this.downsampleLayers.items[i].apply(y, sites);
          for (const block of stage.items) y = block.apply(y, sites, random);
          features.push(y);
        });
        return features;
      }),
    );
  }
}

/**
 * Builds an official ConvNeXt from a config (any depths and widths).
 *
 * @example
 * const narrow = createConvNeXt({ depths: [1, 1, 2, 1], dims: [8, 16, 32, 64] });
 */
export function createConvNeXt(config: ConvNeXtConfig): ConvNeXt {
  return new ConvNeXt(config);
}

/**
 * Options of the named ConvNeXt factories: `depths` (blocks per stage) and `dims` (channels per stage)
 * default to the variant's; fewer blocks or narrower stages make a smaller model of the same family.
 */
export type ConvNeXtOptions = Omit<ConvNeXtConfig, 'depths' | 'dims'> & { depths?: readonly number[]; dims?: readonly number[] };

/** Depths and widths of the official ConvNeXts (`convnext.py`). */
export const CONVNEXT_VARIANTS = {
  convnext_tiny: { depths: [3, 3, 9, 3], dims: [96, 192, 384, 768] },
  convnext_small: { depths: [3, 3, 27, 3], dims: [96, 192, 384, 768] },
  convnext_base: { depths: [3, 3, 27, 3], dims: [128, 256, 512, 1024] },
  convnext_large: { depths: [3, 3, 27, 3], dims: [192, 384, 768, 1536] },
} as const satisfies Record<string, { depths: readonly number[]; dims: readonly number[] }>;

export type ConvNeXtName = keyof typeof CONVNEXT_VARIANTS;

function named(name: ConvNeXtName, { depths, dims, ...options }: ConvNeXtOptions): ConvNeXt {
  const variant = CONVNEXT_VARIANTS[name];
  return new ConvNeXt({ name, ...options, depths: depthsOption(name, name, depths, variant.depths), dims: dims ?? variant.dims });
}

/**
 * ConvNeXt-T (depths [3, 3, 9, 3], dims [96, 192, 384, 768]).
 *
 * @example
 * const model = convnextTiny({ dropPathRate: 0.1, seed: 0 });
 */
export function convnextTiny(options: ConvNeXtOptions = {}): ConvNeXt {
  return named('convnext_tiny', options);
}

/**
 * ConvNeXt-S (depths [3, 3, 27, 3], dims [96, 192, 384, 768]).
 *
 * @example
 * const model = convnextSmall();
 */
export function convnextSmall(options: ConvNeXtOptions = {}): ConvNeXt {
  return named('convnext_small', options);
}

/**
 * ConvNeXt-B (depths [3, 3, 27, 3], dims [128, 256, 512, 1024]).
 *
 * @example
 * const model = convnextBase({ dropPathRate: 0.2 });
 */
export function convnextBase(options: ConvNeXtOptions = {}): ConvNeXt {
  return named('convnext_base', options);
}

/**
 * ConvNeXt-L (depths [3, 3, 27, 3], dims [192, 384, 768, 1536]).
 *
 * @example
 * const model = convnextLarge();
 */
export function convnextLarge(options: ConvNeXtOptions = {}): ConvNeXt {
  return named('convnext_large', options);
}

function validateConvNeXtConfig(name: string, depths: readonly number[], dims: readonly number[], layerScaleInit: number): void {
  const positiveInts = (values: readonly number[]) => values.every((value) => Number.isInteger(value) && value > 0);
  if (depths.length !== 4 || !positiveInts(depths)) {
    throw new Error(`${name}: depths must be 4 positive integers (blocks per stage), got [${depths.join(', ')}]`);
  }
  if (dims.length !== 4 || !positiveInts(dims)) {
    throw new Error(`${name}: dims must be 4 positive integers (channels per stage), got [${dims.join(', ')}]`);
  }
  if (!(layerScaleInit >= 0)) throw new Error(`${name}: layerScaleInit must be >= 0, got ${layerScaleInit}`);
}
