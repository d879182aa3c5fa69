import * as tf from '@tensorflow/tfjs-core';
import {
  Module,
  ModuleList,
  SeededRandom,
  SparseBatchNorm2d,
  SparseConv2d,
  constant,
  type Initializer,
  type StateShapes,
} from '@sparkmim/sparse-ops';
import { ConvTranspose2d } from './layers';

export interface LightDecoderConfig {
  /** How much the decoder upsamples the smallest map: the encoder's downsample ratio, a power of 2 (SparK: 32). */
  upSampleRatio: number;
  /** Channels of the first block; each block halves them. Default 768, SparK's. */
  width?: number;
  /** Seed for the official initialisation; omitted: `Math.random`. */
  seed?: number;
}

// decoder.py initialize() checks nn.Linear, then nn.Conv2d (trunc_normal_ std .02, bias 0), then
// (nn.Conv2d, nn.ConvTranspose2d): ConvTranspose2d is not a subclass of nn.Conv2d, so only it reaches the
// kaiming_normal_(mode='fan_out', nonlinearity='relu') branch. BatchNorm: weight 1, bias 0.
function convInit(random: SeededRandom): Initializer {
  return random.truncatedNormal(0.02);
}

/** Conv 3x3, BN, ReLU6, conv 3x3, BN: PyTorch's `nn.Sequential` with children 0, 1, (2 = ReLU6), 3, 4. */
class UNetConvs extends Module {
  readonly conv1: SparseConv2d;
  readonly bn1: SparseBatchNorm2d;
  readonly conv2: SparseConv2d;
  readonly bn2: SparseBatchNorm2d;

  constructor(inChannels: number, outChannels: number, random: SeededRandom) {
    super();
    const conv3x3 = (cin: number, cout: number) =>
      new SparseConv2d({ inChannels: cin, outChannels: cout, kernelSize: 3, pad: 1, bias: false, filterInit: convInit(random) });
    this.conv1 = this.registerModule('0', conv3x3(inChannels, inChannels));
    this.bn1 = this.registerModule('1', new SparseBatchNorm2d({ channels: inChannels }));
    this.conv2 = this.registerModule('3', conv3x3(inChannels, outChannels));
    this.bn2 = this.registerModule('4', new SparseBatchNorm2d({ channels: outChannels }));
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const hidden = tf.relu6(this.bn1.apply(this.conv1.apply(x)));
      return this.bn2.apply(this.conv2.apply(hidden));
    });
  }
}

/**
 * One UNet block of SparK's light decoder: 2x upsampling by a 4x4 stride-2 transposed conv (padding 1,
 * with bias), then conv 3x3, BN, ReLU6, conv 3x3, BN (official `UNetBlock`, children `up_sample` and
 * `conv`). In training mode the batch norms use batch statistics and update their running statistics.
 *
 * @example
 * const block = new UNetBlock(64, 32);
 * const y = block.apply(x); // [B, H, W, 64] → [B, 2H, 2W, 32]
 * block.dispose();
 */
export class UNetBlock extends Module {
  readonly upSample: ConvTranspose2d;
  readonly conv: UNetConvs;

  /** `random`: where the official initialisation draws from (seeded or not). */
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    random: SeededRandom = new SeededRandom(),
  ) {
    super();
    // PyTorch's fan_out of a ConvTranspose2d weight (in, out, kH, kW) is size(0) * kH * kW.
    const fanOut = inChannels * 4 * 4;
    this.upSample = this.registerModule(
      'up_sample',
      new ConvTranspose2d({
        inChannels,
        outChannels: inChannels,
        kernelSize: 4,
        strides: 2,
        pad: 1,
        filterInit: random.normal(Math.sqrt(2 / fanOut)),
        biasInit: constant(0),
      }),
    );
    this.conv = this.registerModule('conv', new UNetConvs(inChannels, outChannels, random));
  }

  /** `x: [B, H, W, inC]` → `[B, 2H, 2W, outC]`. */
  apply(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => this.conv.apply(this.upSample.apply(x)));
  }
}

/**
 * SparK's light UNet decoder (official `LightDecoder`): `log2(upSampleRatio)` UNet blocks, the first with
 * `width` channels and each next one with half, then a 1x1 projection with bias to 3 channels. State
 * entries carry the official names (`dec.j.up_sample.*`, `dec.j.conv.{0,1,3,4}.*`, `proj.*`).
 *
 * @example
 * const decoder = new LightDecoder({ upSampleRatio: 32, width: 768, seed: 0 });
 * const rec = decoder.apply(denseFeatures); // smallest map first → [B, 32 h, 32 w, 3]
 * decoder.dispose();
 */
