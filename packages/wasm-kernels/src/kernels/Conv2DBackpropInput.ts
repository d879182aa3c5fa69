// dL/dx of conv2d (and the forward pass of conv2dTranspose) as one forward convolution.
//
// Why: tfjs-backend-wasm's own Conv2DBackpropInput is a plain C++ loop, 1.2-1.8 GFLOP/s in issue 17's
// probe against 10-13 for XNNPACK's forward convolution. The input gradient is a stride-1 forward
// convolution of dy (spread by the stride, padded by k - 1 - pad) with the filter flipped in space and
// its channel axes swapped.
import * as tf from '@tensorflow/tfjs-core';
import { assertUndilated, type KernelArgs, type KernelScope, spreadByStride, type WasmBackendLike, withScope } from '../compose';

// A stride-1, undilated, unpadded NHWC forward convolution: every input gradient here becomes one.
const VALID_CONV_ATTRS = {
  strides: [1, 1],
  pad: 'valid',
  dilations: [1, 1],
  dataFormat: 'NHWC',
  dimRoundingMode: undefined,
} as unknown as tf.NamedAttrMap;

/**
 * `dx` of a convolution: `[B, H, W, inC]` from `dy` `[B, H', W', outC]` and the filter `[kH, kW, inC, outC]`
 * (`depthwise`: `[kH, kW, C, multiplier]` and dy `[B, H', W', C * multiplier]`).
 */
export function inputGradientByConv(
  scope: KernelScope,
  dy: tf.TensorInfo,
  filter: tf.TensorInfo,
  inputShape: [number, number, number, number],
  strides: [number, number],
  sides: { top: number; left: number },
  depthwise = false,
): tf.TensorInfo {
  const [kernelH, kernelW, filterIn, filterOut] = filter.shape;
  const [batch, height, width, inC] = inputShape;
  if (!depthwise && (strides[0] > 1 || strides[1] > 1) && kernelH >= strides[0] && kernelW >= strides[1]) {
    return inputGradientBySubPixels(scope, dy, filter, inputShape, strides, sides);
  }
  const spread = spreadByStride(scope, dy, strides[0], strides[1]);
  // dx[Y] = sum over taps i of spread[Y + top - i] * W[i]: a correlation with the flipped filter whose
  // input starts k - 1 - top rows before spread; the bottom/right amounts complete H + k - 1 rows.
  const padTop = kernelH - 1 - sides.top;
  const padLeft = kernelW - 1 - sides.left;
  const padBottom = height + kernelH - 1 - padTop - spread.shape[1];
  const padRight = width + kernelW - 1 - padLeft - spread.shape[2];
  const padded = scope.pad(spread, [
    [0, 0],
    [padTop, padBottom],
    [padLeft, padRight],
    [0, 0],
  ]);
  const flipped = scope.run('Reverse', { x: filter }, { dims: [0, 1] });
  if (!depthwise) {
    const swapped = scope.transpose(flipped, [0, 1, 3, 2]);
    return scope.run('Conv2D', { x: padded, filter: swapped }, VALID_CONV_ATTRS);
  }
  const multiplier = filterOut;
  const perChannel = scope.reshape(flipped, [kernelH, kernelW, filterIn * multiplier, 1]);
  const spreadOut = scope.run('DepthwiseConv2dNative', { x: padded, filter: perChannel }, VALID_CONV_ATTRS);
  if (multiplier === 1) return spreadOut;
  // Output channel c * m + k came from input channel c: sum the m of them.
  return scope.run('Sum', { x: scope.reshape(spreadOut, [batch, height, width, inC, multiplier]) }, { axis: [4], keepDims: false });
}

/**
 * The strided case without the zeros: output rows `Y = sH * q + a` (phase `a`) receive only the taps
 * `i = (a + top) mod sH + sH * t`, so each of the `sH * sW` phases is a stride-1 forward convolution of dy
 * with a `ceil(kH / sH) x ceil(kW / sW)` sub-filter, and the phases interleave into dx. Spreading dy with
 * zeros instead would multiply by zeros `sH * sW - 1` times out of `sH * sW` (the decoder's 4x4 stride-2
 * upsampling, ConvNeXt's 2x2 stride-2 downsampling).
 */
