/**
 * Your own convnet as a SparK backbone: the TypeScript counterpart of the official tutorial
 * `pretrain/models/custom.py` (`YourConvNet` with `get_downsample_ratio`, `get_feature_map_channels` and
 * `forward(x, hierarchical=True)`).
 *
 * The recipe:
 * 1. Extend sparse-ops' `Module` and build from its sparse layers (`SparseConv2d`, `SparseBatchNorm2d`,
 *    `SparseLayerNorm`, `SparseMaxPool2d`, `SparseAvgPool2d`), registering each under the name you want
 *    in checkpoints.
 * 2. State `kind`, `downsampleRatio` and `featureChannels` (4 maps, largest first).
 * 3. In `forward`, hand `{ active }` to every layer. Element-wise ops with f(0) = 0 (ReLU, GELU) keep
 *    masked sites at zero and need nothing; anything else that writes masked sites (a bias added outside a
 *    layer, a residual from a non-masked path) must be multiplied by the mask, as the official
 *    ConvNeXt block does after its pointwise layers.
 * Then SparK pre-trains it like a ResNet (batch-norm densify, since `kind` is 'custom').
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module, ModuleList, SparseBatchNorm2d, SparseConv2d, SparseMaxPool2d, type ActiveSites } from '@sparkmim/sparse-ops';
import { checkBackboneInput, withActiveSites, type Backbone, type BackboneForwardOptions } from '../backbone';
import { SeededRandom } from '@sparkmim/sparse-ops';

export interface TinyConvNetConfig {
  /** Channels of the four stages. Default [16, 32, 64, 128]. */
  channels?: readonly number[];
  /** Seeds the initial weights. Default: unseeded. */
  seed?: number;
}

/** One stage: [2x2 max pool], 3x3 conv, batch norm, ReLU (state `conv.*`, `bn.*`). */
export class TinyStage extends Module {
  readonly pool?: SparseMaxPool2d;
  readonly conv: SparseConv2d;
  readonly bn: SparseBatchNorm2d;

  constructor(inChannels: number, outChannels: number, downsample: boolean, random: SeededRandom) {
    super();
    if (downsample) this.pool = this.registerModule('pool', new SparseMaxPool2d({ filterSize: 2, strides: 2 }));
    this.conv = this.registerModule(
      'conv',
      new SparseConv2d({
        inChannels,
        outChannels,
        kernelSize: 3,
        pad: 1,
        bias: false,
        filterInit: random.normal(Math.sqrt(2 / (9 * outChannels))),
      }),
    );
    this.bn = this.registerModule('bn', new SparseBatchNorm2d({ channels: outChannels }));
  }

  apply(x: tf.Tensor4D, active?: ActiveSites): tf.Tensor4D {
    return tf.tidy(() => {
      const pooled = this.pool ? this.pool.apply(x, { active }) : x;
      // ReLU(0) = 0: masked sites stay zero without another mask.
      return tf.relu(this.bn.apply(this.conv.apply(pooled, { active }), { active }));
    });
  }
}

/**
 * A four-stage plain convnet (4x4 stride-4 stem conv + BN + ReLU; stages of [max pool] 3x3 conv + BN +
 * ReLU at strides 4, 8, 16, 32) implementing {@link Backbone}: a template for your own. Parameter names:
 * `stem.weight`, `stem_bn.*`, `stages.i.conv.weight`, `stages.i.bn.*`.
 *
 * @example
 * const net = createTinyConvNet({ channels: [8, 16, 32, 64], seed: 0 });
 * const features = net.forward(maskedImages, { active }); // [B, H/4, W/4, 8] … [B, H/32, W/32, 64]
 * tf.dispose(features);
 * net.dispose();
 */
export class TinyConvNet extends Module implements Backbone {
  readonly kind = 'custom' as const;
  readonly downsampleRatio = 32;
  readonly featureChannels: readonly number[];
  readonly stem: SparseConv2d;
  readonly stemNorm: SparseBatchNorm2d;
  readonly stages: ModuleList<TinyStage>;

  constructor({ channels = [16, 32, 64, 128], seed }: TinyConvNetConfig = {}) {
    super();
    if (channels.length !== 4 || !channels.every((width) => Number.isInteger(width) && width > 0)) {
      throw new Error(`TinyConvNet: channels must be 4 positive integers, got [${channels.join(', ')}]`);
    }
    const random = new SeededRandom(seed);
    this.featureChannels = [...channels];
    this.stem = this.registerModule(
      'stem',
      new SparseConv2d({
        inChannels: 3,
        outChannels: channels[0],
        kernelSize: 4,
        strides: 4,
        bias: false,
        filterInit: random.normal(Math.sqrt(2 / (16 * channels[0]))),
      }),
    );
    this.stemNorm = this.registerModule('stem_bn', new SparseBatchNorm2d({ channels: channels[0] }));
    this.stages = this.registerModule(
      'stages',
      new ModuleList(channels.map((width, i) => new TinyStage(i === 0 ? channels[0] : channels[i - 1], width, i > 0, random))),
    );
  }

  /** `x: [B, H, W, 3]` (H, W multiples of 32; zero at masked pixels when `active` is given) → 4 maps. */
  forward(x: tf.Tensor4D, { active }: BackboneForwardOptions = {}): tf.Tensor4D[] {
    checkBackboneInput(x, this.downsampleRatio, 'TinyConvNet.forward', { active });
    // One ActiveSites for the whole pass: each resolution's mask is derived once.
    return withActiveSites(active, (sites) =>
      tf.tidy(() => {
        let y = tf.relu(this.stemNorm.apply(this.stem.apply(x, { active: sites }), { active: sites }));
        const features: tf.Tensor4D[] = [];
        for (const stage of this.stages.items) {
          y = stage.apply(y, sites);
          features.push(y);
        }
        return features;
      }),
    );
  }
}

/**
 * Builds the example {@link TinyConvNet}.
 *
 * @example
 * const net = createTinyConvNet({ seed: 0 });
 */
export function createTinyConvNet(config: TinyConvNetConfig = {}): TinyConvNet {
  return new TinyConvNet(config);
}

/**
 * The default export a backbone module needs (see `backboneFromModule`): a function of the loader's context
 * that returns the backbone, seeded with the run's seed. This file itself imports @sparkmim/sparse-ops, so
 * it loads where that import is the caller's own copy (a test, an app built with it); a file for the
 * `sparkmim` CLI takes its layers from the context instead (`context.sparseOps`, `context.backbones`).
 *
 * @example
 * const backbone = backboneFromModule(await import('./tiny-convnet'), { tf, sparseOps, backbones, seed: 0 }, 'tiny-convnet');
 */
export default function tinyConvNetFromContext({ seed }: { seed?: number } = {}): TinyConvNet {
  return new TinyConvNet({ channels: [8, 16, 32, 64], seed });
}
