import * as tf from '@tensorflow/tfjs-core';
import {
  BACKBONE_NAMES,
  backboneConfigFromState,
  checkBackboneInput,
  createBackbone,
  createBackboneFromConfig,
  ConvNeXt,
  ResNet,
  type Backbone,
  type BackboneOptions,
} from '@sparkmim/backbones';
import {
  createDensifyLayers,
  densifyConfigFromState,
  LightDecoder,
  lightDecoderConfigFromState,
  type DensifyLayers,
  type DensifyNormKind,
} from '@sparkmim/decoder';
import { reconstructionComposite, sparkLoss } from '@sparkmim/losses';
import { applyMask, randomPatchMask, seededRandom } from '@sparkmim/masking';
import { ActiveSites, Module, RowSites, torchState, type LoadStateReport, type NamedVariable } from '@sparkmim/sparse-ops';
import { loadSparkState, stateFromSafetensors, stateToSafetensors, stripStatePrefix, type ReadStateOptions, type TorchStateDict } from './state';
import { variableGradsReleasing } from '../train/releasing-grads';

/**
 * How the sparse encoder computes: `'dense'` runs masked ops over whole maps (zeros at masked sites, every
 * site computed); `'rows'` keeps only the visible sites, as rows `[N, C]` (`@sparkmim/sparse-ops`' row
 * path, ResNet and ConvNeXt backbones): the same numbers without the work on masked sites; `'auto'` picks rows
 * for a ResNet or a ConvNeXt at least {@link ROW_PATH_MIN_CHANNELS} channels wide on a backend in
 * {@link ROW_PATH_BACKENDS}, dense otherwise.
 */
export type SparsePath = 'auto' | 'rows' | 'dense';

export const SPARSE_PATHS: readonly SparsePath[] = ['auto', 'rows', 'dense'];

/**
 * The backends on which `sparsePath: 'auto'` runs a ResNet encoder on rows, from
 * `packages/sparse-ops/bench/rows.bench.ts` (ResNet-18 encoder, forward + backward, mask ratio 0.6): wasm,
 * where rows ran ~2.4x faster than masked-dense at 224, and cpu. Not webgpu: not measured yet (and the row
 * path reads the mask synchronously, which WebGPU in Node cannot).
 *
 * The same backends for a ConvNeXt encoder (`rows.bench.ts` scenario `convnext`: ConvNeXt-T, forward +
 * backward, 128x128, batch 2, mask ratio 0.6, 2026-11-30, load ~2.5, args `wasm 2 128 0 0 3 stock convnext`):
 * on wasm rows ran 6.87x faster than masked-dense (1036 against 7359 ms), most of that the masked path's
 * Linear, whose tf.matMul gradient wasm ran slowly; since @sparkmim/wasm-kernels' BatchMatMul transposes
 * operands first, 1.84x (837 against 1572 ms, load 1.3; pairs 1.64-1.88); on cpu 1.48x (batch 1).
 * Whole SparkModel steps on wasm (ConvNeXt-T, decoder 128, 128x128, batch 2, after a warm-up): 1.5-2.6 s on
 * rows against 10.3-10.7 s masked-dense, the same losses.
 */
export const ROW_PATH_BACKENDS: readonly string[] = ['wasm', 'cpu'];

/**
 * The fewest channels of the first stage (`featureChannels[0]`) for which `sparsePath: 'auto'` runs rows:
 * on narrow encoders the row path's fixed costs (tables built per mask, more, smaller ops) outweigh the
 * work it saves. Measured on wasm, SparkModel forward + backward, interleaved pairs: the quickstart's
 * ResNet (8 to 64 channels, 96x96, batch 8) ran 0.88x as fast on rows (CPU time); ResNet-18 (64 to 512,
 * 224x224, batch 2, decoder 128) 1.92x. ConvNeXts use the same threshold (ConvNeXt-T's 96 channels pass;
 * no narrow ConvNeXt was measured).
 */
export const ROW_PATH_MIN_CHANNELS = 64;

