// dL/dfilter of depthwiseConv2d, which tfjs-backend-wasm 4.22 does not have: per tap, the input seen
// through that tap times dy, summed over batch and positions (one multiply and one reduction per tap:
// a depthwise filter has few taps and channels, so this is memory-bound whichever way it is laid out).
// Channels first, so that each tap is a plain slice and each reduction runs over contiguous memory.
import * as tf from '@tensorflow/tfjs-core';
import { assertUndilated, withScope, type KernelArgs } from '../compose';
import { byStridePhase } from './Conv2DBackpropFilter';

function depthwiseConv2dNativeBackpropFilter({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { x, dy } = inputs as Record<string, tf.TensorInfo>;
  const { strides, pad, dilations, dimRoundingMode, filterShape } = attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  assertUndilated('DepthwiseConv2dNativeBackpropFilter', dilations);
  const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode, true);
  const [kernelH, kernelW, channels, multiplier] = filterShape;
  const [batch, outH, outW] = dy.shape;
  return withScope(backend, (scope) => {
    const { top, bottom, left, right } = info.padInfo;
    const padded = scope.pad(x, [
      [0, 0],
      [top, bottom],
      [left, right],
      [0, 0],
    ]);
    const phases = byStridePhase(scope, padded, info.strideHeight, info.strideWidth);
    const positions = batch * outH * outW;
    // dy channel c * m + k as [C, m, positions], to meet each tap's [C, 1, positions].
    const dyByChannel = scope.reshape(scope.transpose(scope.reshape(dy, [positions, channels, multiplier]), [1, 2, 0]), [
      channels,
      multiplier,
      positions,
    ]);
    const taps: tf.TensorInfo[] = [];
    for (let i = 0; i < kernelH; i++) {
      for (let j = 0; j < kernelW; j++) {
        const phase = (i % info.strideHeight) * info.strideWidth + (j % info.strideWidth);
        const begin = [phase * channels, 0, Math.floor(i / info.strideHeight), Math.floor(j / info.strideWidth)];
        const seen = scope.run('Slice', { x: phases }, { begin, size: [channels, batch, outH, outW] });
        const product = scope.run('Multiply', { a: scope.reshape(seen, [channels, 1, positions]), b: dyByChannel });
        taps.push(scope.run('Sum', { x: product }, { axis: [2], keepDims: false }));
      }
    }
    // taps[t] is [C, m]; stacked [kH * kW, C, m] is the filter's row-major order.
    const stacked =
      taps.length === 1
        ? taps[0]
        : scope.run('Concat', taps.map((tap) => scope.reshape(tap, [1, channels, multiplier])) as unknown as tf.NamedTensorInfoMap, { axis: 0 });
    return scope.reshape(stacked, filterShape);
  });
}

/** `DepthwiseConv2dNativeBackpropFilter` for wasm (missing in tfjs-backend-wasm 4.22). */
export const depthwiseConv2dNativeBackpropFilterConfig: tf.KernelConfig = {
  kernelName: 'DepthwiseConv2dNativeBackpropFilter',
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dNativeBackpropFilter as unknown as tf.KernelFunc,
};
