// dL/dx of conv2d (and the forward pass of conv2dTranspose) as one forward convolution.
//
// Why: tfjs-backend-wasm's own Conv2DBackpropInput is a plain C++ loop, 1.2-1.8 GFLOP/s in issue 17's
// probe against 10-13 for XNNPACK's forward convolution. The input gradient is a stride-1 forward
// convolution of dy (spread by the stride, padded by k - 1 - pad) with the filter flipped in space and
// its channel axes swapped.
import * as tf from '@tensorflow/tfjs-core';
import { assertUndilated, type KernelArgs, type KernelScope, spreadByStride, type WasmBackendLike, withScope } from '../compose';
import { transposeMatrix } from './Transpose';

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
  if (!depthwise) {
    const flippedSwapped = swappedTaps(scope, filter, reversedTaps(kernelH), reversedTaps(kernelW));
    return scope.run('Conv2D', { x: padded, filter: flippedSwapped }, VALID_CONV_ATTRS);
  }
  const flipped = scope.run('Reverse', { x: filter }, { dims: [0, 1] });
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
  const [kernelH, kernelW] = filter.shape;
  const [batch, height, width, inC] = inputShape;
  const [strideH, strideW] = strides;
  const [, dyH, dyW] = dy.shape;
  const tapsH = Math.ceil(kernelH / strideH);
  const tapsW = Math.ceil(kernelW / strideW);
  const rows = Math.ceil(height / strideH);
  const cols = Math.ceil(width / strideW);
  // Phase taps i = firstTap + s * t, flipped (t runs backwards); taps past the kernel's end are zeros, so
  // that every phase has tapsH x tapsW taps.
  const phaseTaps = (firstTap: number, stride: number, taps: number, kernel: number) =>
    Array.from({ length: taps }, (_, t) => {
      const tap = firstTap + stride * (taps - 1 - t);
      return tap < kernel ? tap : -1;
    });
  const phases: tf.TensorInfo[] = [];
  for (let a = 0; a < strideH; a++) {
    const firstTapH = (a + sides.top) % strideH;
    for (let b = 0; b < strideW; b++) {
      const firstTapW = (b + sides.left) % strideW;
      const offsetH = Math.floor((a + sides.top) / strideH);
      const offsetW = Math.floor((b + sides.left) / strideW);
      const convFilter = swappedTaps(scope, filter, phaseTaps(firstTapH, strideH, tapsH, kernelH), phaseTaps(firstTapW, strideW, tapsW, kernelW));
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

/** Taps `k - 1, ..., 0`: the spatial flip of a `k`-tap axis. */
function reversedTaps(kernel: number): number[] {
  return Array.from({ length: kernel }, (_, t) => kernel - 1 - t);
}

/**
 * A filter `[rowTaps.length, colTaps.length, outC, inC]` whose tap `(t, u)` is `filter[rowTaps[t],
 * colTaps[u]]` (`[inC, outC]`) with its channel axes swapped, or zeros where either index is -1: the flipped
 * (sub-)filter of the forward convolution an input gradient becomes, in one pass over the wasm heap.
 * Why: built from the backend's Reverse, Slice and Transpose kernels, the decoder's 4x4 768-channel
 * upsampling filter took about 0.7 s per call (Reverse alone 0.4 s, a generic per-value loop), more than
 * the convolutions themselves.
 */
function swappedTaps(scope: KernelScope, filter: tf.TensorInfo, rowTaps: number[], colTaps: number[]): tf.TensorInfo {
  const [, kernelW, inC, outC] = filter.shape;
  const backend = scope.backend;
  const out = scope.track(backend.makeOutput([rowTaps.length, colTaps.length, outC, inC], 'float32'));
  // Views taken after makeOutput: allocating can grow the wasm memory, which detaches older views.
  const source = backend.typedArrayFromHeap(filter) as Float32Array;
  const target = backend.typedArrayFromHeap(out) as Float32Array;
  const tapSize = inC * outC;
  for (let t = 0; t < rowTaps.length; t++) {
    for (let u = 0; u < colTaps.length; u++) {
      const to = (t * colTaps.length + u) * tapSize;
      if (rowTaps[t] < 0 || colTaps[u] < 0) {
        target.fill(0, to, to + tapSize);
        continue;
      }
      transposeMatrix(source, (rowTaps[t] * kernelW + colTaps[u]) * tapSize, target, to, inC, outC);
    }
  }
  return out;
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