function inputGradientBySubPixels(
  scope: KernelScope,
  dy: tf.TensorInfo,
  filter: tf.TensorInfo,
  inputShape: [number, number, number, number],
  strides: [number, number],
  sides: { top: number; left: number },
): tf.TensorInfo {
  const [kernelH, kernelW, inC, outC] = filter.shape;
  const [batch, height, width] = inputShape;
  const [strideH, strideW] = strides;
  const [, dyH, dyW] = dy.shape;
  const tapsH = Math.ceil(kernelH / strideH);
  const tapsW = Math.ceil(kernelW / strideW);
  const rows = Math.ceil(height / strideH);
  const cols = Math.ceil(width / strideW);
  // Zero taps past the kernel's end, so that every phase has tapsH x tapsW taps.
  const paddedFilter = scope.pad(filter, [
    [0, tapsH * strideH - kernelH],
    [0, tapsW * strideW - kernelW],
    [0, 0],
    [0, 0],
  ]);
  // Rows i = firstTapH + sH * t as [tapsH, sH, ...] sliced at the phase: slices of rank <= 4 only (the
  // backend's higher-rank slices and transposes fall back to a slow generic loop).
  const byRow = scope.reshape(paddedFilter, [tapsH, strideH, tapsW * strideW * inC * outC]);
  const phases: tf.TensorInfo[] = [];
  for (let a = 0; a < strideH; a++) {
    const firstTapH = (a + sides.top) % strideH;
    const rowTaps = scope.run('Slice', { x: byRow }, { begin: [0, firstTapH, 0], size: [tapsH, 1, tapsW * strideW * inC * outC] });
    const byColumn = scope.reshape(rowTaps, [tapsH, tapsW, strideW, inC * outC]);
    for (let b = 0; b < strideW; b++) {
      const firstTapW = (b + sides.left) % strideW;
      const offsetH = Math.floor((a + sides.top) / strideH);
      const offsetW = Math.floor((b + sides.left) / strideW);
      const taps = scope.run('Slice', { x: byColumn }, { begin: [0, 0, firstTapW, 0], size: [tapsH, tapsW, 1, inC * outC] });
      const subFilter = scope.reshape(taps, [tapsH, tapsW, inC, outC]);
      const convFilter = scope.transpose(scope.run('Reverse', { x: subFilter }, { dims: [0, 1] }), [0, 1, 3, 2]);
      // phase[q] = sum over t of dy[q + offset - t] * W[firstTap + s * t]: dy padded by taps - 1 - offset.
      const padTop = tapsH - 1 - offsetH;
      const padLeft = tapsW - 1 - offsetW;
      const padded = scope.pad(dy, [
        [0, 0],
        [padTop, rows + tapsH - 1 - padTop - dyH],
        [padLeft, cols + tapsW - 1 - padLeft - dyW],
        [0, 0],
      ]);
      phases.push(scope.run('Conv2D', { x: padded, filter: convFilter }, VALID_CONV_ATTRS));
    }
  }
  return interleavePhases(scope.backend, phases, [batch, height, width, inC], strides, rows, cols);
}

/**
 * dx from its phases (`phases[a * sW + b]` `[B, rows, cols, C]` holds dx[:, a::sH, b::sW]): one pass over
 * the wasm heap (the equivalent rank-6 transpose runs the backend's slow generic loop).
 */
function interleavePhases(
  backend: WasmBackendLike,
  phases: tf.TensorInfo[],
  shape: [number, number, number, number],
  [strideH, strideW]: [number, number],
  rows: number,
  cols: number,
): tf.TensorInfo {
  const [batch, height, width, channels] = shape;
  const out = backend.makeOutput(shape, 'float32');
  const outValues = backend.typedArrayFromHeap(out) as Float32Array;
  for (let a = 0; a < strideH; a++) {
    for (let b = 0; b < strideW; b++) {
      const values = backend.typedArrayFromHeap(phases[a * strideW + b]) as Float32Array;
      for (let n = 0; n < batch; n++) {
        for (let r = 0; r < rows; r++) {
          const y = r * strideH + a;
          if (y >= height) break;
          for (let c = 0; c < cols; c++) {
            const x = c * strideW + b;
            if (x >= width) break;
            const from = ((n * rows + r) * cols + c) * channels;
            const to = ((n * height + y) * width + x) * channels;
            for (let k = 0; k < channels; k++) outValues[to + k] = values[from + k];
          }
        }
      }
    }
  }
  return out;
}

function conv2DBackpropInput({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { dy, filter } = inputs as Record<string, tf.TensorInfo>;
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as tf.Conv2DBackpropInputAttrs;
  if (dataFormat === 'NCHW') throw new Error('Conv2DBackpropInput (@sparkmim/wasm-kernels): expected dataFormat NHWC, got NCHW');
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
  return withScope(backend, (scope) => inputGradientByConv(scope, dy, filter, inputShape, [info.strideHeight, info.strideWidth], info.padInfo));
}

/** `Conv2DBackpropInput` for wasm: the input gradient of `tf.conv2d` and the forward pass of `tf.conv2dTranspose`. */
export const conv2DBackpropInputConfig: tf.KernelConfig = {
  kernelName: 'Conv2DBackpropInput',
  backendName: 'wasm',
  kernelFunc: conv2DBackpropInput as unknown as tf.KernelFunc,
};

function depthwiseConv2dNativeBackpropInput({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { dy, filter } = inputs as Record<string, tf.TensorInfo>;
  const { strides, pad, dilations, dimRoundingMode, inputShape } = attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  assertUndilated('DepthwiseConv2dNativeBackpropInput', dilations);
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    true,
  );
  return withScope(backend, (scope) => inputGradientByConv(scope, dy, filter, inputShape, [info.strideHeight, info.strideWidth], info.padInfo, true));
}

/** `DepthwiseConv2dNativeBackpropInput` for wasm (missing in tfjs-backend-wasm 4.22). */
export const depthwiseConv2dNativeBackpropInputConfig: tf.KernelConfig = {
  kernelName: 'DepthwiseConv2dNativeBackpropInput',
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dNativeBackpropInput as unknown as tf.KernelFunc,
};