/** How a new {@link SparkModel} is put together. */
export interface SparkModelConfig {
  /** The encoder: a ResNet, a ConvNeXt, or any convnet implementing the Backbone contract. Owned by the model. */
  backbone: Backbone;
  /** Decoder channels at the smallest map, halved per block. Default 768, SparK's. */
  decoderWidth?: number;
  /** Densify norm. Default: 'ln' for a ConvNeXt, 'bn' otherwise, as SparK's pre-training script picks. */
  densifyNorm?: DensifyNormKind;
  /** Fraction of patches hidden by a random mask. Default 0.6. */
  maskRatio?: number;
  /**
   * Sparse mode (default true): the encoder runs its masked ops, so masked patches never leak into visible
   * ones. Dense mode runs the same weights with ordinary ops (a plain convnet over the masked image); with
   * every patch visible the two agree.
   */
  sparse?: boolean;
  /**
   * How sparse mode runs the encoder (see {@link SparsePath}). Default 'auto'. 'rows' with a backbone that
   * has no row path (anything but a ResNet or a ConvNeXt), or with `sparse: false`, is an error.
   */
  sparsePath?: SparsePath;
  /** Seeds the decoder and densify initialisation and the model's stream of random masks. */
  seed?: number;
}

/** Options of {@link SparkModel.fromState} and {@link SparkModel.fromSafetensors}. */
export interface SparkModelLoadOptions {
  /** Default 0.6 (a state dict does not hold it). */
  maskRatio?: number;
  /** Default true: missing, unexpected and mis-shaped keys are all errors, listed together. */
  strict?: boolean;
  /** See {@link SparkModelConfig.sparse}. */
  sparse?: boolean;
  /** See {@link SparkModelConfig.sparsePath}. */
  sparsePath?: SparsePath;
  /** Seeds the model's stream of random masks. */
  seed?: number;
  /** Keep only keys that start with this and remove it (e.g. `param.` for the golden files). */
  stripPrefix?: string;
}

/** Options of a forward pass. */
export interface SparkForwardOptions {
  /**
   * `[B, H/32, W/32, 1]` float mask over the patch grid, 1 = visible (kept), 0 = masked. Omitted: a random
   * mask hiding `maskRatio` of the patches of each sample (exact count, as SparK's `mask`). Not disposed.
   */
  active?: tf.Tensor4D;
  /** Seed for the random mask of this call. */
  seed?: number;
  /**
   * Source of uniform numbers in [0, 1) for this call's draws: the random mask (when `active` is not given),
   * then the encoder's drop path in training mode (one per sample and block with a rate above 0). Default:
   * the model's own mask stream and the backbone's own drop-path stream.
   */
  random?: () => number;
}

/**
 * Everything one forward pass computed; every tensor is new and owned by the caller (`tf.dispose(output)`).
 * A type rather than an interface, so that it is a `tf.TensorContainer`.
 */
export type SparkForwardOutput = {
  /** Scalar reconstruction loss over the masked patches. */
  loss: tf.Scalar;
  /** `[B, h, w, 1]` the mask used (a copy of the given one, or the random one drawn). */
  active: tf.Tensor4D;
  /** The encoder's feature maps, largest (stride 4) first: official `enc.0` … `enc.3`, zero at masked sites. */
  features: tf.Tensor4D[];
  /** The densified decoder inputs, smallest map first: official `dec_in.0` … `dec_in.3`. */
  toDecoder: tf.Tensor4D[];
  /** `[B, H, W, 3]` raw decoder output, in per-patch normalised units (official `rec`). */
  reconstruction: tf.Tensor4D;
};

/** SparK's `forward(vis=True)` pictures, `[B, H, W, 3]` each, owned by the caller (`tf.dispose(output)`). */
export type SparkVisualization = {
  /** `[B, h, w, 1]` the mask used. */
  active: tf.Tensor4D;
  /** The images (official `vis.inp`). */
  input: tf.Tensor4D;
  /** The images with masked patches zeroed (official `vis.masked`). */
  masked: tf.Tensor4D;
  /** The reconstruction de-normalised to pixels with each patch's mean and std. */
  reconstruction: tf.Tensor4D;
  /** Visible patches from the images, masked ones from the reconstruction (official `vis.rec_or_inp`). */
  recOrInput: tf.Tensor4D;
};

