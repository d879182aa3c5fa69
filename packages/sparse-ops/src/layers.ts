import * as tf from '@tensorflow/tfjs-core';
import type { ActiveMask } from './active-sites';
import { sparseConv2d } from './conv';
import { Module, type Initializer } from './module';
import { uniformFanIn } from './random';
import { sparseBatchNorm, sparseBatchNormTraining, sparseLayerNorm } from './norm';
import type { Padding2d } from './padding';
import { sparseAvgPool2d, sparseMaxPool2d, type SparseAvgPool2dOptions, type SparsePool2dOptions } from './pool';
import { rowAvgPool2d, rowBatchNorm, rowConv2d, rowLayerNorm, rowMaxPool2d, rowMoments } from './rows/ops';
import type { RowSites } from './rows/row-sites';

/** Where rows come from, for a layer's `applyRows`: the row view of the mask and the map's `[H, W]`. */
export interface RowApplyOptions {
  sites: RowSites;
  /** `[H, W]` of the map the rows are the active sites of. */
  inputSize: [number, number];
  /** Convolutions: false skips the gradient of constant rows such as the input image (see `rowConv2d`). */
  inputGradient?: boolean;
}

/** The mask a layer call sees; omitted or undefined: dense. */
export interface ApplyOptions {
  /** `[B, h, w, 1]` (or ActiveSites), 1 = active. */
  active?: ActiveMask;
}

export interface SparseConv2dConfig {
  inChannels: number;
  outChannels: number;
  kernelSize: number | [number, number];
  strides?: number | [number, number];
  pad?: Padding2d;
  dilations?: number | [number, number];
  groups?: number;
  /** Whether the layer has a bias. Default true, as in PyTorch. */
  bias?: boolean;
  /** Initial filter `[kH, kW, inC / groups, outC]`; default PyTorch's U(±1/sqrt(fanIn)). */
  filterInit?: Initializer;
  biasInit?: Initializer;
}

/**
 * A masked convolution layer holding its filter and bias (parameters `weight`, `bias`, as PyTorch names
 * them). Without a mask it is the ordinary convolution.
 *
 * @example
 * const conv = new SparseConv2d({ inChannels: 3, outChannels: 16, kernelSize: 7, strides: 2, pad: 3, bias: false });
 * const y = conv.apply(x, { active });
 * conv.dispose();
 */
export class SparseConv2d extends Module {
  readonly filter: tf.Variable;
  readonly bias?: tf.Variable;

  constructor(readonly config: SparseConv2dConfig) {
    super();
    const { inChannels, outChannels, kernelSize, groups = 1, bias = true } = config;
    const [kernelH, kernelW] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    const fanIn = (inChannels / groups) * kernelH * kernelW;
    const filterInit = config.filterInit ?? uniformFanIn(fanIn);
    this.filter = this.registerParameter('weight', filterInit([kernelH, kernelW, inChannels / groups, outChannels]), 'conv2d');
    if (bias) this.bias = this.registerParameter('bias', (config.biasInit ?? uniformFanIn(fanIn))([outChannels]));
  }

  /** `x: [B, H, W, inC]` → `[B, H', W', outC]`, zero at inactive sites when a mask is given. */
  apply(x: tf.Tensor4D, { active }: ApplyOptions = {}): tf.Tensor4D {
    const { strides, pad, dilations, groups } = this.config;
    return sparseConv2d(x, this.filter as tf.Tensor4D, {
      strides,
      pad,
      dilations,
      groups,
      bias: this.bias as tf.Tensor1D | undefined,
      active,
    });
  }

  /** The same layer on rows (see `rowConv2d`): `[N_in, inC]` at `inputSize` → `[N_out, outC]`. */
  applyRows(rows: tf.Tensor2D, { sites, inputSize, inputGradient }: RowApplyOptions): tf.Tensor2D {
    const { strides, pad, dilations, groups } = this.config;
    return rowConv2d(rows, this.filter as tf.Tensor4D, {
      sites,
      inputSize,
      inputGradient,
      strides,
      pad,
      dilations,
      groups,
      bias: this.bias as tf.Tensor1D | undefined,
    });
  }
}

