// Dense convolutions with a choice of how their filter gradient is computed.
//
// Why: tfjs-backend-cpu 4.22 computes Conv2DBackpropFilter with a loop order that walks the input across
// its rows for every filter tap. Profiled on a small SparK ResNet (96x96 input, batch 4) it took 80% of a
// training step, about 20x the forward convolutions. The same sum is itself a convolution (the input
// seen as `[inC, H, W, B]`, the output gradient as a `[H', W', B, outC]` filter), which the cpu backend
// runs 4-12x faster than its own filter-gradient kernel on the shapes of that model; it is the default
// on cpu. Other backends keep their own kernel (`'backend'`): on wasm that is @sparkmim/wasm-kernels'
// Conv2DBackpropFilter, the same convolution run by XNNPACK without this file's custom-gradient scaffold
// (`'im2col'` is slow there: XNNPACK's matmul with a transposed operand runs at about a tenth of the plain one).
import * as tf from '@tensorflow/tfjs-core';
import { pair, resolveSides, toTfPadding, type Padding2d } from './padding';

/**
 * How a filter gradient is computed:
 * - `'backend'`: the backend's Conv2DBackpropFilter kernel (tfjs's own gradient);
 * - `'conv'`: one forward convolution of the transposed input with the output gradient as its filter;
 * - `'im2col'`: the input patches of every tap side by side, times the output gradient (one matMul).
 */
export type FilterGradientMethod = 'backend' | 'conv' | 'im2col';

export interface ConvGradientOptions {
  /**
   * Default: the tfjs flag `SPARKMIM_FILTER_GRADIENT` when set to a method (for measuring a whole model
   * with another one, e.g. `tf.env().set('SPARKMIM_FILTER_GRADIENT', 'im2col')`), else `'conv'` on the cpu
   * backend and `'backend'` on the others.
   */
  filterGradient?: FilterGradientMethod;
}

const METHODS: readonly FilterGradientMethod[] = ['backend', 'conv', 'im2col'];
const METHOD_FLAG = 'SPARKMIM_FILTER_GRADIENT';

/**
 * Registers the flag on first use, not when this module loads: a library changes no global tfjs state on
 * import (issue 12). @sparkmim/runtime's setup registers it too, so that apps can `tf.env().set` it before
 * the first convolution (tfjs refuses to set unregistered flags); in a browser,
 * `?tfjsflags=SPARKMIM_FILTER_GRADIENT:im2col` is read when it is registered.
 */
function readMethodFlag(): unknown {
  const env = tf.env();
  if (!(METHOD_FLAG in (env as unknown as { flagRegistry: Record<string, unknown> }).flagRegistry)) env.registerFlag(METHOD_FLAG, () => 'auto');
  return env.get(METHOD_FLAG);
}

/**
 * Largest im2col block, in elements, built at once (64 Mi floats = 256 MiB); larger batches are split and
 * their products summed, which keeps every buffer under WebGPU's common storage-binding limits.
 */
const MAX_PATCH_ELEMENTS = 1 << 26;

/** The method used when none is named: see the file's comment. */
function defaultMethod(): FilterGradientMethod {
  const chosen = readMethodFlag();
  if (chosen !== 'auto') {
    if (!METHODS.includes(chosen as FilterGradientMethod)) {
      throw new Error(`${METHOD_FLAG}: expected auto, ${METHODS.join(', ')}; got '${String(chosen)}'`);
    }
    return chosen as FilterGradientMethod;
  }
  return tf.getBackend() === 'cpu' ? 'conv' : 'backend';
}

/**
 * `dL/dfilter` of `conv2d(x, filter, strides, pad)` given `dy = dL/dy`.
 *
 * @param x `[B, H, W, inC]` the convolution's input
 * @param dy `[B, H', W', outC]` the gradient of its output
 * @param filterShape `[kH, kW, inC, outC]`
 * @param options.method see {@link FilterGradientMethod} (default: as {@link ConvGradientOptions})
 * @param options.maxPatchElements `'im2col'`: largest patch block built at once (default 2^26); larger
 *   batches are split
 * @returns `[kH, kW, inC, outC]`
 *
 * @example
 * const dFilter = conv2dFilterGradient(x, dy, [3, 3, 16, 32], 1, 1);
 */
