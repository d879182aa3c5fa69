// Slow, obvious references for the sparse-ops tests: loops over sites in plain JS, float64 arithmetic,
// written from the definitions (PyTorch's conv / pooling / BatchNorm1d / LayerNorm applied to the active
// sites, as official SparK's encoder.py does), never from the code under test. Not part of the package API.
//
// Layout everywhere: NHWC, row-major, as flat arrays with a separate shape.

/** A flat NHWC (or any row-major) array with its shape. */
export interface Grid {
  shape: number[];
  data: Float64Array;
}

/** Deterministic values in [-1, 1) (mulberry32), so every run and backend sees the same inputs. */
export function seededValues(count: number, seed: number): Float64Array {
  let state = seed >>> 0;
  const values = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    values[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return values;
}

export function seededGrid(shape: number[], seed: number): Grid {
  return {
    shape,
    data: seededValues(
      shape.reduce((a, b) => a * b, 1),
      seed,
    ),
  };
}

/** A 0/1 mask of `B*h*w` sites from a pattern string per batch item: '1' active, '0' inactive, rows by '/'. */
export function maskFromRows(rowsPerItem: string[]): { values: number[]; shape: [number, number, number] } {
  const items = rowsPerItem.map((item) => item.split('/'));
  const height = items[0].length;
  const width = items[0][0].length;
  const values: number[] = [];
  for (const rows of items) {
    if (rows.length !== height || rows.some((row) => row.length !== width)) throw new Error('ragged mask pattern');
    for (const row of rows) for (const char of row) values.push(char === '1' ? 1 : 0);
  }
  return { values, shape: [items.length, height, width] };
}

/**
 * The mask at `height x width` by nearest resampling of a `[B, h, w]` mask: output site (i, j) reads base
 * site (floor(i * h / height), floor(j * w / width)). Upsampling repeats each site as a block
 * (`repeat_interleave`), downsampling keeps the top-left site of each block (`F.interpolate(mode='nearest')`).
 */
export function maskAt(base: ArrayLike<number>, [batch, baseH, baseW]: number[], height: number, width: number): Float64Array {
  const out = new Float64Array(batch * height * width);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < height; i++) {
      for (let j = 0; j < width; j++) {
        const sourceI = Math.floor((i * baseH) / height);
        const sourceJ = Math.floor((j * baseW) / width);
        out[(b * height + i) * width + j] = base[(b * baseH + sourceI) * baseW + sourceJ];
      }
    }
  }
  return out;
}

/** `x` with every channel zeroed at the inactive sites of `mask` (`[B, H, W]`, same resolution). */
export function zeroInactive(x: Grid, mask: ArrayLike<number>): Grid {
  const channels = x.shape[3];
  const data = x.data.slice();
  for (let site = 0; site < mask.length; site++) {
    if (mask[site] === 0) for (let c = 0; c < channels; c++) data[site * channels + c] = 0;
  }
  return { shape: x.shape, data };
}

export interface ReferenceConvOptions {
  stride?: [number, number];
  /** [top, bottom, left, right] */
  pad?: [number, number, number, number];
  dilation?: [number, number];
  groups?: number;
  bias?: Float64Array;
  /** `[B, H', W']` at the output resolution; inactive outputs are 0. */
  outputMask?: ArrayLike<number>;
}

export function convOutputSize(size: number, kernel: number, stride: number, padBefore: number, padAfter: number, dilation: number): number {
  return Math.floor((size + padBefore + padAfter - dilation * (kernel - 1) - 1) / stride) + 1;
}

/**
 * PyTorch's Conv2d (zero padding, groups, dilation) computed output site by output site, then SparK's
 * `x *= active`: an inactive output site is 0, bias included. Filter `[kH, kW, inC / groups, outC]`.
 */