/** The official `SparseEncoder` wrapper: it only nests the convnet under `sp_cnn`. */
class SparseEncoder extends Module {
  constructor(readonly backbone: Backbone) {
    super();
    this.registerModule('sp_cnn', backbone);
  }
}

/**
 * SparK: sparse masked modelling for convnets ("Designing BERT for Convolutional Networks"). A sparse
 * encoder sees only the visible patches of a masked image; densify layers fill the masked positions of its
 * four feature maps with mask tokens; a light UNet decoder reconstructs the image; the loss is the
 * per-patch normalised L2 error over the masked patches.
 *
 * State entries carry the official names (`sparse_encoder.sp_cnn.*`, `dense_decoder.*`, `densify_norms.*`,
 * `densify_projs.*`, `mask_tokens.*`) in PyTorch's `named_parameters()` order, so official checkpoints load
 * and save key by key. The mask is passed to every forward call, never kept: two models can run at once.
 *
 * @example
 * const model = await SparkModel.fromSafetensors(bytes, { maskRatio: 0.6 });
 * const loss = model.forward(images, { active }); // images [B, H, W, 3], H and W multiples of 32
 * const { grads } = variableGradsReleasing(() => model.forward(images, { active }), model.namedParameters().map((p) => p.variable));
 * model.dispose();
 */
export class SparkModel extends Module {
  readonly backbone: Backbone;
  readonly decoder: LightDecoder;
  readonly densify: DensifyLayers;
  readonly maskRatio: number;
  readonly sparse: boolean;
  readonly sparsePath: SparsePath;
  readonly densifyNorm: DensifyNormKind;
  readonly downsampleRatio: number;
  private readonly maskRandom: () => number;
  /**
   * The row view of the last forward pass's mask, kept until the next pass or {@link dispose}: the row ops'
   * gradients read its index tensors, and a caller may differentiate `forward` after it returns.
   */
  private rowSites?: RowSites;

  constructor({ backbone, decoderWidth = 768, densifyNorm, maskRatio = 0.6, sparse = true, sparsePath = 'auto', seed }: SparkModelConfig) {
    super();
    if (!(maskRatio > 0 && maskRatio < 1)) throw new Error(`SparkModel: maskRatio must be in (0, 1), got ${maskRatio}`);
    if (!SPARSE_PATHS.includes(sparsePath)) {
      throw new Error(`SparkModel: sparsePath must be one of ${SPARSE_PATHS.join(', ')}, got '${sparsePath}'`);
    }
    if (sparsePath === 'rows' && !(backbone instanceof ResNet || backbone instanceof ConvNeXt)) {
      throw new Error(
        `SparkModel: sparsePath 'rows' needs a backbone with a row path (a ResNet or a ConvNeXt), got a ${backbone.kind} backbone; use 'auto' or 'dense'`,
      );
    }
    if (sparsePath === 'rows' && !sparse) throw new Error(`SparkModel: sparsePath 'rows' needs sparse mode, got sparse: false`);
    if (backbone.featureChannels.length !== 4) {
      // The decoder has log2(downsampleRatio) blocks and SparK feeds one map to each of the first ones;
      // the official code is written for 4 maps.
      throw new Error(`SparkModel: the backbone must return 4 feature maps, its featureChannels are [${backbone.featureChannels.join(', ')}]`);
    }
    this.backbone = backbone;
    this.maskRatio = maskRatio;
    this.sparse = sparse;
    this.sparsePath = sparsePath;
    this.downsampleRatio = backbone.downsampleRatio;
    this.densifyNorm = densifyNorm ?? (backbone.kind === 'convnext' ? 'ln' : 'bn');
    this.maskRandom = seed === undefined ? Math.random : seededRandom(seed);
    // Registration order = the official named_parameters() order: sparse_encoder, dense_decoder, densify_norms,
    // densify_projs, mask_tokens.
    // Built before anything is registered: if the decoder or densify layers reject their settings, what
    // was made is freed here and the caller's backbone is left to the caller.
    const decoder = new LightDecoder({ upSampleRatio: backbone.downsampleRatio, width: decoderWidth, seed });
    try {
      this.densify = createDensifyLayers({
        featureChannels: backbone.featureChannels,
        decoderWidth,
        norm: this.densifyNorm,
        seed: seed === undefined ? undefined : seed + 1,
      });
    } catch (error) {
      decoder.dispose();
      throw error;
    }
    this.registerModule('sparse_encoder', new SparseEncoder(backbone));
    this.decoder = this.registerModule('dense_decoder', decoder);
    this.registerModule('densify_norms', this.densify.norms);
    this.registerModule('densify_projs', this.densify.projs);
    this.registerModule('mask_tokens', this.densify.maskTokens);
  }

