// Test support for comparing training steps with the official goldens (not exported). A ReLU6 is not
// differentiable at 0 and 6; a decoder ReLU6 input within float32 rounding of a kink may fall on either
// side in PyTorch and here, and then the official gradient has (or lacks) that one site's term, which
// moves a LAMB step far more than 1e-4 (LAMB's first step is nearly sign(grad)). This forward pass is
// SparkModel's, recomposed from its public parts, with the gradient at the decoder ReLU6 input nearest a
// kink taken from the other side of the kink (same forward values): the "other rounding" of the step.
import * as tf from '@tensorflow/tfjs-core';
import { sparkLoss } from '@sparkmim/losses';
import { applyMask } from '@sparkmim/masking';
import type { SparkForwardOptions, SparkModel } from '../model/spark-model';

/** Identity forward, zero gradient. */
const stopGradient = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;

/** Where a kink was flipped. */
export interface FlippedKink {
  call: number;
  block: number;
  index: number;
  value: number;
}

/**
 * A replacement for `model.forward` (cpu: it reads values synchronously) that, in the calls listed in
 * `flipCalls` (0-based), flips the gradient at each decoder block's ReLU6 input nearest a kink when it lies
 * within `threshold` of it (at least one must). Flipped sites are pushed to `flipped`.
 */
export function kinkFlippingForward(
  model: SparkModel,
  flipCalls: ReadonlySet<number>,
  flipped: FlippedKink[],
  threshold = 1e-5,
): (images: tf.Tensor4D, options?: SparkForwardOptions) => tf.Scalar {
  let calls = 0;
  return (images, options = {}) => {
    const call = calls++;
    const active = options.active;
    if (!active) throw new Error('kinkFlippingForward: pass the mask (active)');
    return tf.tidy(() => {
      const features = model.backbone.forward(applyMask(images, active), { active: model.sparse ? active : undefined });
      const toDecoder = model.densify.apply([...features].reverse(), active);
      let x: tf.Tensor4D | undefined;
      const blocks = model.decoder.blocks.items;
      let flips = 0;
      blocks.forEach((block, j) => {
        if (toDecoder[j]) x = x ? (tf.add(x, toDecoder[j]) as tf.Tensor4D) : toDecoder[j];
        const pre = block.conv.bn1.apply(block.conv.conv1.apply(block.upSample.apply(x!)));
        let y = tf.relu6(pre);
        if (flipCalls.has(call)) {
          const values = pre.dataSync();
          let best: { index: number; value: number; distance: number } | undefined;
          for (let index = 0; index < values.length; index++) {
            const distance = Math.min(Math.abs(values[index]), Math.abs(values[index] - 6));
            if (!best || distance < best.distance) best = { index, value: values[index], distance };
          }
          if (best && best.distance < threshold) {
            flips++;
            flipped.push({ call, block: j, index: best.index, value: best.value });
            const passes = best.value > 0 && best.value < 6;
            const oneHot = tf.reshape(tf.oneHot(best.index, values.length, 1, 0, 'float32'), pre.shape);
            // + (pre - stopGradient(pre)) adds a unit gradient path at the site; - removes ours.
            y = tf.add(y, tf.mul(tf.mul(oneHot, passes ? -1 : 1), tf.sub(pre, stopGradient(pre)))) as tf.Tensor4D;
          }
        }
        x = block.conv.bn2.apply(block.conv.conv2.apply(y));
      });
      if (flipCalls.has(call)) {
        if (flips === 0) throw new Error(`kinkFlippingForward: call ${call}: no decoder ReLU6 input within ${threshold} of a kink`);
      }
      return sparkLoss(model.decoder.proj.apply(x!), images, active);
    });
  };
}
