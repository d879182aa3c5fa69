// dL/dfilter of conv2d on webgpu as an implicit GEMM with split K.
//
// tfjs-backend-webgpu 4.22 runs one thread per filter weight, each looping over batch * H' * W'
// (tensorflow/tfjs#7190): on an H200, 81 ms for a 3x3 64->64 filter at batch 32 on 56x56, 257 ms for a
// 1x1 64->256, where the forward convolution takes 22 ms. Here
//   dW[m, n] = sum over k of A[m, k] * B[k, n],   m = (kh * kW + kw) * inC + c,  n = o,  k = (b * H' + y) * W' + x
//   A[m, k] = x[b, y * sH + kh - padTop, x * sW + kw - padLeft, c]  (0 outside the image),  B[k, n] = dy[k, n]
// is computed in 64x64 output tiles, K in chunks of 16 staged in workgroup memory. K (batch * H' * W', 100k
// for the shapes above) dwarfs M * N (576 * 64), so K is also split across workgroups (each writes a
// partial [M, N] slice) and a second pass sums the slices: without it a 3x3 64->64 filter is 9 workgroups,
// a few percent of a large GPU.
import * as tf from '@tensorflow/tfjs-core';
import { assertFloat32, type KernelArgs, type WebGpuBackendLike, type WebGpuProgramLike } from '../program';
import { runStockKernel } from '../stock';

/** Output tile edge (rows of dW, and columns) per workgroup; 16x16 threads, 4x4 outputs each. */
const TILE = 64;
/** K values staged in workgroup memory per step (2 * 16 * 64 floats = 8 KiB). */
const TILE_K = 16;
/** Below this many K values per workgroup, the partial sums cost more than the parallelism gains. */
const MIN_K_PER_SLICE = 256;
/** Enough workgroups to fill a large GPU (132 SMs of an H200, several 256-thread workgroups each). */
const TARGET_WORKGROUPS = 1024;
/** Caps the partial-sum buffer (floats, 64 MiB). */
const MAX_PARTIAL_FLOATS = 16 * 1024 * 1024;

/** The GEMM of a filter gradient: dW `[M, N]` = A `[M, K]` x B `[K, N]`, K split into `slices`. */
export interface FilterGradientPlan {
  m: number;
  n: number;
  k: number;
  /** Workgroups along K; 1 writes dW directly, more write `[slices, M, N]` partial sums first. */
  slices: number;
  /** K values per slice, a multiple of {@link TILE_K}. */
  kPerSlice: number;
}

/** How many K slices for a `[M, N]` output reduced over K (see the file comment). */
export function planFilterGradient(m: number, n: number, k: number): FilterGradientPlan {
  const tiles = Math.ceil(m / TILE) * Math.ceil(n / TILE);
  let slices = Math.max(1, Math.min(Math.ceil(k / MIN_K_PER_SLICE), Math.ceil(TARGET_WORKGROUPS / tiles), Math.floor(MAX_PARTIAL_FLOATS / (m * n))));
  const kPerSlice = Math.ceil(Math.ceil(k / slices) / TILE_K) * TILE_K;
  slices = Math.ceil(k / kPerSlice);
  return { m, n, k, slices, kPerSlice };
}

interface ConvGeometry {
  batch: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outHeight: number;
  outWidth: number;
  outChannels: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  padTop: number;
  padLeft: number;
}

