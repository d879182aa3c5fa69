import * as tf from '@tensorflow/tfjs-core';
import {
  Module,
  ModuleList,
  SparseBatchNorm2d,
  SparseConv2d,
  SparseMaxPool2d,
  type ActiveSites,
  type Initializer,
  type RowSites,
} from '@sparkmim/sparse-ops';
import { checkBackboneInput, depthsOption, withActiveSites, type Backbone, type BackboneForwardOptions } from './backbone';
import { dropPath, linearDropPathRates } from './layers';
import { SeededRandom } from '@sparkmim/sparse-ops';
import { basicBlockRows, bottleneckRows, resnetForwardRows, type RowFeatures } from './resnet-rows';

/** timm's residual blocks: two 3x3 convs (`basic`, ResNet-18/34) or 1x1-3x3-1x1 with 4x expansion (`bottleneck`). */
export type ResNetBlockType = 'basic' | 'bottleneck';

/**
 * A timm ResNet (`timm.models.resnet.ResNet`, default 7x7 stem, conv downsample), as SparK pre-trains it.
 *
 * @example
 * const config: ResNetConfig = { depths: [3, 4, 6, 3], block: 'bottleneck' }; // ResNet-50
 */
export interface ResNetConfig {
  /** Blocks per stage (`layer1` … `layer4`). */
  depths: readonly number[];
  block: ResNetBlockType;
  /** Output channels of the stem conv. Default 64. */
  stemWidth?: number;
  /** Base width of each stage (`planes`; outputs are 4x that for bottleneck blocks). Default [64, 128, 256, 512]. */
  channels?: readonly number[];
  /** Stochastic depth, growing linearly from 0 at the first block to this at the last. Default 0. */
  dropPathRate?: number;
  /** timm's `zero_init_last`: the last BN of every residual branch starts with weight 0. Default true. */
  zeroInitLast?: boolean;
  /** Seeds the initial weights and the drop-path draws. Default: unseeded. */
  seed?: number;
  /** Shown in error messages. Default 'resnet'. */
  name?: string;
}

const DEFAULT_CHANNELS = [64, 128, 256, 512] as const;

/** How a residual block is built besides its widths. */
export interface ResNetBlockOptions {
  /** Stride of the block (on the 3x3 conv, and on the shortcut's 1x1 conv). Default 1. */
  stride?: number;
  /** Stochastic depth of the residual branch. Default 0. */
  dropPathRate?: number;
  /** Start the branch's last BN at weight 0 (timm's `zero_init_last`). Default true. */
  zeroInitLast?: boolean;
  /** Source of the initial weights and drop-path draws. Default: unseeded. */
  random?: SeededRandom;
}

/** timm's conv init: kaiming_normal_(mode='fan_out', nonlinearity='relu'). */
function kaimingFanOut(random: SeededRandom, outChannels: number, kernelSize: number): Initializer {
  return random.normal(Math.sqrt(2 / (outChannels * kernelSize * kernelSize)));
}

/** The 1x1 conv + BN on the shortcut of a block that changes shape (timm's `downsample_conv`, `downsample.0/.1`). */
export class ResNetDownsample extends Module {
  readonly conv: SparseConv2d;
  readonly bn: SparseBatchNorm2d;

  constructor(inChannels: number, outChannels: number, stride: number, random: SeededRandom) {
    super();
    this.conv = this.registerModule(
      '0',
      new SparseConv2d({
        inChannels,
        outChannels,
        kernelSize: 1,
        strides: stride,
        pad: 0,
        bias: false,
        filterInit: kaimingFanOut(random, outChannels, 1),
      }),
    );
    this.bn = this.registerModule('1', new SparseBatchNorm2d({ channels: outChannels }));
  }

  apply(x: tf.Tensor4D, active?: ActiveSites): tf.Tensor4D {
    return this.bn.apply(this.conv.apply(x, { active }), { active });
  }
}