export function conv2dFilterGradient(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: [number, number, number, number],
  strides: number | [number, number],
  pad: Padding2d,
  { method = defaultMethod(), maxPatchElements = MAX_PATCH_ELEMENTS }: { method?: FilterGradientMethod; maxPatchElements?: number } = {},
): tf.Tensor4D {
  const [kernelH, kernelW, inC, outC] = filterShape;
  const caller = 'conv2dFilterGradient';
  if (x.rank !== 4 || x.shape[3] !== inC) {
    throw new Error(`${caller}: x must have shape [B, H, W, ${inC}] (inC of filter [${filterShape.join(', ')}]), got [${x.shape.join(', ')}]`);
  }
  const batch = x.shape[0];
  const [strideH, strideW] = pair(strides);
  const [top, bottom, left, right] = resolveSides(pad, x.shape, [kernelH, kernelW], [strideH, strideW]);
  const outH = Math.floor((x.shape[1] + top + bottom - kernelH) / strideH) + 1;
  const outW = Math.floor((x.shape[2] + left + right - kernelW) / strideW) + 1;
  if (dy.rank !== 4 || dy.shape[0] !== batch || dy.shape[1] !== outH || dy.shape[2] !== outW || dy.shape[3] !== outC) {
    throw new Error(`${caller}: dy must have shape [${batch}, ${outH}, ${outW}, ${outC}], got [${dy.shape.join(', ')}]`);
  }
  if (!METHODS.includes(method)) {
    throw new Error(`${caller}: method must be 'backend', 'conv' or 'im2col', got '${String(method)}'`);
  }
  return tf.tidy(() => {
    if (method === 'backend') {
      const sides: tf.backend_util.ExplicitPadding = [
        [0, 0],
        [top, bottom],
        [left, right],
        [0, 0],
      ];
      // tfjs exports no Conv2DBackpropFilter op; its gradient of conv2d runs exactly that kernel.
      const gradient = tf.grad((filter: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x, filter as tf.Tensor4D, [strideH, strideW], sides), dy)));
      return gradient(tf.zeros(filterShape)) as tf.Tensor4D;
    }
    const padded = tf.pad(x, [
      [0, 0],
      [top, bottom],
      [left, right],
      [0, 0],
    ]) as tf.Tensor4D;
    if (method === 'conv') {
      // dW[i, j, c, o] = sum over b, y, x of padded[b, y*s + i, x*s + j, c] * dy[b, y, x, o]: a valid
      // convolution of padded as [inC, Hp, Wp, B] ("batch" = input channel) with dy as a [H', W', B, outC]
      // filter dilated by the stride; its [inC, >= kH, >= kW, outC] output starts with the taps.
      const input = tf.transpose(padded, [3, 1, 2, 0]) as tf.Tensor4D;
      const filter = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D;
      let taps = tf.conv2d(input, filter, 1, 'valid', 'NHWC', [strideH, strideW]);
      if (taps.shape[1] !== kernelH || taps.shape[2] !== kernelW) taps = tf.slice(taps, [0, 0, 0, 0], [inC, kernelH, kernelW, outC]);
      return tf.transpose(taps, [1, 2, 0, 3]) as tf.Tensor4D;
    }
    const perImage = outH * outW * kernelH * kernelW * inC;
    const chunk = Math.max(1, Math.min(batch, Math.floor(maxPatchElements / perImage)));
    let total: tf.Tensor2D | undefined;
    for (let start = 0; start < batch; start += chunk) {
      const size = Math.min(chunk, batch - start);
      const part = tf.tidy(() => {
        const taps: tf.Tensor4D[] = [];
        for (let i = 0; i < kernelH; i++) {
          for (let j = 0; j < kernelW; j++) {
            taps.push(
              tf.stridedSlice(
                padded,
                [start, i, j, 0],
                [start + size, i + (outH - 1) * strideH + 1, j + (outW - 1) * strideW + 1, inC],
                [1, strideH, strideW, 1],
              ) as tf.Tensor4D,
            );
          }
        }
        // Channel index (i * kW + j) * inC + c: exactly the row-major order of [kH, kW, inC].
        const patches = taps.length === 1 ? taps[0] : tf.concat(taps, 3);
        const positions = size * outH * outW;
        const dyRows = tf.slice(dy, [start, 0, 0, 0], [size, outH, outW, outC]);
        return tf.matMul(
          tf.reshape(patches, [positions, kernelH * kernelW * inC]),
          tf.reshape(dyRows, [positions, outC]),
          true,
          false,
        ) as tf.Tensor2D;
      });
      if (total) {
        const sum = tf.add(total, part) as tf.Tensor2D;
        tf.dispose([total, part]);
        total = sum;
      } else {
        total = part;
      }
    }
    return tf.reshape(total!, filterShape);
  });
}

