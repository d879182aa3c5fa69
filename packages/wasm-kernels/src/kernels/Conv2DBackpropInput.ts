// dL/dx of conv2d (and the forward pass of conv2dTranspose) as one forward convolution.
//
// Why: tfjs-backend-wasm's own Conv2DBackpropInput is a plain C++ loop, 1.2-1.8 GFLOP/s in issue 17's
// probe against 10-13 for XNNPACK's forward convolution. The input gradient is a stride-1 forward
// convolution of dy (spread by the stride, padded by k - 1 - pad) with the filter flipped in space and
// its channel axes swapped.
import * as tf from '@tensorflow/tfjs-core';
import { spreadByStride, withScope, type KernelScope } from '../compose';

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
  const spread = spreadByStride(scope, dy, strides[0], strides[1]);
  // dx[Y] = sum over taps i of spread[Y + top - i] * W[i]: a correlation with the flipped filter whose
  // input starts k - 1 - top rows before spread; the bottom/right amounts complete H + k - 1 rows.
  const padTop = kernelH - 1 - sides.top;
  const padLeft = kernelW - 1 - sides.left;
  const padBottom = height + kernelH - 1 - padTop - spread.shape[1];
  const padRight = width + kernelW - 1 - padLeft - spread.shape[2];
  const padded = scope.pad(spread, [[0, 0], [padTop, padBottom], [padLeft, padRight], [0, 0]]);
  const flipped = scope.run('Reverse', { x: filter }, { dims: [0, 1] });
  const convAttrs = { strides: [1, 1], pad: 'valid', dilations: [1, 1], dataFormat: 'NHWC', dimRoundingMode: undefined } as unknown as tf.NamedAttrMap;
  if (!depthwise) {
    const swapped = scope.transpose(flipped, [0, 1, 3, 2]);
    return scope.run('Conv2D', { x: padded, filter: swapped }, convAttrs);
  }
  const multiplier = filterOut;
  const perChannel = scope.reshape(flipped, [kernelH, kernelW, filterIn * multiplier, 1]);
  const spreadOut = scope.run('DepthwiseConv2dNative', { x: padded, filter: perChannel }, convAttrs);
  if (multiplier === 1) return spreadOut;
  // Output channel c * m + k came from input channel c: sum the m of them.
  return scope.run('Sum', { x: scope.reshape(spreadOut, [batch, height, width, inC, multiplier]) }, { axis: [4], keepDims: false });
}

function conv2DBackpropInput({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { dy, filter } = inputs as Record<string, tf.TensorInfo>;
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as tf.Conv2DBackpropInputAttrs;
  if (dataFormat === 'NCHW') throw new Error('Conv2DBackpropInput (@sparkmim/wasm-kernels): expected dataFormat NHWC, got NCHW');
  const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape as [number, number, number, number], strides, 1, pad, dimRoundingMode, false, 'channelsLast');
  return withScope(backend, (scope) => inputGradientByConv(scope, dy, filter, inputShape, [info.strideHeight, info.strideWidth], info.padInfo));
}

/** `Conv2DBackpropInput` for wasm: the input gradient of `tf.conv2d` and the forward pass of `tf.conv2dTranspose`. */
export const conv2DBackpropInputConfig: tf.KernelConfig = {
  kernelName: 'Conv2DBackpropInput',
  backendName: 'wasm',
  kernelFunc: conv2DBackpropInput as unknown as tf.KernelFunc,
};

function depthwiseConv2dNativeBackpropInput({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { dy, filter } = inputs as Record<string, tf.TensorInfo>;
  const { strides, pad, dilations, dimRoundingMode, inputShape } = attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const [dilationH, dilationW] = typeof dilations === 'number' ? [dilations, dilations] : dilations;
  if (dilationH !== 1 || dilationW !== 1) {
    throw new Error(`DepthwiseConv2dNativeBackpropInput (@sparkmim/wasm-kernels): expected dilations 1, got [${dilationH}, ${dilationW}]`);
  }
  const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape as [number, number, number, number], strides, 1, pad, dimRoundingMode, true);
  return withScope(backend, (scope) => inputGradientByConv(scope, dy, filter, inputShape, [info.strideHeight, info.strideWidth], info.padInfo, true));
}

/** `DepthwiseConv2dNativeBackpropInput` for wasm (missing in tfjs-backend-wasm 4.22). */
export const depthwiseConv2dNativeBackpropInputConfig: tf.KernelConfig = {
  kernelName: 'DepthwiseConv2dNativeBackpropInput',
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dNativeBackpropInput as unknown as tf.KernelFunc,
};
