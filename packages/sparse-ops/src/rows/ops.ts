import * as tf from '@tensorflow/tfjs-core';
import type { Padding2d } from '../padding';
import { pair } from '../padding';
import { gatherRows } from './gather';
import { matMulPlainGradients } from './matmul';
import type { NeighbourTable, RowLayout, RowSites } from './row-sites';

/**
 * The active sites of `x` as rows: `[N, C]`, row `r` the `r`-th active site in `[B, H, W]` order. Sites
 * that are not active are dropped (their gradient is zero).
 *
 * @param x `[B, H, W, C]`, H and W multiples or divisors of the mask's
 * @returns `[N, C]`, `N = sites.rowCountAt(H, W)`
 *
 * @example
 * const rows = toRows(image, sites); // the visible pixels, [N, 3]
 */
export function toRows(x: tf.Tensor4D, sites: RowSites): tf.Tensor2D {
  if (x.rank !== 4) throw new Error(`toRows: x must have shape [B, H, W, C], got [${x.shape.join(', ')}]`);
  const [batch, height, width, channels] = x.shape;
  if (batch !== sites.batchSize) {
    throw new Error(`toRows: the mask has batch ${sites.batchSize} but x [${x.shape.join(', ')}] has batch ${batch}`);
  }
  const layout = sites.layoutAt(height, width, 'toRows');
  return tf.tidy(() => gatherRows(tf.reshape(x, [batch * height * width, channels]), layout.toRows));
}

/**
 * Scatters rows back into a map (SparK's densify before the decoder, with zeros at inactive sites; add a
 * mask token with {@link densify} afterwards if wanted). The inverse of {@link toRows}.
 *
 * @param rows `[N, C]` at `size`
 * @param size `[H, W]`
 * @returns `[B, H, W, C]`, zero at inactive sites
 *
 * @example
 * const dense = fromRows(rows, sites, [56, 56]);
 */
export function fromRows(rows: tf.Tensor2D, sites: RowSites, size: [number, number]): tf.Tensor4D {
  const layout = sites.layoutAt(size[0], size[1], 'fromRows');
  const channels = checkRows(rows, layout, 'fromRows');
  return tf.tidy(() => tf.reshape(gatherRows(rows, layout.toSites), [layout.batchSize, layout.height, layout.width, channels]) as tf.Tensor4D);
}

export interface RowConv2dOptions {
  /** The row view of the mask. */
  sites: RowSites;
  /** `[H, W]` of the map the rows come from. */
  inputSize: [number, number];
  /** Default 1. */
  strides?: number | [number, number];
  /** PyTorch style. Default 0. */
  pad?: Padding2d;
  /** Default 1. */
  dilations?: number | [number, number];
  /** 1 (ordinary) or the channel count (depthwise, one output channel per input channel). Default 1. */
  groups?: number;
  /** `[outC]`. */
  bias?: tf.Tensor1D;
  /**
   * Whether the backward pass computes the gradient of `rows` (default true). A customGrad computes every
   * gradient it returns, so pass false when the rows are constants, such as a network's input image: a
   * stem's input gradient (`[N_in, 49 * outC]` gathered for a 7x7 stem) costs more than the rest of it.
   * The rows then get a zero gradient.
   */
  inputGradient?: boolean;
}

/**
 * Convolution on rows: each output row gathers its `kH * kW` neighbour rows (inactive or outside sites
 * read zeros) into `[N_out, kH * kW * inC]` and one matmul with the filter as `[kH * kW * inC, outC]` gives
 * every output. With stride 1 and 'same'-sized padding this is a submanifold convolution; with a stride,
 * output rows are the active sites of the output resolution. Either way it equals {@link sparseConv2d} on
 * the densified input, at the active output sites. A 1x1 stride-1 convolution is a plain matmul.
 *
 * Depthwise (`groups = inC = outC`, ConvNeXt): a weighted sum over the gathered neighbours.
 *
 * @param rows `[N_in, inC]` at `inputSize`
 * @param filter `[kH, kW, inC / groups, outC]`
 * @returns `[N_out, outC]` at {@link windowOutputSize}
 *
 * @example
 * const y = rowConv2d(rows, filter3x3, { sites, inputSize: [56, 56], pad: 1 });             // 56x56 rows
 * const down = rowConv2d(rows, filter3x3, { sites, inputSize: [56, 56], strides: 2, pad: 1 }); // 28x28 rows
 */
