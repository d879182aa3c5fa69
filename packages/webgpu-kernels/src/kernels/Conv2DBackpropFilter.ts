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
import { assertFloat32, int32Uniforms, type KernelArgs, type WebGpuBackendLike, type WebGpuProgramLike } from '../program';
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

/**
 * The split-K GEMM: writes dW (`slices` 1) or `[slices, M, N]` partial sums. Sizes are uniforms, so one
 * compiled pipeline serves every convolution (compiling is slow, seconds per shader on SwiftShader); only
 * the output's rank (whether K is split) picks a second one.
 */
class FilterGradientGemmProgram implements WebGpuProgramLike {
  outputShape: number[];
  shaderKey = 'sparkmimConv2DBackpropFilterGemm';
  dispatchLayout = { x: [0], y: [1], z: [2] };
  dispatch: [number, number, number];
  variableNames = ['x', 'dy'];
  workgroupSize: [number, number, number] = [16, 16, 1];
  uniforms = 'm : i32, n : i32, k : i32, kPerSlice : i32, filterWidth : i32, strideHeight : i32, strideWidth : i32, padTop : i32, padLeft : i32,';

  constructor(plan: FilterGradientPlan, filterShape: number[]) {
    this.outputShape = plan.slices === 1 ? filterShape : [plan.slices, plan.m, plan.n];
    this.dispatch = [Math.ceil(plan.n / TILE), Math.ceil(plan.m / TILE), plan.slices];
  }

  getUserCode(): string {
    return `
      const TILE = ${TILE};
      const TILE_K = ${TILE_K};

      // [TILE_K][TILE]: row kk holds A[mBase .. mBase + 63, k0 + kk] and B[k0 + kk, nBase .. nBase + 63].
      var<workgroup> tileA : array<f32, ${TILE_K * TILE}>;
      var<workgroup> tileB : array<f32, ${TILE_K * TILE}>;

      fn main() {
        let M = uniforms.m;
        let N = uniforms.n;
        let inHeight = uniforms.xShape[1];
        let inWidth = uniforms.xShape[2];
        let inChannels = uniforms.xShape[3];
        let outHeight = uniforms.dyShape[1];
        let outWidth = uniforms.dyShape[2];
        let tx = i32(localId.x);
        let ty = i32(localId.y);
        let thread = ty * 16 + tx;
        let nBase = i32(workgroupId.x) * TILE;
        let mBase = i32(workgroupId.y) * TILE;
        let slice = i32(workgroupId.z);
        let kBegin = slice * uniforms.kPerSlice;
        let kEnd = min(uniforms.k, kBegin + uniforms.kPerSlice);

        // Each thread stages one column of the tiles (64 consecutive channels: coalesced reads of x and dy)
        // in rows loadRow, loadRow + 4, ...; its filter tap and channel are fixed for the whole loop.
        let loadColumn = thread % TILE;
        let loadRow = thread / TILE;
        let loadM = mBase + loadColumn;
        let channel = loadM % inChannels;
        let tap = loadM / inChannels;
        let tapY = tap / uniforms.filterWidth - uniforms.padTop;
        let tapX = tap % uniforms.filterWidth - uniforms.padLeft;
        let mInRange = loadM < M;
        let loadN = nBase + loadColumn;
        let nInRange = loadN < N;

        // The (batch, y, x) of dy for each of the thread's 4 staging rows, advanced by TILE_K per step
        // instead of divided out of k each time (integer division by a uniform is dozens of instructions).
        var rowBatch : array<i32, 4>;
        var rowY : array<i32, 4>;
        var rowX : array<i32, 4>;
        for (var step = 0; step < 4; step++) {
          let kk = kBegin + loadRow + step * 4;
          rowX[step] = kk % outWidth;
          rowY[step] = (kk / outWidth) % outHeight;
          rowBatch[step] = kk / (outWidth * outHeight);
        }

        var acc : array<array<f32, 4>, 4>;
        for (var i = 0; i < 4; i++) {
          for (var j = 0; j < 4; j++) {
            acc[i][j] = 0.0;
          }
        }

        // A uniform trip count keeps the barriers in uniform control flow (WGSL's uniformity analysis
        // treats the workgroup id, copied to a private variable by the backend's header, as non-uniform);
        // the last slice's surplus steps load zeros.
        let steps = (uniforms.kPerSlice + TILE_K - 1) / TILE_K;
        for (var kStep = 0; kStep < steps; kStep++) {
          let k0 = kBegin + kStep * TILE_K;
          for (var step = 0; step < 4; step++) {
            let row = loadRow + step * 4;
            let kk = k0 + row;
            var a = 0.0;
            var b = 0.0;
            if (kk < kEnd) {
              let inY = rowY[step] * uniforms.strideHeight + tapY;
              let inX = rowX[step] * uniforms.strideWidth + tapX;
              if (mInRange && inY >= 0 && inY < inHeight && inX >= 0 && inX < inWidth) {
                a = x[((rowBatch[step] * inHeight + inY) * inWidth + inX) * inChannels + channel];
              }
              if (nInRange) {
                b = dy[kk * N + loadN];
              }
            }
            tileA[row * TILE + loadColumn] = a;
            tileB[row * TILE + loadColumn] = b;
            rowX[step] += TILE_K;
            loop {
              if (rowX[step] < outWidth) {
                break;
              }
              rowX[step] -= outWidth;
              rowY[step] += 1;
              if (rowY[step] == outHeight) {
                rowY[step] = 0;
                rowBatch[step] += 1;
              }
            }
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
  shaderKey = 'sparkmimSumSlices';
  dispatchLayout = { x: [0, 1, 2, 3] };
  dispatch: [number, number, number];
  variableNames = ['partial'];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;

  constructor(filterShape: number[]) {
    this.outputShape = filterShape;
    this.dispatch = [Math.ceil(tf.util.sizeFromShape(filterShape) / 64), 1, 1];
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          var sum = 0.0;
          for (var slice = 0; slice < uniforms.partialShape[0]; slice++) {
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
  const uniforms = int32Uniforms([
    plan.m,
    plan.n,
    plan.k,
    plan.kPerSlice,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
    info.padInfo.top,
    info.padInfo.left,
  ]);
  const product = backend.runWebGPUProgram(new FilterGradientGemmProgram(plan, filterShape), [x, dy], 'float32', uniforms);
  if (plan.slices === 1) return product;
  try {
    return backend.runWebGPUProgram(new SumSlicesProgram(filterShape), [product], 'float32');
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