  /**
   * A new model around a named backbone: 'resnet18' … 'resnet200', 'convnext_tiny' … 'convnext_large'.
   * `backbone` takes the options of {@link createBackbone}: drop path, widths, and `depths` for a model
   * with fewer (or more) blocks per stage than the named one.
   *
   * @example
   * const model = SparkModel.create('resnet50', { backbone: { dropPathRate: 0.05 }, seed: 0 });
   * const small = SparkModel.create('resnet18', { backbone: { depths: [1, 1, 1, 1], channels: [16, 32, 64, 128] }, decoderWidth: 128 });
   */
  static create(name: string, options: Omit<SparkModelConfig, 'backbone'> & { backbone?: BackboneOptions } = {}): SparkModel {
    if (!(BACKBONE_NAMES as readonly string[]).includes(name)) {
      throw new Error(`SparkModel.create: unknown model '${name}': expected one of ${BACKBONE_NAMES.join(', ')}`);
    }
    const { backbone: backboneOptions, ...rest } = options;
    const backbone = createBackbone(name, { seed: rest.seed, ...backboneOptions });
    try {
      return new SparkModel({ ...rest, backbone });
    } catch (error) {
      backbone.dispose();
      throw error;
    }
  }

  /**
   * Builds the architecture a SparK state dict implies (backbone family, depths and widths, decoder width
   * and blocks, densify norm; nothing depends on the input size) and loads it. The state is in PyTorch's
   * names and layouts, e.g. read by {@link stateFromSafetensors}.
   *
   * @example
   * const model = await SparkModel.fromState(state, { maskRatio: 0.6 });
   */
  static async fromState(
    state: ReadonlyMap<string, { shape: number[]; data: Float32Array }>,
    options: SparkModelLoadOptions = {},
  ): Promise<SparkModel> {
    const { maskRatio, strict = true, sparse, sparsePath, seed, stripPrefix } = options;
    const caller = 'SparkModel.fromState';
    const stripped = stripStatePrefix(state, stripPrefix);
    if (stripped.size === 0) {
      throw new Error(`${caller}: the state dict is empty${stripPrefix ? ` under the prefix '${stripPrefix}'` : ''}`);
    }
    const architecture = sparkArchitectureFromState(stripped, caller);
    const backbone = createBackboneFromConfig({ ...architecture.backbone, seed });
    if (backbone.featureChannels.join() !== architecture.featureChannels.join()) {
      backbone.dispose();
      throw new Error(
        `${caller}: the state dict is inconsistent: the encoder's feature channels [${backbone.featureChannels.join(', ')}] ` +
          `differ from the mask tokens' [${architecture.featureChannels.join(', ')}]`,
      );
    }
    const model = new SparkModel({
      backbone,
      decoderWidth: architecture.decoderWidth,
      densifyNorm: architecture.densifyNorm,
      maskRatio,
      sparse,
      sparsePath,
      seed,
    });
    try {
      model.loadState(stripped, { strict });
    } catch (error) {
      model.dispose();
      throw error;
    }
    return model;
  }

  /**
   * {@link SparkModel.fromState} from the bytes of a `.safetensors` file (a truncated file is a clear error).
   *
   * @example
   * const model = await SparkModel.fromSafetensors(new Uint8Array(await readFile('spark.safetensors')));
   */
  static async fromSafetensors(bytes: Uint8Array, options: SparkModelLoadOptions & Pick<ReadStateOptions, 'source'> = {}): Promise<SparkModel> {
    const { source, stripPrefix, ...rest } = options;
    return SparkModel.fromState(stateFromSafetensors(bytes, { stripPrefix, source }), rest);
  }

