import * as tf from '@tensorflow/tfjs-core';

export type NumericArray = ArrayLike<number>;

/** The largest absolute value in `values` (0 for an empty array). */
export function maxAbs(values: NumericArray): number {
  let largest = 0;
  for (let i = 0; i < values.length; i++) largest = Math.max(largest, Math.abs(values[i]));
  return largest;
}

export interface CloseOptions {
  /** Tolerance relative to the largest magnitude in `expected`. */
  relative?: number;
  /** Absolute floor added to the tolerance, for tensors that are (almost) all zero. */
  absolute?: number;
  /** A label for the error message. */
  label?: string;
}

/**
 * Asserts `|actual - expected| <= relative * max|expected| + absolute` element-wise, reporting the worst
 * element. Reads tensors with `await data()` (webgpu in Node cannot read synchronously).
 */
export async function expectClose(
  actual: tf.Tensor | NumericArray,
  expected: tf.Tensor | NumericArray,
  { relative = 1e-5, absolute = 0, label = 'tensor' }: CloseOptions = {},
): Promise<void> {
  if (actual instanceof tf.Tensor && expected instanceof tf.Tensor) {
    expect({ label, shape: actual.shape }).toEqual({ label, shape: expected.shape });
  }
  const actualValues = actual instanceof tf.Tensor ? await actual.data() : actual;
  const expectedValues = expected instanceof tf.Tensor ? await expected.data() : expected;
  expect({ label, length: actualValues.length }).toEqual({ label, length: expectedValues.length });
  const tolerance = relative * maxAbs(expectedValues) + absolute;
  let worstIndex = -1;
  let worstError = -1;
  for (let i = 0; i < expectedValues.length; i++) {
    const error = Math.abs(actualValues[i] - expectedValues[i]);
    if (!(error <= worstError) || Number.isNaN(error)) {
      worstError = Number.isNaN(error) ? Infinity : error;
      worstIndex = i;
    }
  }
  if (worstError > tolerance) {
    throw new Error(
      `${label}: element ${worstIndex} is ${actualValues[worstIndex]}, expected ${expectedValues[worstIndex]} ` +
        `(error ${worstError.toExponential(3)} > tolerance ${tolerance.toExponential(3)})`,
    );
  }
}

/** What {@link goldenErrorReport} gives a golden suite. */
export interface GoldenErrorReport {
  /** Worst |actual - expected| / max|expected| per label. */
  worstErrors: Map<string, number>;
  /** {@link expectClose} with `relative`, recording the error relative to max|expected| under `label`. */
  expectGoldenClose(actual: tf.Tensor | NumericArray, expected: NumericArray, relative: number, label: string): Promise<void>;
}

/**
 * Records the worst relative error per label of a golden suite and prints them after it (afterAll) when
 * SPARKMIM_REPORT_ERRORS is set: the measured errors the READMEs quote. Call once at a suite's top level.
 */
export function goldenErrorReport(): GoldenErrorReport {
  const worstErrors = new Map<string, number>();
  afterAll(() => {
    if (!process.env.SPARKMIM_REPORT_ERRORS) return;
    const lines = [...worstErrors].map(([label, error]) => `${label}: ${error.toExponential(2)}`);
    console.log(`worst errors relative to max|expected|:\n${lines.join('\n')}`);
  });
  async function expectGoldenClose(actual: tf.Tensor | NumericArray, expected: NumericArray, relative: number, label: string): Promise<void> {
    const values = actual instanceof tf.Tensor ? await actual.data() : actual;
    let worst = 0;
    for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(values[i] - expected[i]));
    const scale = maxAbs(expected);
    worstErrors.set(label, Math.max(worstErrors.get(label) ?? 0, scale > 0 ? worst / scale : worst));
    await expectClose(values, expected, { relative, label });
  }
  return { worstErrors, expectGoldenClose };
}
