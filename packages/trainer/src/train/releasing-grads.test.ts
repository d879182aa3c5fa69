import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import { variableGradsReleasing } from './releasing-grads';

/** A small network with what the backward pass must get right: shared tensors, pass-throughs, a customGrad op. */
function makeNetwork(seed: number) {
  // tf.variable leaves its initial value alive: made in tf.tidy, which keeps variables.
  const [conv1, conv2, scale, frozen, unused] = tf.tidy(() => [
    tf.variable(tf.randomNormal([3, 3, 3, 6], 0, 0.3, 'float32', seed)),
    tf.variable(tf.randomNormal([3, 3, 6, 6], 0, 0.3, 'float32', seed + 1)),
    tf.variable(tf.randomNormal([6], 1, 0.1, 'float32', seed + 2)),
    tf.variable(tf.randomNormal([6], 0, 1, 'float32', seed + 3), false),
    tf.variable(tf.zeros([2])),
  ]);
  // A customGrad op whose gradient is not the autodiff one: it scales dy by 3 (so a wrong path shows).
  const tripledGradSquare = tf.customGrad((x, save) => {
    (save as tf.GradSaveFunc)([x as tf.Tensor]);
    return { value: tf.square(x as tf.Tensor), gradFunc: (dy, saved) => tf.mul(dy, tf.mul(saved[0], 6)) };
  });
  const images = tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', seed + 4) as tf.Tensor4D;
  const loss = () => {
    const a = tf.relu(tf.conv2d(images, conv1 as tf.Tensor4D, 1, 'same'));
    const { mean, variance } = tf.moments(a, [0, 1, 2]);
    const normed = tf.mul(tf.div(tf.sub(a, mean), tf.sqrt(tf.add(variance, 1e-5))), scale);
    // normed is used twice (a residual), and reshaped there and back (pass-through gradients).
    const b = tf.conv2d(normed as tf.Tensor4D, conv2 as tf.Tensor4D, 1, 'same');
    const residual = tf.add(tf.reshape(tf.reshape(b, [2, 64, 6]), [2, 8, 8, 6]), normed);
    const shifted = tf.add(residual, frozen);
    // conv2 is used a second time, so its gradient accumulates.
    const again = tf.conv2d(tripledGradSquare(shifted) as tf.Tensor4D, conv2 as tf.Tensor4D, 1, 'same');
    return tf.mean(tf.square(again)) as tf.Scalar;
  };
  return { variables: [conv1, conv2, scale, frozen, unused], loss, dispose: () => tf.dispose([conv1, conv2, scale, frozen, unused, images]) };
}

/**
 * A chain of convolutions whose first op records tf.memory().numBytes when the backward pass reaches it,
 * last: by then a plain backward pass holds the gradient of every layer's tensors.
 */
function makeChain(layers: number) {
  const filters = tf.tidy(() => Array.from({ length: layers }, (_, index) => tf.variable(tf.randomNormal([3, 3, 8, 8], 0, 0.2, 'float32', index))));
  const images = tf.randomNormal([2, 16, 16, 8], 0, 1, 'float32', 99) as tf.Tensor4D;
  const bytesAtFirstLayer: number[] = [];
  const recordBytes = tf.customGrad((x) => ({
    value: tf.clone(x as tf.Tensor),
    gradFunc: (dy) => {
      bytesAtFirstLayer.push(tf.memory().numBytes);
      return dy as tf.Tensor;
    },
  }));
  const loss = () => {
    let x = tf.relu(tf.conv2d(images, filters[0] as tf.Tensor4D, 1, 'same'));
    x = recordBytes(x) as tf.Tensor4D;
    for (const filter of filters.slice(1)) x = tf.relu(tf.conv2d(x, filter as tf.Tensor4D, 1, 'same'));
    return tf.mean(x) as tf.Scalar;
  };
  return { filters, loss, bytesAtFirstLayer, dispose: () => tf.dispose([...filters, images]) };
}

describeBackends('variableGradsReleasing', () => {
  it("gives tf.variableGrads' value and gradients, bit for bit (null for a frozen variable, none for an unused one)", async () => {
    const network = makeNetwork(1);
    const expected = tf.variableGrads(network.loss, network.variables);
    const actual = variableGradsReleasing(network.loss, network.variables);
    expect(Object.keys(actual.grads).sort()).toEqual(Object.keys(expected.grads).sort());
    const [conv1, conv2, scale, frozen, unused] = network.variables;
    expect(actual.grads[frozen.name]).toBeNull();
    expect(unused.name in actual.grads).toBe(false);
    expect(await actual.value.data()).toEqual(await expected.value.data());
    for (const variable of [conv1, conv2, scale]) {
      expect({ name: variable.name, values: Array.from(await actual.grads[variable.name].data()) }).toEqual({
        name: variable.name,
        values: Array.from(await expected.grads[variable.name].data()),
      });
    }
    tf.dispose([actual.value, expected.value, ...Object.values(actual.grads), ...Object.values(expected.grads)]);
    network.dispose();
  });

  it('leaves only the value and the gradients behind, and holds far less than tf.variableGrads late in the backward pass', async () => {
    const chain = makeChain(10);
    for (const grads of [tf.variableGrads, variableGradsReleasing]) {
      const before = tf.memory().numTensors;
      const { value, grads: gradients } = grads(chain.loss, chain.filters);
      expect(tf.memory().numTensors - before).toBe(1 + chain.filters.length);
      tf.dispose([value, ...Object.values(gradients)]);
    }
    const [plainBytes, releasingBytes] = chain.bytesAtFirstLayer;
    // Plain: every layer's saved tensors and the gradients of all of them; releasing: the first layer's
    // saved tensors, the parameters' gradients and one activation's gradient.
    expect(releasingBytes).toBeLessThan(0.6 * plainBytes);
    chain.dispose();
  });

  it('names a non-scalar value and leaves nothing behind', () => {
    const weight = tf.tidy(() => tf.variable(tf.ones([3])));
    const before = tf.memory().numTensors;
    expect(() => variableGradsReleasing(() => tf.mul(weight, 2) as unknown as tf.Scalar, [weight])).toThrow(
      'variableGradsReleasing: expected f() to return a scalar tensor, got [3]',
    );
    expect(tf.memory().numTensors).toBe(before);
    weight.dispose();
  });

  it('inside an outer gradient computation it is tf.variableGrads (the outer pass needs the tape)', async () => {
    const weight = tf.tidy(() => tf.variable(tf.scalar(3)));
    // d/dx of (d/dw of (w * x)^2) = d/dx of 2 w x^2 = 4 w x = 24 at x = 2.
    const outer = tf.grad((x: tf.Tensor) => {
      const { value, grads } = variableGradsReleasing(() => tf.square(tf.mul(weight, x)) as tf.Scalar, [weight]);
      value.dispose();
      return grads[weight.name];
    });
    const x = tf.scalar(2);
    const derivative = outer(x);
    expect(await derivative.data()).toEqual(new Float32Array([24]));
    tf.dispose([derivative, weight, x]);
  });
});