/**
 * timm's `BasicBlock`: conv3x3(stride)-BN-ReLU-conv3x3-BN, drop path, + shortcut, ReLU; the shortcut is a
 * 1x1 conv + BN (`downsample.0/.1`) when the stride or the width changes. Every conv and BN is masked when
 * the block gets a mask.
 *
 * @example
 * const block = new BasicBlock(64, 128, { stride: 2, random: new SeededRandom(0) });
 * const y = block.apply(x, sites); // [B, 56, 56, 64] → [B, 28, 28, 128]
 */
export class BasicBlock extends Module {
  static readonly expansion = 1;
  readonly conv1: SparseConv2d;
  readonly bn1: SparseBatchNorm2d;
  readonly conv2: SparseConv2d;
  readonly bn2: SparseBatchNorm2d;
  readonly downsample?: ResNetDownsample;

  readonly dropPathRate: number;
  private readonly random: SeededRandom;

  constructor(
    inChannels: number,
    planes: number,
    { stride = 1, dropPathRate = 0, zeroInitLast = true, random = new SeededRandom() }: ResNetBlockOptions = {},
  ) {
    super();
    this.dropPathRate = dropPathRate;
    this.random = random;
    // Registration order is timm's attribute order, so named_parameters() lines up with PyTorch's.
    this.conv1 = this.registerModule(
      'conv1',
      new SparseConv2d({
        inChannels,
        outChannels: planes,
        kernelSize: 3,
        strides: stride,
        pad: 1,
        bias: false,
        filterInit: kaimingFanOut(random, planes, 3),
      }),
    );
    this.bn1 = this.registerModule('bn1', new SparseBatchNorm2d({ channels: planes }));
    this.conv2 = this.registerModule(
      'conv2',
      new SparseConv2d({ inChannels: planes, outChannels: planes, kernelSize: 3, pad: 1, bias: false, filterInit: kaimingFanOut(random, planes, 3) }),
    );
    this.bn2 = this.registerModule('bn2', new SparseBatchNorm2d({ channels: planes }));
    if (zeroInitLast) zeroWeight(this.bn2);
    if (stride !== 1 || inChannels !== planes) {
      this.downsample = this.registerModule('downsample', new ResNetDownsample(inChannels, planes, stride, random));
    }
  }

  /** `x: [B, H, W, inC]` → `[B, H/stride, W/stride, planes]`; `random` for drop path (default: the block's stream). */
  apply(x: tf.Tensor4D, active?: ActiveSites, random: SeededRandom | (() => number) = this.random): tf.Tensor4D {
    return tf.tidy(() => {
      let branch = tf.relu(this.bn1.apply(this.conv1.apply(x, { active }), { active }));
      branch = this.bn2.apply(this.conv2.apply(branch, { active }), { active });
      branch = dropPath(branch, this.dropPathRate, this.training, random);
      const shortcut = this.downsample ? this.downsample.apply(x, active) : x;
      return tf.relu(tf.add(branch, shortcut) as tf.Tensor4D);
    });
  }

  /** The same block on rows (the visible sites, see `resnet-rows.ts`); call inside a tidy. */
  applyRows(x: RowFeatures, sites: RowSites, random: SeededRandom | (() => number) = this.random): RowFeatures {
    return basicBlockRows(this, x, sites, random);
  }
}

/**
 * timm's `Bottleneck`: conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1(4x)-BN, drop path, + shortcut, ReLU;
 * the shortcut is a 1x1 conv + BN (`downsample.0/.1`) when the stride or the width changes.
 *
 * @example
 * const block = new Bottleneck(256, 128, { stride: 2, dropPathRate: 0.05 });
 * const y = block.apply(x, sites); // [B, 56, 56, 256] → [B, 28, 28, 512]
 */
export class Bottleneck extends Module {
  static readonly expansion = 4;
  readonly conv1: SparseConv2d;
  readonly bn1: SparseBatchNorm2d;
  readonly conv2: SparseConv2d;
  readonly bn2: SparseBatchNorm2d;
  readonly conv3: SparseConv2d;
  readonly bn3: SparseBatchNorm2d;
  readonly downsample?: ResNetDownsample;

  readonly dropPathRate: number;
  private readonly random: SeededRandom;