export function conv2dReference(x: Grid, filter: Grid, options: ReferenceConvOptions = {}): Grid {
  const { stride = [1, 1], pad = [0, 0, 0, 0], dilation = [1, 1], groups = 1, bias, outputMask } = options;
  const [batch, height, width, inC] = x.shape;
  const [kernelH, kernelW, inPerGroup, outC] = filter.shape;
  const outPerGroup = outC / groups;
  const outH = convOutputSize(height, kernelH, stride[0], pad[0], pad[1], dilation[0]);
  const outW = convOutputSize(width, kernelW, stride[1], pad[2], pad[3], dilation[1]);
  const out = new Float64Array(batch * outH * outW * outC);
  for (let b = 0; b < batch; b++) {
    for (let oi = 0; oi < outH; oi++) {
      for (let oj = 0; oj < outW; oj++) {
        const site = (b * outH + oi) * outW + oj;
        if (outputMask && outputMask[site] === 0) continue;
        for (let o = 0; o < outC; o++) {
          const group = Math.floor(o / outPerGroup);
          let sum = bias ? bias[o] : 0;
          for (let ki = 0; ki < kernelH; ki++) {
            const i = oi * stride[0] - pad[0] + ki * dilation[0];
            if (i < 0 || i >= height) continue;
            for (let kj = 0; kj < kernelW; kj++) {
              const j = oj * stride[1] - pad[2] + kj * dilation[1];
              if (j < 0 || j >= width) continue;
              for (let ci = 0; ci < inPerGroup; ci++) {
                const c = group * inPerGroup + ci;
                sum += x.data[((b * height + i) * width + j) * inC + c] * filter.data[((ki * kernelW + kj) * inPerGroup + ci) * outC + o];
              }
            }
          }
          out[site * outC + o] = sum;
        }
      }
    }
  }
  return { shape: [batch, outH, outW, outC], data: out };
}

export interface ReferencePoolOptions {
  kind: 'max' | 'avg';
  size: [number, number];
  stride: [number, number];
  /** [top, bottom, left, right] */
  pad?: [number, number, number, number];
  /** Avg only: divide by the whole window (PyTorch's default) or by the in-bounds part. */
  countIncludePad?: boolean;
  outputMask?: ArrayLike<number>;
}

/** PyTorch's MaxPool2d (padding is -inf) / AvgPool2d, window by window, then `x *= active`. */
export function pool2dReference(x: Grid, options: ReferencePoolOptions): Grid {
  const { kind, size, stride, pad = [0, 0, 0, 0], countIncludePad = true, outputMask } = options;
  const [batch, height, width, channels] = x.shape;
  const outH = convOutputSize(height, size[0], stride[0], pad[0], pad[1], 1);
  const outW = convOutputSize(width, size[1], stride[1], pad[2], pad[3], 1);
  const out = new Float64Array(batch * outH * outW * channels);
  for (let b = 0; b < batch; b++) {
    for (let oi = 0; oi < outH; oi++) {
      for (let oj = 0; oj < outW; oj++) {
        const site = (b * outH + oi) * outW + oj;
        if (outputMask && outputMask[site] === 0) continue;
        for (let c = 0; c < channels; c++) {
          let max = -Infinity;
          let sum = 0;
          let inBounds = 0;
          for (let ki = 0; ki < size[0]; ki++) {
            const i = oi * stride[0] - pad[0] + ki;
            if (i < 0 || i >= height) continue;
            for (let kj = 0; kj < size[1]; kj++) {
              const j = oj * stride[1] - pad[2] + kj;
              if (j < 0 || j >= width) continue;
              const value = x.data[((b * height + i) * width + j) * channels + c];
              max = Math.max(max, value);
              sum += value;
              inBounds++;
            }
          }
          out[site * channels + c] = kind === 'max' ? max : sum / (countIncludePad ? size[0] * size[1] : inBounds);
        }
      }
    }
  }
  return { shape: [batch, outH, outW, channels], data: out };
}

export interface ReferenceBatchNorm {
  y: Grid;
  /** Per channel, over the active sites. */
  mean: Float64Array;
  biasedVariance: Float64Array;
  unbiasedVariance: Float64Array;
  count: number;
}

/** The active sites of `x` (`mask` `[B, H, W]`, or all sites) as a list of site indices. */
function activeSiteList(siteCount: number, mask?: ArrayLike<number>): number[] {
  const sites: number[] = [];
  for (let site = 0; site < siteCount; site++) if (mask?.[site] !== 0) sites.push(site);
  return sites;
}

/**
 * Official SparK's SparseBatchNorm2d in training mode: gather the active sites into an `[N, C]` matrix,
 * BatchNorm1d over it (batch statistics, biased variance normalises), scatter back into zeros.
 */