/**
 * `tf.conv2d` (NHWC input, `[kH, kW, inC, outC]` filter) with PyTorch-style padding and the filter
 * gradient computed as `options.filterGradient` says: the same values, trained much faster on tfjs's cpu
 * backend.
 *
 * @example
 * const y = conv2d(x, filter, 2, 3); // a 7x7 stride-2 stem with PyTorch's padding=3
 */
export function conv2d(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  strides: number | [number, number] = 1,
  pad: Padding2d = 0,
  { filterGradient = defaultMethod() }: ConvGradientOptions = {},
): tf.Tensor4D {
  const stride = pair(strides);
  const tfPad = toTfPadding(pad);
  if (filterGradient === 'backend') return tf.conv2d(x, filter, stride, tfPad);
  return withGradients(
    x,
    filter,
    (input, weights) => tf.conv2d(input, weights, stride, tfPad),
    (dy, input, weights) => [
      // tfjs's conv2d gradient with respect to x is this transposed convolution too.
      tf.conv2dTranspose(dy, weights, input.shape, stride, tfPad as never),
      conv2dFilterGradient(input, dy, weights.shape, stride, pad, { method: filterGradient }),
    ],
  );
}

/**
 * `tf.conv2dTranspose` with PyTorch's ConvTranspose2d `padding` (the padding of the convolution it
 * transposes) and the filter gradient computed as `options.filterGradient` says.
 *
 * @param x `[B, h, w, inC]`
 * @param filter `[kH, kW, outC, inC]` (tfjs's layout for transposed convolutions)
 * @param outputShape `[B, H, W, outC]`
 *
 * @example
 * const up = conv2dTranspose(x, filter, [1, 16, 16, 8], 2, 1); // kernel 4, stride 2: 8x8 to 16x16
 */
export function conv2dTranspose(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  outputShape: [number, number, number, number],
  strides: number | [number, number] = 1,
  pad: number | [number, number] = 0,
  { filterGradient = defaultMethod() }: ConvGradientOptions = {},
): tf.Tensor4D {
  const stride = pair(strides);
  const tfPad = toTfPadding(pad);
  if (filterGradient === 'backend') return tf.conv2dTranspose(x, filter, outputShape, stride, tfPad as never);
  return withGradients(
    x,
    filter,
    (input, weights) => tf.conv2dTranspose(input, weights, outputShape, stride, tfPad as never),
    (dy, input, weights) => [
      // The transposed convolution's output is the input of the convolution it transposes, and this
      // op's input is that convolution's output gradient: the roles of x and dy swap.
      tf.conv2d(dy, weights, stride, tfPad),
      conv2dFilterGradient(dy, input, weights.shape, stride, pad, { method: filterGradient }),
    ],
  );
}

/**
 * `forward(x, filter)` under `tf.customGrad`, with `backward(dy, x, filter)` giving `[dx, dFilter]`: the
 * one custom-gradient scaffold of {@link conv2d} and {@link conv2dTranspose}.
 */
function withGradients(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  forward: (input: tf.Tensor4D, weights: tf.Tensor4D) => tf.Tensor4D,
  backward: (dy: tf.Tensor4D, input: tf.Tensor4D, weights: tf.Tensor4D) => [tf.Tensor, tf.Tensor],
): tf.Tensor4D {
  const run = tf.customGrad(((input: tf.Tensor4D, weights: tf.Tensor4D, save: tf.GradSaveFunc) => {
    save([input, weights]);
    return {
      value: forward(input, weights),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => backward(dy as tf.Tensor4D, saved[0] as tf.Tensor4D, saved[1] as tf.Tensor4D),
    };
    // customGrad's type has the save function among the tensors; it is passed last, as here.
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return run(x, filter) as tf.Tensor4D;
}