  constructor(
    inChannels: number,
    planes: number,
    { stride = 1, dropPathRate = 0, zeroInitLast = true, random = new SeededRandom() }: ResNetBlockOptions = {},
  ) {
    super();
    this.dropPathRate = dropPathRate;
    this.random = random;
    const outChannels = planes * Bottleneck.expansion;
    this.conv1 = this.registerModule(
      'conv1',
      new SparseConv2d({ inChannels, outChannels: planes, kernelSize: 1, pad: 0, bias: false, filterInit: kaimingFanOut(random, planes, 1) }),
    );
    this.bn1 = this.registerModule('bn1', new SparseBatchNorm2d({ channels: planes }));
    // The stride sits on the 3x3 conv (ResNet v1.5, as timm and torchvision have it).
    this.conv2 = this.registerModule(
      'conv2',
      new SparseConv2d({
        inChannels: planes,
        outChannels: planes,
        kernelSize: 3,
        strides: stride,
        pad: 1,
        bias: false,
        filterInit: kaimingFanOut(random, planes, 3),
      }),
    );
    this.bn2 = this.registerModule('bn2', new SparseBatchNorm2d({ channels: planes }));
    this.conv3 = this.registerModule(
      'conv3',
      new SparseConv2d({ inChannels: planes, outChannels, kernelSize: 1, pad: 0, bias: false, filterInit: kaimingFanOut(random, outChannels, 1) }),
    );
    this.bn3 = this.registerModule('bn3', new SparseBatchNorm2d({ channels: outChannels }));
    if (zeroInitLast) zeroWeight(this.bn3);
    if (stride !== 1 || inChannels !== outChannels) {
      this.downsample = this.registerModule('downsample', new ResNetDownsample(inChannels, outChannels, stride, random));
    }
  }

  /** `x: [B, H, W, inC]` → `[B, H/stride, W/stride, 4 planes]`; `random` for drop path (default: the block's stream). */
  apply(x: tf.Tensor4D, active?: ActiveSites, random: SeededRandom | (() => number) = this.random): tf.Tensor4D {
    return tf.tidy(() => {
      let branch = tf.relu(this.bn1.apply(this.conv1.apply(x, { active }), { active }));
      branch = tf.relu(this.bn2.apply(this.conv2.apply(branch, { active }), { active }));
      branch = this.bn3.apply(this.conv3.apply(branch, { active }), { active });
      branch = dropPath(branch, this.dropPathRate, this.training, random);
      const shortcut = this.downsample ? this.downsample.apply(x, active) : x;
      return tf.relu(tf.add(branch, shortcut) as tf.Tensor4D);
    });
  }

  /** The same block on rows (the visible sites, see `resnet-rows.ts`); call inside a tidy. */
  applyRows(x: RowFeatures, sites: RowSites, random: SeededRandom | (() => number) = this.random): RowFeatures {
    return bottleneckRows(this, x, sites, random);
  }
}

export type ResNetBlock = BasicBlock | Bottleneck;

/** `ResNet.forward`'s options: the backbone's, and the row path. */
export interface ResNetForwardOptions extends BackboneForwardOptions {
  /**
   * Compute on the visible sites only, stored as rows (`RowSites.fromMask(active)`, built once per mask):
   * the same features as the masked path, without the work on masked sites. The image must be zero at
   * masked pixels; `active` is then optional (it is only checked).
   */
  rows?: RowSites;
}

/**
 * timm's ResNet as a SparK backbone: stem (7x7 stride-2 conv without bias, BN, ReLU, 3x3 stride-2 max
 * pool), then `layer1` … `layer4` (strides 1, 2, 2, 2), returning the output of every stage. Parameter
 * names are timm's (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`, …). With a mask every
 * conv, BN and the max pool are the masked ops, as official SparK's `SparseEncoder` makes them.
 *
 * @example
 * const model = new ResNet({ depths: [2, 2, 2, 2], block: 'basic', seed: 0 });
 * const features = model.forward(images, { active }); // 4 maps, strides 4 … 32
 * tf.dispose(features);
 * model.dispose();
 */