  /**
   * Copies a state dict (official names, PyTorch layouts) into this model. Strict by default: missing,
   * unexpected and mis-shaped keys are listed in one error, and nothing is changed then. SparK's deprecated
   * buffers (`imn_m`, `imn_s`, `norm_black`) are skipped.
   *
   * @example
   * model.loadState(stateFromSafetensors(bytes));
   */
  loadState(state: ReadonlyMap<string, { shape: number[]; data: Float32Array }>, { strict = true }: { strict?: boolean } = {}): LoadStateReport {
    return loadSparkState(this, state, { strict, caller: 'SparkModel.loadState' });
  }

  /**
   * The model's parameters and buffers as a PyTorch state dict (official names and layouts, float32).
   *
   * @example
   * const state = await model.stateDict();
   */
  async stateDict(): Promise<TorchStateDict> {
    return torchState(this);
  }

  /**
   * The state dict as the bytes of a `.safetensors` file (every tensor F32, PyTorch layouts).
   *
   * @example
   * await writeFileAtomic('spark.safetensors', await model.toSafetensors({ epoch: '10' }));
   */
  async toSafetensors(metadata?: Record<string, string>): Promise<Uint8Array> {
    return stateToSafetensors(await this.stateDict(), metadata);
  }

  /**
   * The trainable parameters by official name, in PyTorch's `named_parameters()` order.
   *
   * @example
   * const lamb = new Lamb(paramGroupsFromVariables(model.parameters()));
   */
  parameters(): NamedVariable[] {
    return this.namedParameters();
  }

  /**
   * The training loss on `images`: mask (given or random), sparse encoding, densify, decoding, and the
   * per-patch normalised L2 error over the masked patches. Synchronous, so it works inside
   * `tf.variableGrads` / `optimizer.minimize`. In training mode batch norms update their running statistics.
   *
   * @param images `[B, H, W, 3]`, H and W multiples of 32 (`downsampleRatio`)
   * @returns a scalar the caller owns
   *
   * @example
   * const loss = model.forward(images, { active });
   */
  forward(images: tf.Tensor4D, options: SparkForwardOptions = {}): tf.Scalar {
    return tf.tidy(() => this.run(images, options, 'SparkModel.forward').loss);
  }

  /**
   * The forward pass with every intermediate (mask, encoder features, decoder inputs, reconstruction), for
   * inspection and comparison with the official code.
   *
   * @param images `[B, H, W, 3]`, H and W multiples of 32
   *
   * @example
   * const output = model.forwardWithIntermediates(images, { active });
   * output.features[3]; // [B, H/32, W/32, C3]
   * tf.dispose(output);
   */
  forwardWithIntermediates(images: tf.Tensor4D, options: SparkForwardOptions = {}): SparkForwardOutput {
    return tf.tidy(() => {
      const output = this.run(images, options, 'SparkModel.forwardWithIntermediates');
      // A given mask stays the caller's; the output owns its own copy.
      return options.active ? { ...output, active: tf.clone(output.active) } : output;
    });
  }

  /**
   * SparK's `forward(vis=True)`: the input, the masked input, and the input with masked patches replaced by
   * the reconstruction de-normalised to pixels. Runs a full forward pass (in training mode it updates
   * running statistics, as the official code does).
   *
   * @param images `[B, H, W, 3]`, H and W multiples of 32
   *
   * @example
   * const vis = model.visualize(images, { active });
   * // draw vis.recOrInput …
   * tf.dispose(vis);
   */
  visualize(images: tf.Tensor4D, options: SparkForwardOptions = {}): SparkVisualization {
    return tf.tidy(() => this.visualizeOutput(images, this.run(images, options, 'SparkModel.visualize')));
  }

