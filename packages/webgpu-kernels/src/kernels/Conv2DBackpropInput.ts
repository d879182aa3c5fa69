// dL/dx of conv2d on webgpu.
//
// tfjs-backend-webgpu 4.22 runs its naive Conv2DDerInputProgram by default (one thread per input value,
// looping over the filter and output channels): 63 ms on an H200 for a 3x3 64->64 convolution at batch 32
// on 56x56, three times the forward convolution. Two replacements:
// - 'conv' (stride 1 only): the input gradient is itself a forward convolution, of dy with the filter
//   flipped in space and with in/out channels swapped, padded by (kernel - 1 - forward padding) per side;
//   the backend's own Conv2D runs it.
// - 'gemm' (any stride; the strided ones always): an implicit GEMM in WGSL, as the filter gradient's. A
//   strided convolution reaches input row r only through the taps kh with (r + padTop - kh) divisible by
//   sH, so dx is computed per stride phase (r mod sH, q mod sW), each a GEMM over its own taps only (a
//   quarter of the work of one GEMM over all taps at stride 2):
//     dx[m, n] = sum over k of A[m, k] * B[k, n],  m = (b, i, j) for r = pY + i*sH, q = pX + j*sW,  n = c,
//     k = (tY, tX, o) for kh = kh0 + tY*sH, kw = kw0 + tX*sW  (kh0 = (pY + padTop) mod sH, likewise kw0)
//     A[m, k] = dy[b, i - tY + (pY + padTop - kh0) / sH, j - tX + (pX + padLeft - kw0) / sW, o] (0 outside
//     dy),  B[k, n] = filter[kh, kw, c, o]
//   in 64x64 output tiles (M = batch * H * W / (sH * sW) gives plenty of them, so K is not split).
// Which one stride 1 takes is the tfjs flag SPARKMIM_WEBGPU_INPUT_GRADIENT ('conv', the default, or 'gemm'),
// registered by registerWebGpuTrainingKernels, so that a GPU benchmark can compare them.
import * as tf from '@tensorflow/tfjs-core';
import { assertFloat32, int32Uniforms, type KernelArgs, type WebGpuBackendLike, type WebGpuProgramLike } from '../program';
import { runStockKernel } from '../stock';

/** `[kH, kW, inC, outC]` -> `[kH, kW, outC, inC]`, flipped in both spatial axes. */
class FlipTransposeFilterProgram implements WebGpuProgramLike {
  outputShape: number[];
  shaderKey = 'sparkmimFlipTransposeFilter';
  dispatchLayout = { x: [0, 1, 2, 3] };
  dispatch: [number, number, number];
  variableNames = ['weights'];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;