export class ResNet extends Module implements Backbone {
  readonly kind = 'resnet' as const;
  readonly downsampleRatio = 32;
  readonly featureChannels: readonly number[];
  readonly name: string;
  /** The config with every default filled in. */
  readonly config: Readonly<ResNetConfig>;
  readonly conv1: SparseConv2d;
  readonly bn1: SparseBatchNorm2d;
  readonly maxpool: SparseMaxPool2d;
  readonly layers: ModuleList<ResNetBlock>[];

  constructor(config: ResNetConfig) {
    super();
    const { depths, block, stemWidth = 64, channels = DEFAULT_CHANNELS, dropPathRate = 0, zeroInitLast = true, seed, name = 'resnet' } = config;
    validateResNetConfig(name, depths, channels, stemWidth, block);
    this.name = name;
    this.config = { depths, block, stemWidth, channels, dropPathRate, zeroInitLast, seed, name };
    // timm's init: kaiming_normal_(mode='fan_out', nonlinearity='relu') for every conv; BN weight 1, bias 0.
    const random = new SeededRandom(seed);
    this.conv1 = this.registerModule(
      'conv1',
      new SparseConv2d({
        inChannels: 3,
        outChannels: stemWidth,
        kernelSize: 7,
        strides: 2,
        pad: 3,
        bias: false,
        filterInit: kaimingFanOut(random, stemWidth, 7),
      }),
    );
    this.bn1 = this.registerModule('bn1', new SparseBatchNorm2d({ channels: stemWidth }));
    this.maxpool = this.registerModule('maxpool', new SparseMaxPool2d({ filterSize: 3, strides: 2, pad: 1 }));
    const Block = block === 'basic' ? BasicBlock : Bottleneck;
    const rates = linearDropPathRates(
      dropPathRate,
      depths.reduce((sum, depth) => sum + depth, 0),
    );
    let inChannels = stemWidth;
    let blockIndex = 0;
    this.layers = [];
    const featureChannels: number[] = [];
    depths.forEach((depth, stage) => {
      const blocks = new ModuleList<ResNetBlock>();
      for (let i = 0; i < depth; i++) {
        const stride = i === 0 && stage > 0 ? 2 : 1;
        blocks.push(new Block(inChannels, channels[stage], { stride, dropPathRate: rates[blockIndex++], zeroInitLast, random }));
        inChannels = channels[stage] * Block.expansion;
      }
      this.layers.push(this.registerModule(`layer${stage + 1}`, blocks));
      featureChannels.push(inChannels);
    });
    this.featureChannels = featureChannels;
  }

  /**
   * `x: [B, H, W, 3]` (H, W multiples of 32; zero at masked pixels when `active` is given) → the outputs of
   * `layer1` … `layer4`: `[B, H/4, W/4, C0]`, `[B, H/8, W/8, C1]`, `[B, H/16, W/16, C2]`, `[B, H/32, W/32, C3]`.
   * In training mode batch norms use (active-site) batch statistics and update their running statistics.
   */
  forward(x: tf.Tensor4D, { active, random, rows }: ResNetForwardOptions = {}): tf.Tensor4D[] {
    checkBackboneInput(x, this.downsampleRatio, `${this.name}.forward`, { active });
    if (rows) return resnetForwardRows(this, x, rows, random);
    return withActiveSites(active, (sites) =>
      tf.tidy(() => {
        let y = tf.relu(this.bn1.apply(this.conv1.apply(x, { active: sites }), { active: sites }));
        y = this.maxpool.apply(y, { active: sites });
        const features: tf.Tensor4D[] = [];
        for (const layer of this.layers) {
          for (const block of layer.items) y = block.apply(y, sites, random);
          features.push(y);
        }
        return features;
      }),
    );
  }
}

/**
 * Builds a timm-style ResNet from a config (any depths, stem width and stage widths).
 *
 * @example
 * const narrow = createResNet({ depths: [2, 2, 2, 2], block: 'basic', stemWidth: 16, channels: [16, 32, 64, 128] });
 */
export function createResNet(config: ResNetConfig): ResNet {
  return new ResNet(config);
}

/**
 * Options of the named ResNet factories: everything but the block type; `depths` (blocks per stage)
 * defaults to the variant's, and fewer blocks make a smaller model of the same family.
 */