export function batchNormTrainReference(
  x: Grid,
  mask: ArrayLike<number> | undefined,
  gamma: Float64Array,
  beta: Float64Array,
  epsilon = 1e-5,
): ReferenceBatchNorm {
  const [batch, height, width, channels] = x.shape;
  const sites = activeSiteList(batch * height * width, mask);
  const count = sites.length;
  const mean = new Float64Array(channels);
  const biasedVariance = new Float64Array(channels);
  const unbiasedVariance = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    let sum = 0;
    for (const site of sites) sum += x.data[site * channels + c];
    mean[c] = sum / count;
    let squares = 0;
    for (const site of sites) squares += (x.data[site * channels + c] - mean[c]) ** 2;
    biasedVariance[c] = squares / count;
    unbiasedVariance[c] = squares / (count - 1);
  }
  const y = batchNormEvalReference(x, mask, gamma, beta, mean, biasedVariance, epsilon);
  return { y, mean, biasedVariance, unbiasedVariance, count };
}

/** BatchNorm with given statistics at the active sites, zeros elsewhere. */
export function batchNormEvalReference(
  x: Grid,
  mask: ArrayLike<number> | undefined,
  gamma: Float64Array,
  beta: Float64Array,
  mean: ArrayLike<number>,
  variance: ArrayLike<number>,
  epsilon = 1e-5,
): Grid {
  const [batch, height, width, channels] = x.shape;
  const out = new Float64Array(x.data.length);
  for (const site of activeSiteList(batch * height * width, mask)) {
    for (let c = 0; c < channels; c++) {
      const index = site * channels + c;
      out[index] = ((x.data[index] - mean[c]) / Math.sqrt(variance[c] + epsilon)) * gamma[c] + beta[c];
    }
  }
  return { shape: x.shape, data: out };
}

/** ConvNeXt's channels-last LayerNorm at each active site (biased variance over channels), zeros elsewhere. */
export function layerNormReference(x: Grid, mask: ArrayLike<number> | undefined, gamma: Float64Array, beta: Float64Array, epsilon = 1e-6): Grid {
  const [batch, height, width, channels] = x.shape;
  const out = new Float64Array(x.data.length);
  for (const site of activeSiteList(batch * height * width, mask)) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += x.data[site * channels + c];
    const mean = sum / channels;
    let squares = 0;
    for (let c = 0; c < channels; c++) squares += (x.data[site * channels + c] - mean) ** 2;
    const scale = 1 / Math.sqrt(squares / channels + epsilon);
    for (let c = 0; c < channels; c++) {
      out[site * channels + c] = (x.data[site * channels + c] - mean) * scale * gamma[c] + beta[c];
    }
  }
  return { shape: x.shape, data: out };
}

/** Active sites keep their features, inactive ones get the mask token. */
export function densifyReference(x: Grid, mask: ArrayLike<number>, token: Float64Array): Grid {
  const channels = x.shape[3];
  const out = x.data.slice();
  for (let site = 0; site < mask.length; site++) {
    if (mask[site] === 0) for (let c = 0; c < channels; c++) out[site * channels + c] = token[c];
  }
  return { shape: x.shape, data: out };
}

/**
 * Gradients of `loss = sum(f(inputs) * weights)` with respect to every input, by central differences in
 * float64. Exact up to rounding for the piecewise-linear ops (conv, pooling away from ties, densify) and to
 * O(step^2) for the norms; either way far below float32 noise.
 */
export function numericGradients(
  f: (inputs: Float64Array[]) => Float64Array,
  inputs: Float64Array[],
  weights: Float64Array,
  step = 1e-4,
): Float64Array[] {
  const loss = (values: Float64Array[]) => {
    const out = f(values);
    let total = 0;
    for (let i = 0; i < out.length; i++) total += out[i] * weights[i];
    return total;
  };
  return inputs.map((input, which) => {
    const gradient = new Float64Array(input.length);
    for (let k = 0; k < input.length; k++) {
      const shifted = inputs.map((values) => values.slice());
      shifted[which][k] = input[k] + step;
      const up = loss(shifted);
      shifted[which][k] = input[k] - step;
      const down = loss(shifted);
      gradient[k] = (up - down) / (2 * step);
    }
    return gradient;
  });
}