  /**
   * The pictures of {@link SparkModel.visualize} from a forward pass already made (no second pass).
   *
   * @param images `[B, H, W, 3]`, the images of that pass
   * @param output what {@link SparkModel.forwardWithIntermediates} returned for them; not disposed
   *
   * @example
   * const output = model.forwardWithIntermediates(images);
   * const vis = model.visualizeOutput(images, output);
   * tf.dispose([output, vis]);
   */
  visualizeOutput(images: tf.Tensor4D, output: Pick<SparkForwardOutput, 'reconstruction' | 'active'>): SparkVisualization {
    return tf.tidy(() => {
      const pictures = reconstructionComposite(output.reconstruction, images, output.active);
      const visualization: SparkVisualization = { ...pictures, active: tf.clone(output.active) };
      return visualization;
    });
  }

  /**
   * Loss and gradients of every trainable parameter, by official name (what the optimisers take).
   *
   * @example
   * const { loss, grads } = model.lossAndGradients(images, { active });
   * await lamb.step(grads);
   * tf.dispose([loss, ...grads.values()]);
   */
  lossAndGradients(images: tf.Tensor4D, options: SparkForwardOptions = {}): { loss: tf.Scalar; grads: Map<string, tf.Tensor> } {
    const parameters = this.namedParameters();
    // One mask for the whole call, drawn outside the tape.
    const active = options.active ?? this.drawMask(images, options, 'SparkModel.lossAndGradients');
    try {
      const { value, grads } = variableGradsReleasing(
        () => this.forward(images, { ...options, active }),
        parameters.map((parameter) => parameter.variable),
      );
      const named = new Map<string, tf.Tensor>();
      for (const { name, variable } of parameters) {
        // A parameter the loss does not reach (none in SparK) gets a zero gradient, as PyTorch reports it.
        named.set(name, grads[variable.name] ?? tf.zerosLike(variable));
      }
      return { loss: value, grads: named };
    } finally {
      if (active !== options.active) active.dispose();
    }
  }

  /**
   * Whether the next forward pass runs the encoder on rows: `sparsePath` 'rows', or 'auto' with a ResNet
   * or a ConvNeXt of at least {@link ROW_PATH_MIN_CHANNELS} channels in sparse mode on one of {@link ROW_PATH_BACKENDS}
   * (the backend current now).
   */
  usesRowPath(): boolean {
    if (this.sparsePath !== 'auto') return this.sparsePath === 'rows';
    return (
      this.sparse &&
      (this.backbone instanceof ResNet || this.backbone instanceof ConvNeXt) &&
      this.backbone.featureChannels[0] >= ROW_PATH_MIN_CHANNELS &&
      ROW_PATH_BACKENDS.includes(tf.getBackend())
    );
  }

  override dispose(): void {
    this.rowSites?.dispose();
    this.rowSites = undefined;
    super.dispose();
  }

  private drawMask(images: tf.Tensor4D, { seed, random }: SparkForwardOptions, caller: string): tf.Tensor4D {
    checkBackboneInput(images, this.downsampleRatio, caller);
    const [batch, height, width] = images.shape;
    const grid: [number, number] = [height / this.downsampleRatio, width / this.downsampleRatio];
    return randomPatchMask(batch, grid, this.maskRatio, seed === undefined ? { random: random ?? this.maskRandom } : { seed });
  }

  /** The forward pass, inside the caller's tidy; returns every tensor it made that a caller may want. */
  private run(images: tf.Tensor4D, options: SparkForwardOptions, caller: string): SparkForwardOutput {
    checkBackboneInput(images, this.downsampleRatio, caller);
    const [batch, height, width] = images.shape;
    const expectedMask = [batch, height / this.downsampleRatio, width / this.downsampleRatio, 1];
    const active = options.active ?? this.drawMask(images, options, caller);
    if (active.rank !== 4 || active.shape.some((size, axis) => size !== expectedMask[axis])) {
      throw new Error(
        `${caller}: active mask [${active.shape.join(', ')}] does not fit images [${images.shape.join(', ')}]: expected [${expectedMask.join(', ')}] (one value per ${this.downsampleRatio}x${this.downsampleRatio} patch, 1 = visible)`,
      );
    }
    // One ActiveSites per call caches the mask at every resolution for the encoder and densify layers.
    const sites = new ActiveSites(active);
    try {
      const masked = applyMask(images, active);
      // Drop path draws from the caller's stream when given (the training run's), else the backbone's own.
      const encoderOptions = { active: this.sparse ? sites : undefined, random: options.random, rows: this.rowSitesFor(active) };
      const features = this.backbone.forward(masked, encoderOptions);
      // The decoder goes from the smallest map up; the encoder returns the largest first.
      const toDecoder = this.densify.apply([...features].reverse(), sites);
      const reconstruction = this.decoder.apply(toDecoder);
      const loss = sparkLoss(reconstruction, images, active);
      return { loss, active, features, toDecoder, reconstruction };
    } finally {
      sites.dispose();
    }
  }