export type ResNetOptions = Omit<ResNetConfig, 'depths' | 'block'> & { depths?: readonly number[] };

/** Depths and block type of timm's named ResNets. */
export const RESNET_VARIANTS = {
  resnet18: { depths: [2, 2, 2, 2], block: 'basic' },
  resnet34: { depths: [3, 4, 6, 3], block: 'basic' },
  resnet50: { depths: [3, 4, 6, 3], block: 'bottleneck' },
  resnet101: { depths: [3, 4, 23, 3], block: 'bottleneck' },
  resnet152: { depths: [3, 8, 36, 3], block: 'bottleneck' },
  resnet200: { depths: [3, 24, 36, 3], block: 'bottleneck' },
} as const satisfies Record<string, { depths: readonly number[]; block: ResNetBlockType }>;

export type ResNetName = keyof typeof RESNET_VARIANTS;

function named(name: ResNetName, { depths, ...options }: ResNetOptions): ResNet {
  const variant = RESNET_VARIANTS[name];
  return new ResNet({ name, ...options, depths: depthsOption(name, name, depths, variant.depths), block: variant.block });
}

/**
 * ResNet-18 (basic blocks [2, 2, 2, 2]; features 64, 128, 256, 512).
 *
 * @example
 * const model = resnet18({ seed: 0 });
 * const small = resnet18({ depths: [1, 1, 1, 1], channels: [16, 32, 64, 128] });
 */
export function resnet18(options: ResNetOptions = {}): ResNet {
  return named('resnet18', options);
}

/**
 * ResNet-34 (basic blocks [3, 4, 6, 3]; features 64, 128, 256, 512).
 *
 * @example
 * const model = resnet34({ dropPathRate: 0.05 });
 */
export function resnet34(options: ResNetOptions = {}): ResNet {
  return named('resnet34', options);
}

/**
 * ResNet-50 (bottleneck blocks [3, 4, 6, 3]; features 256, 512, 1024, 2048), SparK's main ResNet.
 *
 * @example
 * const model = resnet50({ dropPathRate: 0.05, seed: 0 });
 */
export function resnet50(options: ResNetOptions = {}): ResNet {
  return named('resnet50', options);
}

/**
 * ResNet-101 (bottleneck blocks [3, 4, 23, 3]).
 *
 * @example
 * const model = resnet101();
 */
export function resnet101(options: ResNetOptions = {}): ResNet {
  return named('resnet101', options);
}

/**
 * ResNet-152 (bottleneck blocks [3, 8, 36, 3]).
 *
 * @example
 * const model = resnet152();
 */
export function resnet152(options: ResNetOptions = {}): ResNet {
  return named('resnet152', options);
}

/**
 * ResNet-200 (bottleneck blocks [3, 24, 36, 3]).
 *
 * @example
 * const model = resnet200();
 */
export function resnet200(options: ResNetOptions = {}): ResNet {
  return named('resnet200', options);
}

function zeroWeight(bn: SparseBatchNorm2d): void {
  const zeros = tf.zerosLike(bn.gamma);
  bn.gamma.assign(zeros);
  zeros.dispose();
}

function validateResNetConfig(name: string, depths: readonly number[], channels: readonly number[], stemWidth: number, block: string): void {
  const positiveInts = (values: readonly number[]) => values.every((value) => Number.isInteger(value) && value > 0);
  if (depths.length !== 4 || !positiveInts(depths)) {
    throw new Error(`${name}: depths must be 4 positive integers (blocks per stage), got [${depths.join(', ')}]`);
  }
  if (channels.length !== 4 || !positiveInts(channels)) {
    throw new Error(`${name}: channels must be 4 positive integers (width per stage), got [${channels.join(', ')}]`);
  }
  if (!positiveInts([stemWidth])) throw new Error(`${name}: stemWidth must be a positive integer, got ${stemWidth}`);
  if (block !== 'basic' && block !== 'bottleneck') {
    throw new Error(`${name}: block must be 'basic' or 'bottleneck', got '${block}'`);
  }
}