export interface SparseBatchNormConfig {
  channels: number;
  /** Default 1e-5. */
  epsilon?: number;
  /** Weight of the new batch in the running statistics. Default 0.1 (PyTorch's). */
  momentum?: number;
}

/**
 * Batch norm over the active sites, holding `weight`, `bias` and the buffers `running_mean`,
 * `running_var`, `num_batches_tracked` (PyTorch's names). In training mode it normalises with the
 * active-site statistics of the batch (biased variance) and updates the running statistics with the
 * unbiased variance, as PyTorch's BatchNorm does over the gathered active sites; in evaluation mode it
 * uses the running statistics. Output is zero at inactive sites.
 *
 * @example
 * const bn = new SparseBatchNorm2d({ channels: 64 });
 * const y = bn.apply(x, { active }); // training: updates running_mean / running_var
 * bn.eval();
 */
export class SparseBatchNorm2d extends Module {
  readonly gamma: tf.Variable;
  readonly beta: tf.Variable;
  readonly runningMean: tf.Variable;
  readonly runningVar: tf.Variable;
  readonly numBatchesTracked: tf.Variable;
  readonly epsilon: number;
  readonly momentum: number;

  constructor({ channels, epsilon = 1e-5, momentum = 0.1 }: SparseBatchNormConfig) {
    super();
    this.epsilon = epsilon;
    this.momentum = momentum;
    this.gamma = this.registerParameter('weight', tf.ones([channels]));
    this.beta = this.registerParameter('bias', tf.zeros([channels]));
    this.runningMean = this.registerBuffer('running_mean', tf.zeros([channels]));
    this.runningVar = this.registerBuffer('running_var', tf.ones([channels]));
    this.numBatchesTracked = this.registerBuffer('num_batches_tracked', tf.scalar(0));
  }

  /** `x: [B, H, W, C]` → `[B, H, W, C]`. */
  apply(x: tf.Tensor4D, { active }: ApplyOptions = {}): tf.Tensor4D {
    const options = { gamma: this.gamma as tf.Tensor1D, beta: this.beta as tf.Tensor1D, epsilon: this.epsilon, active };
    if (!this.training) {
      return sparseBatchNorm(x, options, this.runningMean as tf.Tensor1D, this.runningVar as tf.Tensor1D);
    }
    return tf.tidy(() => {
      // One op for statistics and normalisation (its gradient in closed form); the statistics it returns
      // feed the running averages only.
      const { output, statistics } = sparseBatchNormTraining(x, options);
      this.updateRunningStatistics(statistics.mean, statistics.variance, statistics.count);
      return output;
    });
  }

  /**
   * The same layer on rows `[N, C]` (see `rowBatchNorm`): the rows are the active sites, so training
   * normalises with their statistics and updates the running ones exactly as {@link apply} does.
   */
  applyRows(rows: tf.Tensor2D): tf.Tensor2D {
    const options = { gamma: this.gamma as tf.Tensor1D, beta: this.beta as tf.Tensor1D, epsilon: this.epsilon };
    if (!this.training) return rowBatchNorm(rows, options, this.runningMean as tf.Tensor1D, this.runningVar as tf.Tensor1D);
    return tf.tidy(() => {
      // The running statistics take the batch's; the normalisation computes (and differentiates) its own.
      const { mean, variance } = rowMoments(rows);
      this.updateRunningStatistics(mean, variance, tf.scalar(rows.shape[0]));
      return rowBatchNorm(rows, options);
    });
  }