  constructor(filterShape: number[]) {
    const [kernelH, kernelW, inC, outC] = filterShape;
    this.outputShape = [kernelH, kernelW, outC, inC];
    this.dispatch = [Math.ceil(tf.util.sizeFromShape(filterShape) / 64), 1, 1];
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          let coords = getCoordsFromIndex(index);
          let source = vec4<i32>(uniforms.outShape[0] - 1 - coords[0], uniforms.outShape[1] - 1 - coords[1], coords[3], coords[2]);
          setOutputAtIndex(index, weights[getIndexFromCoords4D(source, uniforms.weightsShape)]);
        }
      }
    `;
  }
}

/** The tfjs flag choosing the stride-1 input gradient's method (see the file comment). */
export const INPUT_GRADIENT_FLAG = 'SPARKMIM_WEBGPU_INPUT_GRADIENT';
export const INPUT_GRADIENT_METHODS = ['conv', 'gemm'] as const;

// tfjs has no public "is this flag registered" (registering twice warns, reading an unregistered flag throws).
function flagRegistered(): boolean {
  return (tf.env() as unknown as { flagRegistry: Record<string, unknown> }).flagRegistry[INPUT_GRADIENT_FLAG] !== undefined;
}

/** Registers {@link INPUT_GRADIENT_FLAG} (default 'conv') unless it is registered. */
export function registerInputGradientFlag(): void {
  if (!flagRegistered()) tf.env().registerFlag(INPUT_GRADIENT_FLAG, () => 'conv');
}

function strideOneMethod(): (typeof INPUT_GRADIENT_METHODS)[number] {
  if (!flagRegistered()) return 'conv';
  const method = tf.env().get(INPUT_GRADIENT_FLAG) as string;
  if (!(INPUT_GRADIENT_METHODS as readonly string[]).includes(method)) {
    throw new Error(`${INPUT_GRADIENT_FLAG}: expected ${INPUT_GRADIENT_METHODS.join(' or ')}, got '${method}'`);
  }
  return method as (typeof INPUT_GRADIENT_METHODS)[number];
}

/** Output tile edge per workgroup (16x16 threads, 4x4 outputs each) and K values staged per step. */
const TILE = 64;
const TILE_K = 16;
/** WebGPU's default (and tfjs-backend-webgpu's requested) maxComputeWorkgroupsPerDimension. */
const MAX_WORKGROUPS_PER_DIMENSION = 65535;

/**
 * The implicit GEMM of the input gradient per stride phase (see the file comment); writes dx
 * `[B, H, W, inC]`. Sizes are uniforms (one pipeline per stride: compiling is slow, seconds per shader on
 * SwiftShader); the strides are constants.
 */
class InputGradientGemmProgram implements WebGpuProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [3], y: [0, 1, 2] };
  dispatch: [number, number, number];
  variableNames = ['dy', 'weights'];
  workgroupSize: [number, number, number] = [16, 16, 1];
  uniforms = 'padTop : i32, padLeft : i32, columnTiles : i32,';
  /** Workgroups along x per row of tiles: more than one when the row tiles exceed a dispatch dimension. */
  readonly rowTilesPerX: number;

  constructor(
    private readonly info: tf.backend_util.Conv2DInfo,
    maxWorkgroupsPerDimension: number,
  ) {
    this.outputShape = info.inShape;
    const { strideHeight, strideWidth } = info;
    // Phase (0, 0) has the most rows; the other phases' workgroups beyond their own rows do nothing.
    const phaseRows = info.batchSize * Math.ceil(info.inHeight / strideHeight) * Math.ceil(info.inWidth / strideWidth);
    // WebGPU allows 65535 workgroups per dimension; a large batch of large maps (32 x 224 x 224 is 25088
    // row tiles at stride 1, 128 x 224 x 224 over 100k) folds its row tiles into x as well.
    const rowTiles = Math.ceil(phaseRows / TILE);
    const columnTiles = Math.ceil(info.inChannels / TILE);
    this.rowTilesPerX = Math.ceil(rowTiles / maxWorkgroupsPerDimension);
    this.dispatch = [columnTiles * this.rowTilesPerX, Math.ceil(rowTiles / this.rowTilesPerX), strideHeight * strideWidth];
    this.shaderKey = `sparkmimConv2DBackpropInputGemm_${strideHeight}_${strideWidth}`;
  }

  getUserCode(): string {
    return `
      const STRIDE_H = ${this.info.strideHeight};
      const STRIDE_W = ${this.info.strideWidth};
      const TILE = ${TILE};
      const TILE_K = ${TILE_K};
      // One padding column keeps the transposed stores (16 threads along k, one m each) off a single bank.
      const ROW = ${TILE + 1};

      // [TILE_K][ROW]: row kk holds A[mBase .. mBase + 63, k0 + kk] and B[k0 + kk, nBase .. nBase + 63].
      var<workgroup> tileA : array<f32, ${TILE_K * (TILE + 1)}>;
      var<workgroup> tileB : array<f32, ${TILE_K * (TILE + 1)}>;
      // This phase's K, shared so that the loop over it is uniform to WGSL's analysis (workgroupUniformLoad).
      var<workgroup> phaseKShared : i32;

      fn main() {
        let batchSize = uniforms.outShape[0];
        let inHeight = uniforms.outShape[1];
        let inWidth = uniforms.outShape[2];
        let N = uniforms.outShape[3];
        let outHeight = uniforms.dyShape[1];
        let outWidth = uniforms.dyShape[2];
        let outChannels = uniforms.dyShape[3];
        let filterHeight = uniforms.weightsShape[0];
        let filterWidth = uniforms.weightsShape[1];
        let tx = i32(localId.x);
        let ty = i32(localId.y);
        let thread = ty * 16 + tx;
        let nBase = (i32(workgroupId.x) % uniforms.columnTiles) * TILE;
        let rowTilesPerX = i32(numWorkgroups.x) / uniforms.columnTiles;
        let mBase = (i32(workgroupId.y) * rowTilesPerX + i32(workgroupId.x) / uniforms.columnTiles) * TILE;

        // The phase: rows r = phaseY + i * STRIDE_H, columns q = phaseX + j * STRIDE_W, and its taps
        // kh = tapY0 + tY * STRIDE_H (tY < tapsY), kw = tapX0 + tX * STRIDE_W (tX < tapsX).
        let phaseY = i32(workgroupId.z) / STRIDE_W;
        let phaseX = i32(workgroupId.z) % STRIDE_W;
        let phaseHeight = (inHeight - phaseY + STRIDE_H - 1) / STRIDE_H;
        let phaseWidth = (inWidth - phaseX + STRIDE_W - 1) / STRIDE_W;
        let M = batchSize * phaseHeight * phaseWidth;
        let tapY0 = (phaseY + uniforms.padTop) % STRIDE_H;
        let tapX0 = (phaseX + uniforms.padLeft) % STRIDE_W;
        let tapsY = max(0, (filterHeight - tapY0 + STRIDE_H - 1) / STRIDE_H);
        let tapsX = max(0, (filterWidth - tapX0 + STRIDE_W - 1) / STRIDE_W);
        let dyY0 = (phaseY + uniforms.padTop - tapY0) / STRIDE_H;
        let dyX0 = (phaseX + uniforms.padLeft - tapX0) / STRIDE_W;
        if (thread == 0) {
          phaseKShared = tapsY * tapsX * outChannels;
        }
        let K = workgroupUniformLoad(&phaseKShared);

        // Staging: 16 threads along k (consecutive output channels of dy and of the filter, coalesced), each
        // for the rows (or columns) loadIndex, loadIndex + 16, ... of the tile, fixed for the whole loop.
        let loadK = thread % TILE_K;
        let loadIndex = thread / TILE_K;
        var rowBatch : array<i32, 4>;
        var rowY : array<i32, 4>;
        var rowX : array<i32, 4>;
        for (var step = 0; step < 4; step++) {
          let row = mBase + loadIndex + step * 16;
          rowX[step] = row % phaseWidth + dyX0;
          rowY[step] = (row / phaseWidth) % phaseHeight + dyY0;
          rowBatch[step] = select(-1, row / (phaseWidth * phaseHeight), row < M);
        }

        var acc : array<array<f32, 4>, 4>;
        for (var i = 0; i < 4; i++) {
          for (var j = 0; j < 4; j++) {
            acc[i][j] = 0.0;
          }
        }

        for (var k0 = 0; k0 < K; k0 += TILE_K) {
          let kk = k0 + loadK;
          let kInRange = kk < K;
          let tap = kk / outChannels;
          let outChannel = kk - tap * outChannels;
          let tapRow = tap / max(tapsX, 1);
          let tapColumn = tap - tapRow * tapsX;
          let filterTap = (tapY0 + tapRow * STRIDE_H) * filterWidth + tapX0 + tapColumn * STRIDE_W;
          for (var step = 0; step < 4; step++) {
            var a = 0.0;
            let outY = rowY[step] - tapRow;
            let outX = rowX[step] - tapColumn;
            if (kInRange && rowBatch[step] >= 0 && outY >= 0 && outX >= 0 && outY < outHeight && outX < outWidth) {
              a = dy[((rowBatch[step] * outHeight + outY) * outWidth + outX) * outChannels + outChannel];
            }
            tileA[loadK * ROW + loadIndex + step * 16] = a;
            let column = nBase + loadIndex + step * 16;
            var b = 0.0;
            if (kInRange && column < N) {
              b = weights[(filterTap * N + column) * outChannels + outChannel];
            }
            tileB[loadK * ROW + loadIndex + step * 16] = b;
          }
          workgroupBarrier();
          for (var kStep = 0; kStep < TILE_K; kStep++) {
            var aValues : array<f32, 4>;
            var bValues : array<f32, 4>;
            for (var i = 0; i < 4; i++) {
              aValues[i] = tileA[kStep * ROW + ty + 16 * i];
              bValues[i] = tileB[kStep * ROW + tx + 16 * i];
            }
            for (var i = 0; i < 4; i++) {
              for (var j = 0; j < 4; j++) {
                acc[i][j] = fma(aValues[i], bValues[j], acc[i][j]);
              }
            }
          }
          workgroupBarrier();
        }

        for (var i = 0; i < 4; i++) {
          let row = mBase + ty + 16 * i;
          if (row < M) {
            let batch = row / (phaseWidth * phaseHeight);
            let inY = phaseY + ((row / phaseWidth) % phaseHeight) * STRIDE_H;
            let inX = phaseX + (row % phaseWidth) * STRIDE_W;
            let rowOffset = ((batch * inHeight + inY) * inWidth + inX) * N;
            for (var j = 0; j < 4; j++) {
              let column = nBase + tx + 16 * j;
              if (column < N) {
                result[rowOffset + column] = acc[i][j];
              }
            }
          }
        }
      }
    `;
  }
}

/**
 * `dL/dx` of an NHWC convolution on webgpu by the phase GEMM: `dy` `[B, H', W', outC]`, `filter`
 * `[kH, kW, inC, outC]`; returns `[B, H, W, inC]`. `maxWorkgroupsPerDimension` is WebGPU's limit (lower
 * only to test the folding of row tiles into x).
 */
export function conv2DBackpropInputGemm(
  backend: WebGpuBackendLike,
  dy: tf.TensorInfo,
  filter: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
  maxWorkgroupsPerDimension = MAX_WORKGROUPS_PER_DIMENSION,
): tf.TensorInfo {
  const columnTiles = Math.ceil(info.inChannels / TILE);
  const uniforms = int32Uniforms([info.padInfo.top, info.padInfo.left, columnTiles]);
  return backend.runWebGPUProgram(new InputGradientGemmProgram(info, maxWorkgroupsPerDimension), [dy, filter], 'float32', uniforms);
}

function conv2DBackpropInput(args: KernelArgs): tf.TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs as Record<string, tf.TensorInfo>;
  const { inputShape, strides, pad, dataFormat, dimRoundingMode } = attrs as unknown as tf.Conv2DBackpropInputAttrs;
  if (dataFormat === 'NCHW') return runStockKernel('Conv2DBackpropInput', args);
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  assertFloat32('Conv2DBackpropInput', 'dy', dy);
  assertFloat32('Conv2DBackpropInput', 'filter', filter);
  const expectedDy = [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
  if (!tf.util.arraysEqual(dy.shape, expectedDy)) {
    throw new Error(`Conv2DBackpropInput (@sparkmim/webgpu-kernels): expected dy of shape [${expectedDy}], got [${dy.shape}]`);
  }
  const { top, bottom, left, right } = info.padInfo;
  const sides = [info.filterHeight - 1 - top, info.filterHeight - 1 - bottom, info.filterWidth - 1 - left, info.filterWidth - 1 - right];
  // The 'conv' rewrite needs stride 1 and padding no wider than the kernel (else its own padding would be
  // negative); everything else takes the GEMM.
  const strideOne = info.strideHeight === 1 && info.strideWidth === 1;
  if (!strideOne || sides.some((side) => side < 0) || strideOneMethod() === 'gemm') {
    return conv2DBackpropInputGemm(backend as WebGpuBackendLike, dy, filter, info);
  }
  const conv2d = tf.getKernel('Conv2D', 'webgpu');
  if (!conv2d) throw new Error("Conv2DBackpropInput (@sparkmim/webgpu-kernels): the webgpu backend has no 'Conv2D' kernel");
  const webgpu = backend as WebGpuBackendLike;
  const flipped = webgpu.runWebGPUProgram(new FlipTransposeFilterProgram(filter.shape), [filter], 'float32');
  try {
    const convAttrs = {
      strides: [1, 1],
      pad: [
        [0, 0],
        [sides[0], sides[1]],
        [sides[2], sides[3]],
        [0, 0],
      ],
      dataFormat: 'NHWC',
      dilations: [1, 1],
      dimRoundingMode: undefined,
    } as unknown as tf.NamedAttrMap;
    return conv2d.kernelFunc({ inputs: { x: dy, filter: flipped }, backend, attrs: convAttrs }) as tf.TensorInfo;
  } finally {
    webgpu.disposeData(flipped.dataId);
  }
}

/** `Conv2DBackpropInput` for webgpu (the input gradient of `tf.conv2d`; `tf.conv2dTranspose`'s forward). */
export const conv2DBackpropInputConfig: tf.KernelConfig = {
  kernelName: 'Conv2DBackpropInput',
  backendName: 'webgpu',
  kernelFunc: conv2DBackpropInput as unknown as tf.KernelFunc,
};