export function rowConv2d(rows: tf.Tensor2D, filter: tf.Tensor4D, options: RowConv2dOptions): tf.Tensor2D {
  const caller = 'rowConv2d';
  const { sites, inputSize, strides = 1, pad = 0, dilations = 1, groups = 1, bias, inputGradient = true } = options;
  const input = sites.layoutAt(inputSize[0], inputSize[1], caller);
  const inC = checkRows(rows, input, caller);
  if (filter.rank !== 4) {
    throw new Error(`${caller}: filter must have shape [kH, kW, inC / groups, outC], got [${filter.shape.join(', ')}]`);
  }
  const [kernelH, kernelW, filterInC, outC] = filter.shape;
  const depthwise = groups !== 1;
  if (depthwise && !(groups === inC && outC === inC && filterInC === 1)) {
    throw new Error(
      `${caller}: groups must be 1 or the channel count with one output per channel (filter [kH, kW, 1, ${inC}]), got groups ${groups} and filter [${filter.shape.join(', ')}]`,
    );
  }
  if (!depthwise && filterInC !== inC) {
    throw new Error(
      `${caller}: filter [${filter.shape.join(', ')}] expects ${filterInC} input channels, rows [${rows.shape.join(', ')}] have ${inC}`,
    );
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outC)) {
    throw new Error(`${caller}: bias must have shape [${outC}], got [${bias.shape.join(', ')}]`);
  }
  const [strideH, strideW] = pair(strides);
  const pointwise = kernelH === 1 && kernelW === 1 && strideH === 1 && strideW === 1 && isZeroPad(pad) && !depthwise;
  return tf.tidy(() => {
    let y: tf.Tensor2D;
    if (pointwise) {
      y = matMulPlainGradients(rows, tf.reshape(filter, [inC, outC]) as tf.Tensor2D);
    } else {
      const table = sites.neighbours(inputSize, { windowSize: [kernelH, kernelW], strides, pad, dilations }, caller);
      if (depthwise) {
        const taps = tf.reshape(gatherRows(rows, table.plan), [table.output.rowCount, table.taps, inC]);
        y = tf.sum(tf.mul(taps, tf.reshape(filter, [table.taps, inC])), 1) as tf.Tensor2D;
      } else {
        y = neighbourMatMul(rows, filter, table, inputGradient);
      }
    }
    return bias ? tf.add(y, bias) : y;
  });
}

/**
 * `[N_out, outC]`: the neighbour rows of every output row times the filter, with a backward pass laid out
 * as the fast ops of every backend. Both gradients start from `readers`, the output gradient gathered by
 * the transposed table (`[N_in, taps * outC]`: what each input row fed, tap by tap): the input gradient is
 * `readers @ (filter transposed tap by tap)`, a matmul the shape of the forward one, and the filter
 * gradient is `transpose(rows) @ readers` (or `transpose(gathered) @ dy` where that is smaller). Only the
 * inputs are saved, never the `taps`-times larger
 * gathered matrix. Differentiating through the gather instead would form `dy @ filterᵀ`
 * (`[N_out, taps * inC]`, 6x slower than the forward matmul on wasm) and sum it back over the taps.
 */