/** The split-K GEMM: writes dW (`slices` 1) or `[slices, M, N]` partial sums. */
class FilterGradientGemmProgram implements WebGpuProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [2], y: [1], z: [0] };
  dispatch: [number, number, number];
  variableNames = ['x', 'dy'];
  workgroupSize: [number, number, number] = [16, 16, 1];

  constructor(
    private readonly geometry: ConvGeometry,
    private readonly plan: FilterGradientPlan,
    filterShape: number[],
  ) {
    this.outputShape = plan.slices === 1 ? filterShape : [plan.slices, plan.m, plan.n];
    this.dispatch = [Math.ceil(plan.n / TILE), Math.ceil(plan.m / TILE), plan.slices];
    // Every size is a constant of the shader (integer division by a constant is a multiply), so the key
    // names them all; a network has a few dozen distinct convolutions.
    this.shaderKey = `sparkmimConv2DBackpropFilterGemm_${Object.values(geometry).join('_')}_${plan.slices}_${plan.kPerSlice}`;
  }

  getUserCode(): string {
    const g = this.geometry;
    const { m, n, k, kPerSlice } = this.plan;
    return `
      const M = ${m};
      const N = ${n};
      const K = ${k};
      const K_PER_SLICE = ${kPerSlice};
      const IN_H = ${g.inHeight};
      const IN_W = ${g.inWidth};
      const IN_C = ${g.inChannels};
      const OUT_H = ${g.outHeight};
      const OUT_W = ${g.outWidth};
      const FILTER_W = ${g.filterWidth};
      const STRIDE_H = ${g.strideHeight};
      const STRIDE_W = ${g.strideWidth};
      const PAD_TOP = ${g.padTop};
      const PAD_LEFT = ${g.padLeft};
      const TILE = ${TILE};
      const TILE_K = ${TILE_K};

      // [TILE_K][TILE]: row kk holds A[mBase .. mBase + 63, k0 + kk] and B[k0 + kk, nBase .. nBase + 63].
      var<workgroup> tileA : array<f32, ${TILE_K * TILE}>;
      var<workgroup> tileB : array<f32, ${TILE_K * TILE}>;

      fn main() {
        // The backend binds its uniforms at a fixed slot; a shader that never reads them loses the binding
        // from its layout and the bind group fails, so they are touched once (sizes are constants here).
        _ = uniforms.NAN;
        let tx = i32(localId.x);
        let ty = i32(localId.y);
        let thread = ty * 16 + tx;
        let nBase = i32(workgroupId.x) * TILE;
        let mBase = i32(workgroupId.y) * TILE;
        let slice = i32(workgroupId.z);
        let kBegin = slice * K_PER_SLICE;
        let kEnd = min(K, kBegin + K_PER_SLICE);

        // Each thread stages one column of the tiles (64 consecutive channels: coalesced reads of x and dy)
        // in rows loadRow, loadRow + 4, ...; its filter tap and channel are fixed for the whole loop.
        let loadColumn = thread % TILE;
        let loadRow = thread / TILE;
        let loadM = mBase + loadColumn;
        let channel = loadM % IN_C;
        let tap = loadM / IN_C;
        let tapY = tap / FILTER_W - PAD_TOP;
        let tapX = tap % FILTER_W - PAD_LEFT;
        let mInRange = loadM < M;
        let loadN = nBase + loadColumn;
        let nInRange = loadN < N;

        var acc : array<array<f32, 4>, 4>;
        for (var i = 0; i < 4; i++) {
          for (var j = 0; j < 4; j++) {
            acc[i][j] = 0.0;
          }
        }

        // A constant trip count keeps the barriers in uniform control flow (WGSL's uniformity analysis
        // treats the workgroup id, copied to a private variable by the backend's header, as non-uniform);
        // the last slice's surplus steps load zeros.
        for (var kStep = 0; kStep < K_PER_SLICE / TILE_K; kStep++) {
          let k0 = kBegin + kStep * TILE_K;
          for (var step = 0; step < TILE_K / 4; step++) {
            let row = loadRow + step * 4;
            let kk = k0 + row;
            var a = 0.0;
            var b = 0.0;
            if (kk < kEnd) {
              let outX = kk % OUT_W;
              let rest = kk / OUT_W;
              let outY = rest % OUT_H;
              let batch = rest / OUT_H;
              let inY = outY * STRIDE_H + tapY;
              let inX = outX * STRIDE_W + tapX;
              if (mInRange && inY >= 0 && inY < IN_H && inX >= 0 && inX < IN_W) {
                a = x[((batch * IN_H + inY) * IN_W + inX) * IN_C + channel];
              }
              if (nInRange) {
                b = dy[kk * N + loadN];
              }
            }
            tileA[row * TILE + loadColumn] = a;
            tileB[row * TILE + loadColumn] = b;
          }
          workgroupBarrier();
          // Thread (tx, ty) owns rows ty + 16i and columns tx + 16j of the tile: neighbouring threads read
          // neighbouring words of tileB, and one broadcast word of tileA.
          for (var kk = 0; kk < TILE_K; kk++) {
            var aValues : array<f32, 4>;
            var bValues : array<f32, 4>;
            for (var i = 0; i < 4; i++) {
              aValues[i] = tileA[kk * TILE + ty + 16 * i];
              bValues[i] = tileB[kk * TILE + tx + 16 * i];
            }
            for (var i = 0; i < 4; i++) {
              for (var j = 0; j < 4; j++) {
                acc[i][j] = fma(aValues[i], bValues[j], acc[i][j]);
              }
            }
          }
          workgroupBarrier();
        }

        let sliceOffset = slice * M * N;
        for (var i = 0; i < 4; i++) {
          let row = mBase + ty + 16 * i;
          for (var j = 0; j < 4; j++) {
            let column = nBase + tx + 16 * j;
            if (row < M && column < N) {
              result[sliceOffset + row * N + column] = acc[i][j];
            }
          }
        }
      }
    `;
  }
}

