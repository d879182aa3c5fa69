// dL/dfilter of conv2d, which tfjs-backend-wasm 4.22 does not have, as one forward convolution.
//
// dW[i, j, c, o] = sum over b, y, x of xPadded[b, y*sH + i, x*sW + j, c] * dy[b, y, x, o] is a valid
// convolution of xPadded seen as [inC, Hp, Wp, B] (a "batch" of input channels, B channels each) with dy
// seen as a [H', W', B, outC] filter dilated by the stride. XNNPACK runs it 2-6x faster than im2col +
// matmul built from the backend's kernels (measured on the quickstart's shapes: a 7x7 stem at 96x96, 3x3
// layers of 2-64 channels), whose tap slices are JavaScript copies; and it needs no patch buffer.
import * as tf from '@tensorflow/tfjs-core';
import { type KernelArgs, type KernelScope, withScope } from '../compose';

/**
 * `dL/dfilter` of a convolution: `x` `[B, H, W, inC]`, `dy` `[B, H', W', outC]`; returns `[kH, kW, inC, outC]`.
 */
export function filterGradientByConv(
  scope: KernelScope,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  filterShape: [number, number, number, number],
  strides: [number, number],
  sides: { top: number; bottom: number; left: number; right: number },
): tf.TensorInfo {
  const [kernelH, kernelW, inC, outC] = filterShape;
  const input = paddedChannelsFirst(scope, x, sides);
  const filter = scope.transpose(dy, [1, 2, 0, 3]);
  const attrs = { strides: [1, 1], pad: 'valid', dilations: strides, dataFormat: 'NHWC', dimRoundingMode: undefined } as unknown as tf.NamedAttrMap;
  let taps = scope.run('Conv2D', { x: input, filter }, attrs);
  // Padding beyond the last tap's reach (e.g. PyTorch's symmetric padding on a strided conv) gives extra rows.
  if (taps.shape[1] !== kernelH || taps.shape[2] !== kernelW)
    taps = scope.run('Slice', { x: taps }, { begin: [0, 0, 0, 0], size: [inC, kernelH, kernelW, outC] });
  return scope.transpose(taps, [1, 2, 0, 3]);
}

/** Width of the column tiles {@link paddedChannelsFirst} walks, so that its writes stay in cache. */
const COLUMN_TILE = 16;

/**
 * `x` `[B, H, W, C]` zero-padded by `sides` and laid out as `[C, Hp, Wp, B]`, in one pass over the wasm
 * heap. Why: as PadV2 then the backend's Transpose (a generic per-value loop for this permutation, which
 * is no swap of two blocks), the decoder's 224x224 48-channel maps at batch 8 took about as long as the
 * convolution itself. Negative sides (cropping) are allowed.
 */
function paddedChannelsFirst(
  scope: KernelScope,
  x: tf.TensorInfo,
  sides: { top: number; bottom: number; left: number; right: number },
): tf.TensorInfo {
  const [batch, height, width, channels] = x.shape;
  const paddedH = height + sides.top + sides.bottom;
  const paddedW = width + sides.left + sides.right;
  const backend = scope.backend;
  const out = scope.track(backend.makeOutput([channels, paddedH, paddedW, batch], 'float32'));
  // Views taken after makeOutput: allocating can grow the wasm memory, which detaches older views.
  const source = backend.typedArrayFromHeap(x) as Float32Array;
  const target = backend.typedArrayFromHeap(out) as Float32Array;
  target.fill(0);
  const channelStride = paddedH * paddedW * batch;
  // Source rows and columns that land inside the padded map.
  const firstY = Math.max(0, -sides.top);
  const endY = Math.min(height, paddedH - sides.top);
  const firstX = Math.max(0, -sides.left);
  const endX = Math.min(width, paddedW - sides.left);
  for (let y = firstY; y < endY; y++) {
    const targetRow = (y + sides.top) * paddedW;
    for (let x0 = firstX; x0 < endX; x0 += COLUMN_TILE) {
      const x1 = Math.min(endX, x0 + COLUMN_TILE);
      for (let b = 0; b < batch; b++) {
        for (let column = x0; column < x1; column++) {
          const from = ((b * height + y) * width + column) * channels;
          const to = (targetRow + column + sides.left) * batch + b;
          for (let c = 0; c < channels; c++) target[to + c * channelStride] = source[from + c];
        }
      }
    }
  }
  return out;
}

/**
 * `x` `[B, Hp, Wp, C]` as `[sH * sW * C, B, ceil(Hp / sH), ceil(Wp / sW)]`: row `(p * sW + q) * C + c`
 * holds `x[:, p::sH, q::sW, c]`. Then every tap of a strided convolution is a plain 4-D slice (the wasm
 * backend's StridedSlice took ~28 ms per tap of a ResNet stem, its Slice a fraction of that).
 */
export function byStridePhase(scope: KernelScope, x: tf.TensorInfo, strideH: number, strideW: number): tf.TensorInfo {
  const [batch, height, width, channels] = x.shape;
  if (strideH === 1 && strideW === 1) return scope.transpose(x, [3, 0, 1, 2]);
  const rows = Math.ceil(height / strideH);
  const cols = Math.ceil(width / strideW);
  const padded = scope.pad(x, [
    [0, 0],
    [0, rows * strideH - height],
    [0, cols * strideW - width],
    [0, 0],
  ]);
  const split = scope.reshape(padded, [batch, rows, strideH, cols, strideW, channels]);
  const phases = scope.transpose(split, [2, 4, 5, 0, 1, 3]);
  return scope.reshape(phases, [strideH * strideW * channels, batch, rows, cols]);
}

function conv2DBackpropFilter({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { x, dy } = inputs as Record<string, tf.TensorInfo>;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  if (dataFormat === 'NCHW') throw new Error('Conv2DBackpropFilter (@sparkmim/wasm-kernels): expected dataFormat NHWC, got NCHW');
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
  return withScope(backend, (scope) => filterGradientByConv(scope, x, dy, filterShape, [info.strideHeight, info.strideWidth], info.padInfo));
}

/** `Conv2DBackpropFilter` for wasm (the filter gradient of `tf.conv2d`, and so of `tf.conv2dTranspose`'s input). */
export const conv2DBackpropFilterConfig: tf.KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: 'wasm',
  kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc,
};