  /** The row view of `active` when this pass runs on rows (replacing the previous pass's), else undefined. */
  private rowSitesFor(active: tf.Tensor4D): RowSites | undefined {
    this.rowSites?.dispose();
    this.rowSites = undefined;
    if (!this.usesRowPath()) return undefined;
    const [batch, height, width] = active.shape;
    // Synchronous, as forward is (it runs inside tf.variableGrads); the mask is a few hundred values.
    let values: ArrayLike<number>;
    try {
      values = active.dataSync();
    } catch (error) {
      throw new Error(
        `SparkModel: the row path reads the mask synchronously, which the '${tf.getBackend()}' backend cannot (${(error as Error).message}); use sparsePath 'dense' or 'auto' there`,
      );
    }
    this.rowSites = RowSites.fromArray(values, [batch, height, width]);
    return this.rowSites;
  }
}

/** The architecture a SparK state dict implies (see {@link SparkModel.fromState}). */
export interface SparkArchitecture {
  backbone: ReturnType<typeof backboneConfigFromState>;
  /** Encoder channels per feature map, largest map first, as the mask tokens give them. */
  featureChannels: number[];
  decoderWidth: number;
  densifyNorm: DensifyNormKind;
}

/**
 * Reads the architecture off a SparK state dict (official names): the backbone from
 * `sparse_encoder.sp_cnn.*`, the decoder from `dense_decoder.dec.*` and the densify layers from
 * `densify_norms.0` / `densify_projs.0` / `mask_tokens.*`, checking that the decoder and densify layers agree.
 *
 * @example
 * const { backbone, decoderWidth, densifyNorm } = sparkArchitectureFromState(state);
 */
export function sparkArchitectureFromState(
  state: ReadonlyMap<string, { readonly shape: readonly number[] }>,
  caller = 'sparkArchitectureFromState',
): SparkArchitecture {
  const wrap = (what: string, read: () => void) => {
    try {
      read();
    } catch (error) {
      throw new Error(`${caller}: cannot read the ${what} from the state dict: ${(error as Error).message}`);
    }
  };
  let backbone!: SparkArchitecture['backbone'];
  let decoder!: ReturnType<typeof lightDecoderConfigFromState>;
  let densify!: ReturnType<typeof densifyConfigFromState>;
  wrap('encoder', () => (backbone = backboneConfigFromState(state, { prefix: 'sparse_encoder.sp_cnn.' })));
  wrap('decoder', () => (decoder = lightDecoderConfigFromState(state, 'dense_decoder.')));
  wrap('densify layers', () => (densify = densifyConfigFromState(state)));
  const problems: string[] = [];
  if (densify.decoderWidth !== decoder.width) {
    problems.push(`densify_projs.0 projects to ${densify.decoderWidth} channels but the decoder's width is ${decoder.width}`);
  }
  if (decoder.upSampleRatio !== 32) {
    problems.push(
      `the decoder upsamples by ${decoder.upSampleRatio} (from its ${Math.log2(decoder.upSampleRatio)} blocks), the encoder downsamples by 32`,
    );
  }
  if (problems.length) throw new Error(`${caller}: the state dict is inconsistent: ${problems.join('; ')}`);
  return { backbone, featureChannels: [...densify.featureChannels], decoderWidth: decoder.width, densifyNorm: densify.norm };
}
