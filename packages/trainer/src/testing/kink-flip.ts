// Test support for comparing with the official goldens (not exported). A ReLU6 is not differentiable at 0
// and 6; a decoder ReLU6 input within float32 rounding of a kink may fall on either side in PyTorch and
// here, and then the official gradient has (or lacks) that one site's term: every gradient upstream of it
// differs by about 1% (resnet18_narrow's decoder has a ReLU6 input of 6e-6 on cpu), and a LAMB step moves
// far more than 1e-4 (LAMB's first step is nearly sign(grad)). Both helpers below rerun SparkModel's loss,
// recomposed from its public parts, with the gradient at decoder ReLU6 inputs near a kink taken from the
// other side of the kink (same forward values): the "other rounding".
import * as tf from '@tensorflow/tfjs-core';
import { sparkLoss } from '@sparkmim/losses';
import { applyMask } from '@sparkmim/masking';
import type { SparkForwardOptions, SparkModel } from '../model/spark-model';

/** Identity forward, zero gradient. */
const stopGradient = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;

/**
 * SparkModel's loss on `images` masked by `active`, recomposed from its public parts, with each decoder
 * block's ReLU6 computed by `relu6(pre, block)` (`pre`: the block's first batch-norm output).
 */
function lossWithDecoderRelu6(
  model: SparkModel,
  images: tf.Tensor4D,
  active: tf.Tensor4D,
  relu6: (pre: tf.Tensor4D, block: number) => tf.Tensor4D,
): tf.Scalar {
  const features = model.backbone.forward(applyMask(images, active), { active: model.sparse ? active : undefined });
  const toDecoder = model.densify.apply([...features].reverse(), active);
  let x: tf.Tensor4D | undefined;
  model.decoder.blocks.items.forEach((block, j) => {
    if (toDecoder[j]) x = x ? (tf.add(x, toDecoder[j]) as tf.Tensor4D) : toDecoder[j];
    const pre = block.conv.bn1.apply(block.conv.conv1.apply(block.upSample.apply(x!)));
    x = block.conv.bn2.apply(block.conv.conv2.apply(relu6(pre, j)));
  });
  return sparkLoss(model.decoder.proj.apply(x!), images, active);
}

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
      let flips = 0;
      const loss = lossWithDecoderRelu6(model, images, active, (pre, j) => {
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
        return y;
      });
      if (flipCalls.has(call)) {
        if (flips === 0) throw new Error(`kinkFlippingForward: call ${call}: no decoder ReLU6 input within ${threshold} of a kink`);
      }
      return loss;
    });
  };
}

/**
 * A function that is zero forward and, backward, adds to the ReLU6 derivative at the sites within
 * `threshold` of a kink the term that moves them to the other side (-1 where tfjs's Relu6 passes the
 * gradient, 0 < x <= 6; +1 elsewhere).
 */
function kinkFlip(threshold: number): (pre: tf.Tensor4D) => tf.Tensor4D {
  return tf.customGrad((pre, save) => {
    (save as unknown as (tensors: tf.Tensor[]) => void)([pre as tf.Tensor]);
    return {
      value: tf.zerosLike(pre as tf.Tensor),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [x] = saved;
        const near = tf.logicalOr(tf.less(tf.abs(x), threshold), tf.less(tf.abs(tf.sub(x, 6)), threshold));
        const passes = tf.logicalAnd(tf.greater(x, 0), tf.lessEqual(x, 6));
        return tf.mul(dy, tf.mul(tf.cast(near, 'float32'), tf.where(passes, tf.scalar(-1), tf.scalar(1))));
      },
    };
  }) as unknown as (pre: tf.Tensor4D) => tf.Tensor4D;
}

/**
 * Our gradients with every decoder ReLU6 input within `threshold` of a kink moved to the other side (any
 * backend: it reads nothing synchronously), with {@link kinkFlip} added to every decoder ReLU6. Returns the
 * gradients by parameter name, how many sites were flipped and the loss (to check the recomposition).
 */
export async function kinkFlippedGradients(
  model: SparkModel,
  images: tf.Tensor4D,
  active: tf.Tensor4D,
  threshold: number,
): Promise<{ grads: Map<string, tf.Tensor>; flipped: number; loss: number }> {
  const flip = kinkFlip(threshold);
  let flippedCount: tf.Scalar | undefined;
  const parameters = model.parameters();
  const { value, grads } = tf.variableGrads(
    () => {
      let near: tf.Scalar = tf.scalar(0);
      const loss = lossWithDecoderRelu6(model, images, active, (pre) => {
        near = tf.add(near, tf.sum(tf.cast(tf.logicalOr(tf.less(tf.abs(pre), threshold), tf.less(tf.abs(tf.sub(pre, 6)), threshold)), 'float32')));
        return tf.add(tf.relu6(pre), flip(pre)) as tf.Tensor4D;
      });
      flippedCount = tf.keep(near);
      return loss;
    },
    parameters.map((parameter) => parameter.variable),
  );
  const named = new Map(parameters.map(({ name, variable }) => [name, grads[variable.name] ?? tf.zerosLike(variable)]));
  const result = { grads: named, flipped: (await flippedCount!.data())[0], loss: (await value.data())[0] };
  tf.dispose([value, flippedCount!]);
  return result;
}
