// dL/dfilter of conv2d, which tfjs-backend-wasm 4.22 does not have, as im2col + one plain matmul.
//
// Why this layout: XNNPACK runs a plain [M, K] x [K, N] matmul at 13-17 GFLOP/s on two cores but a matmul
// with a transposed operand at about 1 (issue 17's probe). So the patches are built already transposed,
// [kH*kW*inC, positions] (one strided slice per tap of the input laid out [inC, B, H, W]), and multiplied
// by dy as it comes, [positions, outC].
import * as tf from '@tensorflow/tfjs-core';
import { withScope, type KernelScope } from '../compose';

/** Largest patch block built at once, in elements (32 Mi floats = 128 MiB); larger batches are split. */
export const MAX_PATCH_ELEMENTS = 1 << 25;

/**
 * `dW[i, j, c, o] = sum over b, y, x of xPadded[b, y*sH + i, x*sW + j, c] * dy[b, y, x, o]`.
 *
 * @param x `[B, H, W, inC]`, `dy` `[B, H', W', outC]`; returns `[kH, kW, inC, outC]`
 */
export function filterGradientByMatMul(
  scope: KernelScope,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  filterShape: [number, number, number, number],
  strides: [number, number],
  sides: { top: number; bottom: number; left: number; right: number },
  maxPatchElements = MAX_PATCH_ELEMENTS,
): tf.TensorInfo {
  const [kernelH, kernelW, inC, outC] = filterShape;
  const [batch, outH, outW] = dy.shape;
  const [strideH, strideW] = strides;
  const padded = scope.pad(x, [[0, 0], [sides.top, sides.bottom], [sides.left, sides.right], [0, 0]]);
  const taps = kernelH * kernelW;
  const chunk = Math.max(1, Math.min(batch, Math.floor(maxPatchElements / (taps * inC * outH * outW))));
  let total: tf.TensorInfo | undefined;
  for (let start = 0; start < batch; start += chunk) {
    const size = Math.min(chunk, batch - start);
    const part = size === batch ? padded : scope.run('Slice', { x: padded }, { begin: [start, 0, 0, 0], size: [size, ...padded.shape.slice(1)] });
    const channelsFirst = scope.transpose(part, [3, 0, 1, 2]);
    const positions = size * outH * outW;
    const rows: tf.TensorInfo[] = [];
    for (let i = 0; i < kernelH; i++) {
      for (let j = 0; j < kernelW; j++) {
        const tap = scope.stridedSlice(channelsFirst, [0, 0, i, j], [inC, size, outH, outW], [1, 1, strideH, strideW]);
        rows.push(scope.reshape(tap, [1, inC, positions]));
      }
    }
    // Row (i * kW + j) * inC + c: the row-major order of [kH, kW, inC].
    const patches = rows.length === 1 ? rows[0] : scope.run('Concat', rows as unknown as tf.NamedTensorInfoMap, { axis: 1 });
    const dyPart = size === batch ? dy : scope.run('Slice', { x: dy }, { begin: [start, 0, 0, 0], size: [size, outH, outW, outC] });
    const product = scope.run('BatchMatMul', { a: patches, b: scope.reshape(dyPart, [1, positions, outC]) }, { transposeA: false, transposeB: false });
    total = total ? scope.run('Add', { a: total, b: product }) : product;
  }
  return scope.reshape(total!, filterShape);
}

function conv2DBackpropFilter({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { x, dy } = inputs as Record<string, tf.TensorInfo>;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  if (dataFormat === 'NCHW') throw new Error('Conv2DBackpropFilter (@sparkmim/wasm-kernels): expected dataFormat NHWC, got NCHW');
  const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filterShape, strides, 1, pad, dimRoundingMode, false, 'channelsLast');
  return withScope(backend, (scope) =>
    filterGradientByMatMul(scope, x, dy, filterShape, [info.strideHeight, info.strideWidth], info.padInfo),
  );
}

/** `Conv2DBackpropFilter` for wasm (the filter gradient of `tf.conv2d`, and so of `tf.conv2dTranspose`'s input). */
export const conv2DBackpropFilterConfig: tf.KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: 'wasm',
  kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc,
};