function neighbourMatMul(rows: tf.Tensor2D, filter: tf.Tensor4D, table: NeighbourTable, inputGradient: boolean): tf.Tensor2D {
  const [inRows, inC] = rows.shape;
  const [kernelH, kernelW, , outC] = filter.shape;
  const { taps } = table;
  const outRows = table.output.rowCount;
  const gatherNeighbours = (input: tf.Tensor) =>
    tf.reshape(tf.gather(tf.concat([input, tf.zeros([2, inC])], 0), table.plan.index), [outRows, taps * inC]) as tf.Tensor2D;
  // The filter gradient from the gathered input (`[N_out, taps * inC]`, gathered again: a customGrad may
  // only save its inputs) when that is the smaller matrix, as for strided convolutions and the stem (3 input
  // channels); otherwise from `readers`, which the input gradient needs anyway.
  const filterFromNeighbours = !inputGradient || outRows * inC < inRows * outC;
  const convolve = tf.customGrad(((input: tf.Tensor2D, weights: tf.Tensor4D, save: tf.GradSaveFunc) => {
    save([input, weights]);
    return {
      value: tf.matMul(gatherNeighbours(input), tf.reshape(weights, [taps * inC, outC]) as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor2D, [savedInput, savedWeights]: tf.Tensor[]) => {
        let readers: tf.Tensor2D | undefined;
        if (inputGradient || !filterFromNeighbours) {
          const dyPadded = tf.concat([dy, tf.zeros([1, outC])], 0);
          readers = tf.reshape(tf.gather(dyPadded, table.transposed), [inRows, taps * outC]) as tf.Tensor2D;
        }
        let dInput: tf.Tensor = tf.zerosLike(savedInput);
        if (readers && inputGradient && inRows < inC) {
          // Few rows, wide filter (deep stages): the transposed product, `(filter by input channel) @
          // readersᵀ`, moves whole outC runs of the filter ([taps, inC, outC] -> [inC, taps, outC]) and
          // transposes only `readers` and the result, instead of the whole filter tap by tap; on wasm a fresh
          // right-hand matrix is also repacked, and `readers` is the small one here.
          const byInput = tf.reshape(tf.transpose(tf.reshape(savedWeights, [taps, inC, outC]), [1, 0, 2]), [inC, taps * outC]);
          dInput = tf.transpose(tf.matMul(byInput as tf.Tensor2D, tf.transpose(readers) as tf.Tensor2D));
        } else if (readers && inputGradient) {
          // [taps, inC, outC] -> [taps, outC, inC]: each tap's filter transposed, stacked along the rows.
          const tapsTransposed = tf.reshape(tf.transpose(tf.reshape(savedWeights, [taps, inC, outC]), [0, 2, 1]), [taps * outC, inC]);
          dInput = tf.matMul(readers, tapsTransposed as tf.Tensor2D);
        }
        let dWeights: tf.Tensor;
        if (filterFromNeighbours || !readers) {
          dWeights = tf.reshape(tf.matMul(tf.transpose(gatherNeighbours(savedInput)) as tf.Tensor2D, dy), savedWeights.shape);
        } else {
          // [inC, taps * outC] -> [taps, inC, outC], the filter's layout.
          const perTap = tf.reshape(tf.matMul(tf.transpose(savedInput) as tf.Tensor2D, readers), [inC, taps, outC]);
          dWeights = tf.reshape(tf.transpose(perTap, [1, 0, 2]), [kernelH, kernelW, inC, outC]);
        }
        return [dInput, dWeights];
      },
    };
    // customGrad's type lists the save function among the tensors; it is passed last, as here.
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return convolve(rows, filter) as tf.Tensor2D;
}

/**
 * A 1x1 convolution or linear layer on rows (ConvNeXt's pointwise layers): `rows @ weight + bias`.
 *
 * @param rows `[N, inC]`
 * @param weight `[inC, outC]` (PyTorch's Linear weight transposed)
 * @returns `[N, outC]`
 *
 * @example
 * const hidden = tf.relu(rowLinear(rows, weight1, bias1)); // [N, hiddenC]
 */
export function rowLinear(rows: tf.Tensor2D, weight: tf.Tensor2D, bias?: tf.Tensor1D): tf.Tensor2D {
  if (rows.rank !== 2 || weight.rank !== 2 || weight.shape[0] !== rows.shape[1]) {
    throw new Error(
      `rowLinear: rows [N, C] and weight [C, outC] must agree, got rows [${rows.shape.join(', ')}] and weight [${weight.shape.join(', ')}]`,
    );
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== weight.shape[1])) {
    throw new Error(`rowLinear: bias must have shape [${weight.shape[1]}], got [${bias.shape.join(', ')}]`);
  }
  return tf.tidy(() => {
    const y = matMulPlainGradients(rows, weight);
    return (bias ? tf.add(y, bias) : y) as tf.Tensor2D;
  });
}

export interface RowPool2dOptions {
  sites: RowSites;
  /** `[H, W]` of the map the rows come from. */
  inputSize: [number, number];
  /** Window size. */
  filterSize: number | [number, number];
  /** Defaults to the window size, as in PyTorch. */
  strides?: number | [number, number];
  /** PyTorch style. Default 0. */
  pad?: Padding2d;
}

/**
 * Max pooling on rows, equal to {@link sparseMaxPool2d} on the densified input: inactive sites inside the
 * window count as the zeros the masked map holds there, padding as -infinity (PyTorch's).
 *
 * @param rows `[N_in, C]` at `inputSize`
 * @returns `[N_out, C]`
 *
 * @example
 * const pooled = rowMaxPool2d(rows, { sites, inputSize: [112, 112], filterSize: 3, strides: 2, pad: 1 });
 */
export function rowMaxPool2d(rows: tf.Tensor2D, options: RowPool2dOptions): tf.Tensor2D {
  const { sites, inputSize, filterSize, strides = filterSize, pad = 0 } = options;
  const channels = checkRows(rows, sites.layoutAt(inputSize[0], inputSize[1], 'rowMaxPool2d'), 'rowMaxPool2d');
  return tf.tidy(() => {
    const table = sites.neighbours(inputSize, { windowSize: filterSize, strides, pad }, 'rowMaxPool2d');
    const gathered = tf.reshape(gatherRows(rows, table.plan, '-inf'), [table.output.rowCount, table.taps, channels]);
    return maxOverTaps(gathered as tf.Tensor3D);
  });
}

/**
 * `[N, C]`: the max of `gathered` `[N, taps, C]` over its taps, with tf.max's gradient (every tap equal to
 * the max gets `dy`) computed from tiled tensors: tf.max's own gradient compares `[N, taps, C]` with the
 * broadcast `[N, 1, C]`, which wasm runs through its generic broadcasting loop (~150 ms for a ResNet stem's
 * pool at 224, batch 2, against ~10 ms tiled).
 */
function maxOverTaps(gathered: tf.Tensor3D): tf.Tensor2D {
  const taps = gathered.shape[1];
  const spread = (perRow: tf.Tensor) => tf.tile(tf.expandDims(perRow, 1), [1, taps, 1]);
  const reduce = tf.customGrad(((input: tf.Tensor3D, save: tf.GradSaveFunc) => {
    save([input]);
    return {
      value: tf.max(input, 1),
      gradFunc: (dy: tf.Tensor2D, [savedInput]: tf.Tensor[]) => {
        const isMax = tf.cast(tf.equal(savedInput, spread(tf.max(savedInput, 1))), 'float32');
        return tf.mul(isMax, spread(dy));
      },
    };
    // customGrad's type lists the save function among the tensors; it is passed last, as here.
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return reduce(gathered) as tf.Tensor2D;
}

export interface RowAvgPool2dOptions extends RowPool2dOptions {
  /** Whether padded zeros count in the average (PyTorch's `count_include_pad`). Default true. */
  countIncludePad?: boolean;
}

/**
 * Average pooling on rows, equal to {@link sparseAvgPool2d} on the densified input (inactive sites inside
 * the window count as zeros).
 *
 * @param rows `[N_in, C]` at `inputSize`
 * @returns `[N_out, C]`
 *
 * @example
 * const pooled = rowAvgPool2d(rows, { sites, inputSize: [56, 56], filterSize: 2 });
 */
export function rowAvgPool2d(rows: tf.Tensor2D, options: RowAvgPool2dOptions): tf.Tensor2D {
  const { sites, inputSize, filterSize, strides = filterSize, pad = 0, countIncludePad = true } = options;
  const channels = checkRows(rows, sites.layoutAt(inputSize[0], inputSize[1], 'rowAvgPool2d'), 'rowAvgPool2d');
  return tf.tidy(() => {
    const table = sites.neighbours(inputSize, { windowSize: filterSize, strides, pad }, 'rowAvgPool2d');
    const gathered = tf.reshape(gatherRows(rows, table.plan), [table.output.rowCount, table.taps, channels]);
    const sum = tf.sum(gathered, 1);
    return (countIncludePad ? tf.div(sum, table.taps) : tf.div(sum, table.inBoundsCount)) as tf.Tensor2D;
  });
}

export interface RowNormOptions {
  /** `[C]` scale. */
  gamma?: tf.Tensor1D;
  /** `[C]` shift. */
  beta?: tf.Tensor1D;
  /** Default 1e-5 for batch norm (PyTorch's), 1e-6 for layer norm (ConvNeXt's). */
  epsilon?: number;
}

/**
 * Batch norm over rows: the statistics of the rows are those of the active sites, so this equals
 * {@link sparseBatchNorm} (and official SparK's BatchNorm1d over the gathered sites). Training: no
 * `mean`/`variance`, the rows' mean and biased variance normalise. Inference: pass the running ones.
 *
 * Training runs as one op with its own gradient and fast sums over the rows (`sumOverRows`): tfjs's
 * batchNorm and moments gradients reduce over the rows axis through transposes and broadcast `[1, 1, N, C]`
 * against `[C]`, which wasm runs through generic loops (about a quarter of a ResNet-18 step on rows).
 *
 * @param rows `[N, C]`
 * @returns `[N, C]`
 *
 * @example
 * const y = rowBatchNorm(rows, { gamma, beta });
 */
export function rowBatchNorm(rows: tf.Tensor2D, options: RowNormOptions = {}, mean?: tf.Tensor1D, variance?: tf.Tensor1D): tf.Tensor2D {
  const { gamma, beta, epsilon = 1e-5 } = options;
  const channels = checkRowVectors(rows, { gamma, beta, mean, variance }, 'rowBatchNorm');
  if ((mean === undefined) !== (variance === undefined)) {
    throw new Error(`rowBatchNorm: pass both mean and variance (inference) or neither (training), got only ${mean ? 'mean' : 'variance'}`);
  }
  return tf.tidy(() => {
    if (!(mean && variance)) return batchNormRowStatistics(rows, gamma ?? tf.ones([channels]), beta ?? tf.zeros([channels]), epsilon);
    const y = tf.batchNorm(rows, mean, variance, beta, gamma, epsilon);
    return tf.reshape(y, [-1, channels]) as tf.Tensor2D;
  });
}

/**
 * The mean and biased variance of rows `[N, C]` over the rows (`[C]` each), as `tf.moments(rows, 0)`
 * computes them, with sums that are fast on every backend (see `sumOverRows`). No gradient is meant to flow through
 * them: {@link rowBatchNorm} differentiates its own statistics.
 */
export function rowMoments(rows: tf.Tensor2D): { mean: tf.Tensor1D; variance: tf.Tensor1D } {
  return tf.tidy(() => {
    const { mean, centered } = centre(rows);
    const variance = tf.reshape(meanOverRows(tf.mul(centered, centered)), [-1]) as tf.Tensor1D;
    return { mean: tf.reshape(mean, [-1]) as tf.Tensor1D, variance };
  });
}

// (x * x rather than tf.square: wasm runs Square without SIMD, ~10x slower than a same-shape multiply.)

/**
 * `[1, C]`: the sum of `[N, C]` over its rows. On wasm a Sum (@sparkmim/wasm-kernels sums leading axes in
 * one pass; a matmul would repack the fresh `[N, C]` operand each time, ~10 ms at the stem); elsewhere a
 * `[1, N] x [N, C]` matmul (tfjs-cpu sums a leading axis by transposing first, ~15x slower).
 */
function sumOverRows(x: tf.Tensor2D): tf.Tensor2D {
  if (tf.getBackend() === 'wasm') return tf.sum(x, 0, true);
  return tf.matMul(tf.ones([1, x.shape[0]]), x);
}

/** `[1, C]`: the mean of `[N, C]` over its rows. */
function meanOverRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.div(sumOverRows(x), x.shape[0]);
}

function centre(rows: tf.Tensor2D): { mean: tf.Tensor2D; centered: tf.Tensor2D } {
  const mean = meanOverRows(rows);
  return { mean, centered: tf.sub(rows, mean) };
}

/**
 * Training batch norm with its gradient in closed form (the usual one, with `x̂ = (x - mean) * rstd`):
 * `dx = gamma * rstd / N * (N * dy - Σdy - x̂ * Σ(dy * x̂))`, `dgamma = Σ(dy * x̂)`, `dbeta = Σdy`.
 */
function batchNormRowStatistics(rows: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): tf.Tensor2D {
  const normalise = (x: tf.Tensor2D) => {
    const { centered } = centre(x);
    const rstd = tf.rsqrt(tf.add(meanOverRows(tf.mul(centered, centered)), epsilon));
    return { normalised: tf.mul(centered, rstd) as tf.Tensor2D, rstd };
  };
  const op = tf.customGrad(((x: tf.Tensor2D, scale: tf.Tensor1D, shift: tf.Tensor1D, save: tf.GradSaveFunc) => {
    save([x, scale]);
    return {
      value: tf.add(tf.mul(normalise(x).normalised, scale), shift),
      gradFunc: (dy: tf.Tensor2D, [savedX, savedScale]: tf.Tensor[]) => {
        const { normalised, rstd } = normalise(savedX as tf.Tensor2D);
        const count = savedX.shape[0] as number;
        const dShift = sumOverRows(dy);
        const dScale = sumOverRows(tf.mul(dy, normalised) as tf.Tensor2D);
        const inner = tf.sub(tf.sub(tf.mul(dy, count), dShift), tf.mul(normalised, dScale));
        const dx = tf.mul(inner, tf.div(tf.mul(savedScale, rstd), count));
        return [dx, tf.reshape(dScale, [-1]), tf.reshape(dShift, [-1])];
      },
    };
    // customGrad's type lists the save function among the tensors; it is passed last, as here.
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(rows, gamma, beta) as tf.Tensor2D;
}

/**
 * Layer norm of each row over its channels, equal to {@link sparseLayerNorm} at the active sites.
 *
 * @param rows `[N, C]`
 * @returns `[N, C]`
 *
 * @example
 * const y = rowLayerNorm(rows, { gamma, beta });
 */
export function rowLayerNorm(rows: tf.Tensor2D, options: RowNormOptions = {}): tf.Tensor2D {
  const { gamma, beta, epsilon = 1e-6 } = options;
  checkRowVectors(rows, { gamma, beta }, 'rowLayerNorm');
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(rows, 1, true);
    let y = tf.mul(tf.sub(rows, mean), tf.rsqrt(tf.add(variance, epsilon)));
    if (gamma) y = tf.mul(y, gamma);
    if (beta) y = tf.add(y, beta);
    return y as tf.Tensor2D;
  });
}

function isZeroPad(pad: Padding2d): boolean {
  if (pad === 'valid') return true;
  if (pad === 'same') return true; // a 1x1 window needs no padding
  if (typeof pad === 'number') return pad === 0;
  return (pad as (number | number[])[]).flat().every((side) => side === 0);
}

/** Throws unless `rows` is `[layout.rowCount, C]`; returns C. */
function checkRows(rows: tf.Tensor, layout: RowLayout, caller: string): number {
  if (rows.rank !== 2 || rows.shape[0] !== layout.rowCount) {
    throw new Error(
      `${caller}: expected rows [${layout.rowCount}, C] (the active sites at ${layout.height}x${layout.width}), got [${rows.shape.join(', ')}]`,
    );
  }
  return rows.shape[1] as number;
}

function checkRowVectors(rows: tf.Tensor2D, vectors: Record<string, tf.Tensor | undefined>, caller: string): number {
  if (rows.rank !== 2) throw new Error(`${caller}: rows must have shape [N, C], got [${rows.shape.join(', ')}]`);
  const channels = rows.shape[1] as number;
  for (const [name, vector] of Object.entries(vectors)) {
    if (vector && (vector.rank !== 1 || vector.shape[0] !== channels)) {
      throw new Error(`${caller}: ${name} must have shape [${channels}], got [${vector.shape.join(', ')}]`);
    }
  }
  return channels;
}
