import * as tf from '@tensorflow/tfjs-core';
import type { GatherPlan } from './row-sites';

/** What a site outside the map reads: zero (convolutions, average pooling) or -infinity (max pooling). */
export type OutsideFill = 'zero' | '-inf';

/**
 * `[M, C]`: row `i` is `source[plan.index[i]]`, with index `N` a zero row and `N + 1` the `outside` fill.
 *
 * A `tf.gather` on axis 0 with a gradient of our own: tfjs differentiates gather through
 * UnsortedSegmentSum, which the cpu backend runs as one pass over all rows per row (quadratic) and wasm
 * lacks; the plan's inverse table turns the gradient into another gather and a sum over at most `fanIn`
 * readers per row, linear in the rows on every backend.
 *
 * @param source `[N, C]`, `N = plan.sourceRows`
 */
export function gatherRows(source: tf.Tensor2D, plan: GatherPlan, outside: OutsideFill = 'zero'): tf.Tensor2D {
  const [sourceRows, channels] = source.shape;
  if (source.rank !== 2 || sourceRows !== plan.sourceRows) {
    throw new Error(`gatherRows: expected rows [${plan.sourceRows}, C], got [${source.shape.join(', ')}]`);
  }
  // customGrad's type lists the save function among the tensors; this gather saves nothing.
  const gather = tf.customGrad(((x: tf.Tensor) => {
    const sentinels = new Float32Array(2 * channels).fill(outside === 'zero' ? 0 : -Infinity, channels);
    const padded = tf.concat([x, tf.tensor2d(sentinels, [2, channels])], 0);
    const value = tf.gather(padded, plan.index);
    const gradFunc = (dy: tf.Tensor) => {
      // Slot M of the padded gradient is the zero row that unused inverse entries point at.
      const dyPadded = tf.concat([dy, tf.zeros([1, channels])], 0);
      const readers = tf.gather(dyPadded, plan.inverse);
      if (plan.fanIn === 1) return readers;
      if (tf.getBackend() === 'cpu') {
        // The cpu backend sums over a leading axis by transposing first: an addN of contiguous slices is
        // about 15x faster there ([9 * 2496, 64]: 14 ms against 205 ms).
        const slots = Array.from({ length: plan.fanIn }, (_, k) => tf.slice(readers, [k * sourceRows, 0], [sourceRows, channels]));
        return tf.addN(slots);
      }
      // Elsewhere the reduction is the fast one (wasm's slices copy element by element: 232 ms against 6 ms).
      return tf.reshape(tf.sum(tf.reshape(readers, [plan.fanIn, sourceRows * channels]), 0), [sourceRows, channels]);
    };
    return { value, gradFunc };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return gather(source) as tf.Tensor2D;
}