  private updateRunningStatistics(mean: tf.Tensor1D, variance: tf.Tensor1D, count: tf.Scalar): void {
    // The running variance is unbiased (n / (n - 1)), as torch.nn.BatchNorm keeps it, while the batch is
    // normalised with the biased one. These values never reach the loss, so no gradient flows into them.
    const momentum = this.momentum;
    const [newMean, newVar] = tf.tidy(() => {
      const unbiased = tf.mul(variance, tf.div(count, tf.maximum(tf.sub(count, 1), 1)));
      return [
        tf.add(tf.mul(this.runningMean, 1 - momentum), tf.mul(mean, momentum)),
        tf.add(tf.mul(this.runningVar, 1 - momentum), tf.mul(unbiased, momentum)),
      ];
    });
    this.runningMean.assign(newMean);
    this.runningVar.assign(newVar);
    newMean.dispose();
    newVar.dispose();
    const tracked = tf.add(this.numBatchesTracked, 1);
    this.numBatchesTracked.assign(tracked);
    tracked.dispose();
  }
}

export interface SparseLayerNormConfig {
  channels: number;
  /** Default 1e-6, ConvNeXt's. */
  epsilon?: number;
}

/**
 * Channels-last layer norm at active sites (parameters `weight`, `bias`); zero at inactive sites.
 *
 * @example
 * const ln = new SparseLayerNorm({ channels: 96 });
 * const y = ln.apply(x, { active });
 */
export class SparseLayerNorm extends Module {
  readonly gamma: tf.Variable;
  readonly beta: tf.Variable;
  readonly epsilon: number;

  constructor({ channels, epsilon = 1e-6 }: SparseLayerNormConfig) {
    super();
    this.epsilon = epsilon;
    this.gamma = this.registerParameter('weight', tf.ones([channels]));
    this.beta = this.registerParameter('bias', tf.zeros([channels]));
  }

  /** `x: [B, H, W, C]` → `[B, H, W, C]`. */
  apply(x: tf.Tensor4D, { active }: ApplyOptions = {}): tf.Tensor4D {
    return sparseLayerNorm(x, { gamma: this.gamma as tf.Tensor1D, beta: this.beta as tf.Tensor1D, epsilon: this.epsilon, active });
  }

  /** The same layer on rows `[N, C]` (see `rowLayerNorm`). */
  applyRows(rows: tf.Tensor2D): tf.Tensor2D {
    return rowLayerNorm(rows, { gamma: this.gamma as tf.Tensor1D, beta: this.beta as tf.Tensor1D, epsilon: this.epsilon });
  }
}

/**
 * Masked max pooling as a layer (no weights).
 *
 * @example
 * const pool = new SparseMaxPool2d({ filterSize: 3, strides: 2, pad: 1 });
 * const y = pool.apply(x, { active });
 */
export class SparseMaxPool2d extends Module {
  constructor(readonly config: Omit<SparsePool2dOptions, 'active'>) {
    super();
  }

  apply(x: tf.Tensor4D, { active }: ApplyOptions = {}): tf.Tensor4D {
    return sparseMaxPool2d(x, { ...this.config, active });
  }

  /** The same layer on rows (see `rowMaxPool2d`). */
  applyRows(rows: tf.Tensor2D, { sites, inputSize }: RowApplyOptions): tf.Tensor2D {
    return rowMaxPool2d(rows, { ...this.config, sites, inputSize });
  }
}

/**
 * Masked average pooling as a layer (no weights).
 *
 * @example
 * const pool = new SparseAvgPool2d({ filterSize: 2 });
 * const y = pool.apply(x, { active });
 */
export class SparseAvgPool2d extends Module {
  constructor(readonly config: Omit<SparseAvgPool2dOptions, 'active'>) {
    super();
  }

  apply(x: tf.Tensor4D, { active }: ApplyOptions = {}): tf.Tensor4D {
    return sparseAvgPool2d(x, { ...this.config, active });
  }

  /** The same layer on rows (see `rowAvgPool2d`). */
  applyRows(rows: tf.Tensor2D, { sites, inputSize }: RowApplyOptions): tf.Tensor2D {
    return rowAvgPool2d(rows, { ...this.config, sites, inputSize });
  }
}