export class LightDecoder extends Module {
  readonly width: number;
  readonly upSampleRatio: number;
  /** Channels entering block j (`channels[j]`) and leaving it (`channels[j + 1]`). */
  readonly channels: number[];
  readonly blocks: ModuleList<UNetBlock>;
  readonly proj: SparseConv2d;

  constructor({ upSampleRatio, width = 768, seed }: LightDecoderConfig) {
    super();
    const blockCount = Math.round(Math.log2(upSampleRatio));
    if (!Number.isInteger(upSampleRatio) || upSampleRatio < 2 || 2 ** blockCount !== upSampleRatio) {
      throw new Error(`LightDecoder: upSampleRatio must be a power of 2 (at least 2), got ${upSampleRatio}`);
    }
    if (!Number.isInteger(width) || width < 2 ** blockCount) {
      throw new Error(
        `LightDecoder: width must be an integer of at least ${2 ** blockCount} so that ${blockCount} halvings leave a channel, got ${width}`,
      );
    }
    this.width = width;
    this.upSampleRatio = upSampleRatio;
    // Python's `width // 2 ** i`.
    this.channels = Array.from({ length: blockCount + 1 }, (_, i) => Math.floor(width / 2 ** i));
    const random = new SeededRandom(seed);
    this.blocks = this.registerModule(
      'dec',
      new ModuleList(this.channels.slice(0, -1).map((cin, j) => new UNetBlock(cin, this.channels[j + 1], random))),
    );
    this.proj = this.registerModule(
      'proj',
      new SparseConv2d({
        inChannels: this.channels[blockCount],
        outChannels: 3,
        kernelSize: 1,
        filterInit: convInit(random),
        biasInit: constant(0),
      }),
    );
  }

  /**
   * Decodes dense features, smallest map first: `x = 0`, then for each block `x = x + toDecoder[j]` (when
   * given) and `x = block(x)`; finally the projection.
   *
   * @param toDecoder `toDecoder[j]`: `[B, h·2^j, w·2^j, channels[j]]`, or undefined to add nothing at block j
   *   (the first one is required). Fewer entries than blocks is fine (SparK has 4 levels and 5 blocks).
   * @returns `[B, h·upSampleRatio, w·upSampleRatio, 3]`
   */
  apply(toDecoder: readonly (tf.Tensor4D | undefined)[]): tf.Tensor4D {
    const first = toDecoder[0];
    if (!first) throw new Error('LightDecoder: the first (smallest) feature map is required');
    if (toDecoder.length > this.blocks.length) {
      throw new Error(`LightDecoder: got ${toDecoder.length} feature maps for ${this.blocks.length} blocks`);
    }
    const [batch, height, width] = first.shape;
    toDecoder.forEach((features, j) => {
      if (!features) return;
      const expected = [batch, height * 2 ** j, width * 2 ** j, this.channels[j]];
      if (features.rank !== 4 || features.shape.some((size, axis) => size !== expected[axis])) {
        throw new Error(`LightDecoder: feature map ${j} must have shape [${expected.join(', ')}], got [${features.shape.join(', ')}]`);
      }
    });
    return tf.tidy(() => {
      let x: tf.Tensor4D | undefined;
      this.blocks.items.forEach((block, j) => {
        const features = toDecoder[j];
        if (features) x = x ? (tf.add(x, features) as tf.Tensor4D) : features;
        x = block.apply(x!);
      });
      return this.proj.apply(x!);
    });
  }
}

/**
 * The decoder configuration a state dict implies: `width` from `dec.0.up_sample.weight` (shape
 * `(width, width, 4, 4)`), `upSampleRatio` = 2 to the number of `dec.j.up_sample.weight` entries.
 *
 * @param prefix where the decoder's entries start, e.g. `dense_decoder.`
 *
 * @example
 * const config = lightDecoderConfigFromState(state, 'dense_decoder.'); // { upSampleRatio: 32, width: 768 }
 */
export function lightDecoderConfigFromState(state: StateShapes, prefix = ''): Required<Omit<LightDecoderConfig, 'seed'>> {
  const first = state.get(`${prefix}dec.0.up_sample.weight`);
  if (!first) {
    throw new Error(`lightDecoderConfigFromState: no '${prefix}dec.0.up_sample.weight' in the state dict: not a SparK decoder`);
  }
  if (first.shape.length !== 4) {
    throw new Error(
      `lightDecoderConfigFromState: '${prefix}dec.0.up_sample.weight' must have shape (width, width, 4, 4), got [${first.shape.join(', ')}]`,
    );
  }
  let blockCount = 0;
  while (state.has(`${prefix}dec.${blockCount}.up_sample.weight`)) blockCount++;
  return { upSampleRatio: 2 ** blockCount, width: first.shape[0] };
}
