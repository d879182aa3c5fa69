// Runs an op under test on the current backend and reads back its output and gradients, for comparison
// with the float64 references in ./reference. Not part of the package API.
import * as tf from '@tensorflow/tfjs-core';
import { expectClose } from '@sparkmim/test-utils';
import { seededValues, type Grid } from './reference';

/**
 * Tolerances relative to the largest magnitude of the expected tensor (see expectClose). Measured worst
 * errors over the whole suite (SPARSE_OPS_REPORT_ERRORS=1 prints them per comparison) are given below; an
 * indexing or masking bug shows as an error of order 1, so a tight bound loses nothing.
 *
 * cpu: float32 with sequential sums of at most ~200 products per output against a float64 reference.
 * Observed: forward 2.1e-7, gradients 1.1e-7 (relative). Bound 2e-6, a 10x margin.
 *
 * webgpu: still float32, but the kernels reduce in another order (tiled, vec4-packed conv and matmul,
 * tree reductions for sums and means), WGSL's `inverseSqrt` is only specified to 2 ulp, and real GPUs may
 * contract multiply-adds; gradients chain several such kernels. Observed on Dawn + SwiftShader: forward
 * 8.8e-7, gradients 2.9e-7. Bound 1e-5, a 10x margin for hardware that rounds differently.
 */
export function tolerancesFor(backend: string): { forward: number; gradient: number } {
  return backend === 'webgpu' ? { forward: 1e-5, gradient: 1e-5 } : { forward: 2e-6, gradient: 2e-6 };
}

export function toTensor(grid: Grid): tf.Tensor {
  return tf.tensor(Float32Array.from(grid.data), grid.shape, 'float32');
}

/** A grid whose float64 values are exactly the float32 values the backend sees. */
export function float32Grid(shape: number[], seed: number, scale = 1, offset = 0): Grid {
  const values = seededValues(
    shape.reduce((a, b) => a * b, 1),
    seed,
  ).map((v) => v * scale + offset);
  return { shape, data: Float64Array.from(Float32Array.from(values)) };
}

export interface Evaluated {
  shape: number[];
  output: Float32Array;
  /** d sum(output * weights) / d input, per input. */
  gradients: Float32Array[];
}

/**
 * Evaluates `build(inputs)` and the gradients of `sum(build(inputs) * weights)` with respect to every input,
 * leaving no tensor behind. `weights` are seeded values of the output's size.
 */
export async function evaluateWithGradients(
  build: (inputs: tf.Tensor[]) => tf.Tensor,
  inputs: Grid[],
  weightSeed = 99,
): Promise<Evaluated & { weights: Float64Array }> {
  const [output, ...gradients] = tf.tidy(() => {
    const inputTensors = inputs.map(toTensor);
    const forward = build(inputTensors);
    const weights = tf.tensor(Float32Array.from(seededValues(forward.size, weightSeed)), forward.shape);
    const loss = (...xs: tf.Tensor[]) => tf.sum(tf.mul(build(xs), weights)) as tf.Scalar;
    return [forward, ...tf.grads(loss)(inputTensors)];
  });
  const weights = Float64Array.from(Float32Array.from(seededValues(output.size, weightSeed)));
  const result = {
    shape: output.shape,
    output: (await output.data()) as Float32Array,
    gradients: await Promise.all(gradients.map(async (gradient) => (await gradient.data()) as Float32Array)),
    weights,
  };
  tf.dispose([output, ...gradients]);
  return result;
}

/** Evaluates `build()` and reads it back, leaving no tensor behind. */
export async function evaluate(build: () => tf.Tensor): Promise<{ shape: number[]; output: Float32Array }> {
  const output = tf.tidy(build);
  const values = (await output.data()) as Float32Array;
  const shape = output.shape;
  output.dispose();
  return { shape, output: values };
}

/** Shape equality and element-wise closeness against a reference grid. */
export async function expectGridClose(
  actual: { shape: number[]; output: Float32Array },
  expected: Grid,
  relative: number,
  label: string,
): Promise<void> {
  expect({ label, shape: actual.shape }).toEqual({ label, shape: expected.shape });
  // The absolute floor only matters for all-zero references (e.g. a gradient that must vanish).
  if (process.env.SPARSE_OPS_REPORT_ERRORS) reportWorstError(actual.output, expected.data, label);
  await expectClose(actual.output, expected.data, { relative, absolute: 1e-7, label });
}

function reportWorstError(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string): void {
  let worstError = 0;
  let largest = 0;
  for (let i = 0; i < expected.length; i++) {
    worstError = Math.max(worstError, Math.abs(actual[i] - expected[i]));
    largest = Math.max(largest, Math.abs(expected[i]));
  }
  console.log(`relative error ${tf.getBackend()} ${label}: ${(worstError / (largest || 1)).toExponential(2)}`);
}