/** Sums `[slices, M, N]` partial products into dW. */
class SumSlicesProgram implements WebGpuProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0, 1, 2, 3] };
  dispatch: [number, number, number];
  variableNames = ['partial'];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;

  constructor(
    filterShape: number[],
    private readonly slices: number,
  ) {
    this.outputShape = filterShape;
    this.dispatch = [Math.ceil(tf.util.sizeFromShape(filterShape) / 64), 1, 1];
    this.shaderKey = `sparkmimSumSlices_${slices}`;
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          var sum = 0.0;
          for (var slice = 0; slice < ${this.slices}; slice++) {
            sum += partial[slice * uniforms.size + index];
          }
          setOutputAtIndex(index, sum);
        }
      }
    `;
  }
}

/**
 * `dL/dfilter` of an NHWC convolution on webgpu: `x` `[B, H, W, inC]`, `dy` `[B, H', W', outC]`; returns
 * `[kH, kW, inC, outC]`.
 */
export function conv2DBackpropFilterWebGpu(
  backend: WebGpuBackendLike,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
  plan: FilterGradientPlan = planFilterGradient(
    info.filterHeight * info.filterWidth * info.inChannels,
    info.outChannels,
    info.batchSize * info.outHeight * info.outWidth,
  ),
): tf.TensorInfo {
  const filterShape = [info.filterHeight, info.filterWidth, info.inChannels, info.outChannels];
  const geometry: ConvGeometry = {
    batch: info.batchSize,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    inChannels: info.inChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    outChannels: info.outChannels,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
  const product = backend.runWebGPUProgram(new FilterGradientGemmProgram(geometry, plan, filterShape), [x, dy], 'float32');
  if (plan.slices === 1) return product;
  try {
    return backend.runWebGPUProgram(new SumSlicesProgram(filterShape, plan.slices), [product], 'float32');
  } finally {
    backend.disposeData(product.dataId);
  }
}

function conv2DBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs as Record<string, tf.TensorInfo>;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  // NCHW (never used by sparkmim) keeps the backend's own kernel.
  if (dataFormat === 'NCHW') return runStockKernel('Conv2DBackpropFilter', args);
  assertFloat32('Conv2DBackpropFilter', 'x', x);
  assertFloat32('Conv2DBackpropFilter', 'dy', dy);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  const expectedDy = [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
  if (!tf.util.arraysEqual(dy.shape, expectedDy)) {
    throw new Error(`Conv2DBackpropFilter (@sparkmim/webgpu-kernels): expected dy of shape [${expectedDy}], got [${dy.shape}]`);
  }
  return conv2DBackpropFilterWebGpu(backend as WebGpuBackendLike, x, dy, info);
}

/** `Conv2DBackpropFilter` for webgpu (the filter gradient of `tf.conv2d`, and so of `tf.conv2dTranspose`'s input). */
export const conv2DBackpropFilterConfig: tf.KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: 'webgpu',
  kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc,
};
