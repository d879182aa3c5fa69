// The convolution-gradient cases both kernel benchmarks time: this package's bench/kernels.bench.ts and
// apps/pretrain/bench/gpu-run.ts's `kernels` job (`@sparkmim/webgpu-kernels/bench`, resolved through the
// `@sparkmim/source` condition in this workspace only: the entry is not built or published).
import * as tf from '@tensorflow/tfjs-core';

/** One convolution of a model, NHWC, square input and kernel, "same" padding ((kernel - 1) / 2). */
export interface ConvShape {
  name: string;
  /** Input height and width. */
  size: number;
  inC: number;
  outC: number;
  kernel: number;
  stride: number;
  /** The input gradient is left out where the model never needs it (the stem's input is the image). */
  inputGradient: boolean;
}

/** A ConvShape from its numbers; `inputGradient` defaults to true (all but a stem). */
function conv(name: string, size: number, inC: number, outC: number, kernel: number, stride = 1, inputGradient = true): ConvShape {
  return { name, size, inC, outC, kernel, stride, inputGradient };
}

/**
 * ResNet-50's convolutions (and SparK's decoder's widest), at 224x224 input. The two shapes with stock
 * figures from 2026-11-26 first (3x3: 81 ms, 1x1 64>256: 257 ms per filter gradient at batch 32), the stem
 * and the decoder's large map, slowest for the stock kernels, last (gpu-run's budget may stop before them).
 */
export const RESNET50_CONV_SHAPES: readonly ConvShape[] = [
  conv('layer1 3x3 64', 56, 64, 64, 3),
  conv('layer1 1x1 64>256', 56, 64, 256, 1),
  conv('layer1 1x1 64>64', 56, 64, 64, 1),
  conv('layer2 3x3 128 s2', 56, 128, 128, 3, 2),
  conv('layer2 1x1 128>512', 28, 128, 512, 1),
  conv('layer3 3x3 256', 14, 256, 256, 3),
  conv('layer4 3x3 512', 7, 512, 512, 3),
  conv('decoder 3x3 96 at 112', 112, 96, 96, 3),
  conv('stem 7x7 s2', 224, 3, 64, 7, 2, false),
];

/** ResNet-50's kinds of convolution at a width of 16-64 (SwiftShader-sized; kernels.bench's `tiny`). */
export const TINY_CONV_SHAPES: readonly ConvShape[] = [
  conv('stem 7x7 s2', 32, 3, 16, 7, 2, false),
  conv('1x1 16>16', 16, 16, 16, 1),
  conv('3x3 16', 16, 16, 16, 3),
  conv('1x1 16>64', 16, 16, 64, 1),
  conv('3x3 32 s2', 16, 32, 32, 3, 2),
];

/** Two 8x8 maps of 4-8 channels: every code path (3x3 stride 1, 1x1 stride 2), none of the figures. */
export const SMOKE_CONV_SHAPES: readonly ConvShape[] = [conv('smoke 3x3', 8, 4, 4, 3), conv('smoke 1x1 s2', 8, 4, 8, 1, 2)];

export type ConvGradientKernel = 'Conv2DBackpropFilter' | 'Conv2DBackpropInput';

/** Random inputs for one shape and the gradient kernels to time on them; `dispose()` frees the inputs. */
export interface ConvGradientCases {
  /** [batch, size, size, inC]. */
  x: tf.Tensor4D;
  /** [kernel, kernel, inC, outC]. */
  filter: tf.Tensor4D;
  /** [batch, outSize, outSize, outC], the output's gradient. */
  dy: tf.Tensor4D;
  /** The filter gradient, then the input gradient where `shape.inputGradient`; each call runs the kernel once. */
  cases: [ConvGradientKernel, () => tf.Tensor][];
  dispose(): void;
}

/**
 * Seeded random x, filter and dy for `shape` at `batch`, and closures calling the currently registered
 * `Conv2DBackpropFilter` / `Conv2DBackpropInput` kernels on them (through the engine, so that switching the
 * registered kernels between calls times another implementation on the same tensors).
 *
 * @example
 * const inputs = convGradientCases(SMOKE_CONV_SHAPES[0], 2);
 * for (const [kernel, run] of inputs.cases) console.log(kernel, await timeWindow(run, 3));
 * inputs.dispose();
 */
export function convGradientCases(shape: ConvShape, batch: number): ConvGradientCases {
  const pad = (shape.kernel - 1) >> 1;
  const outSize = Math.floor((shape.size + 2 * pad - shape.kernel) / shape.stride) + 1;
  const x = tf.randomNormal([batch, shape.size, shape.size, shape.inC], 0, 1, 'float32', 1) as tf.Tensor4D;
  const filter = tf.randomNormal([shape.kernel, shape.kernel, shape.inC, shape.outC], 0, 0.05, 'float32', 2) as tf.Tensor4D;
  const dy = tf.randomNormal([batch, outSize, outSize, shape.outC], 0, 1, 'float32', 3) as tf.Tensor4D;
  const common = { strides: [shape.stride, shape.stride], pad, dataFormat: 'NHWC' };
  const cases: [ConvGradientKernel, () => tf.Tensor][] = [
    ['Conv2DBackpropFilter', () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...common, filterShape: filter.shape }) as tf.Tensor],
  ];
  if (shape.inputGradient) {
    cases.push([
      'Conv2DBackpropInput',
      () => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter }, { ...common, inputShape: x.shape }) as tf.Tensor,
    ]);
  }
  return { x, filter, dy, cases, dispose: () => tf.dispose([x, filter, dy]) };
}

/** Waits for the GPU to finish everything queued so far, by reading one number of `tensor` (not all of it). */
export async function drainGpu(tensor: tf.Tensor): Promise<void> {
  const one = tf.tidy(() => tf.slice(tf.reshape(tensor, [-1]), 0, 1));
  await one.data();
  one.dispose();
}

/**
 * The mean milliseconds per call of `reps` calls of `run` queued back to back, timed to one read of one
 * number of the last result (disposed, as every earlier one). Call `run` once before, for the shaders' compile.
 */
export async function timeWindow(run: () => tf.Tensor, reps: number): Promise<number> {
  const start = performance.now();
  let last: tf.Tensor | undefined;
  for (let i = 0; i < reps; i++) {
    last?.dispose();
    last = run();
  }
  await drainGpu(last!);
  last!.dispose();
  return (performance.now() - start) / reps;
}
