// dL/dfilter of depthwiseConv2d, which tfjs-backend-wasm 4.22 does not have: per tap, the input seen
// through that tap times dy, summed over batch and positions (one multiply and one reduction per tap:
// a depthwise filter has few taps and channels, so this is memory-bound whichever way it is laid out).
import * as tf from '@tensorflow/tfjs-core';
import { withScope } from '../compose';

function depthwiseConv2dNativeBackpropFilter({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { x, dy } = inputs as Record<string, tf.TensorInfo>;
  const { strides, pad, dilations, dimRoundingMode, filterShape } = attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const [dilationH, dilationW] = typeof dilations === 'number' ? [dilations, dilations] : dilations;
  if (dilationH !== 1 || dilationW !== 1) {
    throw new Error(`DepthwiseConv2dNativeBackpropFilter (@sparkmim/wasm-kernels): expected dilations 1, got [${dilationH}, ${dilationW}]`);
  }
  const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode, true);
  const [kernelH, kernelW, channels, multiplier] = filterShape;
  const [batch, outH, outW] = dy.shape;
  return withScope(backend, (scope) => {
    const { top, bottom, left, right } = info.padInfo;
    const padded = scope.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]]);
    const dyPerChannel = scope.reshape(dy, [batch * outH * outW, channels, multiplier]);
    const taps: tf.TensorInfo[] = [];
    for (let i = 0; i < kernelH; i++) {
      for (let j = 0; j < kernelW; j++) {
        const seen = scope.stridedSlice(padded, [0, i, j, 0], [batch, outH, outW, channels], [1, info.strideHeight, info.strideWidth, 1]);
        const product = scope.run('Multiply', { a: scope.reshape(seen, [batch * outH * outW, channels, 1]), b: dyPerChannel });
        taps.push(scope.run('Sum', { x: product }, { axis: [0], keepDims: true }));
      }
    }
    const stacked = taps.length === 1 ? taps[0] : scope.run('Concat', taps as unknown as tf.NamedTensorInfoMap, { axis: 0 });
    return scope.reshape(stacked, filterShape);
  });
}

/** `DepthwiseConv2dNativeBackpropFilter` for wasm (missing in tfjs-backend-wasm 4.22). */
export const depthwiseConv2dNativeBackpropFilterConfig: tf.KernelConfig = {
  kernelName: 'DepthwiseConv2dNativeBackpropFilter',
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dNativeBackpropFilter as unknown as tf.KernelFunc,
};
