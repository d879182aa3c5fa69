// Test support for the row-path specs (resnet-rows, convnext-rows); not a spec itself.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedVariable } from '@sparkmim/sparse-ops';
import { expectClose } from '@sparkmim/test-utils';

/** What the comparison needs of a backbone. */
interface WithParameters {
  namedParameters(): NamedVariable[];
}

/**
 * Asserts that two backbones with the same weights, one run on the masked path and one on rows, give the
 * same loss and the same gradient for every parameter (1e-5 relative), for a loss that weighs each
 * stage's features by a fixed cosine pattern (so that every site and channel counts, differently).
 * `features(model, onRows)` runs one forward pass (inside the gradient tape).
 */
export async function expectRowGradientsMatchMasked<M extends WithParameters>(
  viaMask: M,
  viaRows: M,
  features: (model: M, onRows: boolean) => tf.Tensor[],
): Promise<void> {
  const weighted = (model: M, onRows: boolean) => () =>
    tf.addN(
      features(model, onRows).map((feature, stage) => tf.sum(tf.mul(feature, tf.cos(tf.range(stage, stage + feature.size).reshape(feature.shape))))),
    ) as tf.Scalar;
  const maskParameters = viaMask.namedParameters();
  const rowParameters = viaRows.namedParameters();
  const expected = tf.variableGrads(
    weighted(viaMask, false),
    maskParameters.map((entry) => entry.variable),
  );
  const actual = tf.variableGrads(
    weighted(viaRows, true),
    rowParameters.map((entry) => entry.variable),
  );
  try {
    await expectClose(actual.value, expected.value, { relative: 1e-5, label: 'loss' });
    expect(rowParameters.map((entry) => entry.name)).toEqual(maskParameters.map((entry) => entry.name));
    for (let i = 0; i < maskParameters.length; i++) {
      await expectClose(actual.grads[rowParameters[i].variable.name], expected.grads[maskParameters[i].variable.name], {
        relative: 1e-5,
        absolute: 1e-7,
        label: `d/d${rowParameters[i].name}`,
      });
    }
  } finally {
    tf.dispose([expected.value, actual.value, ...Object.values(expected.grads), ...Object.values(actual.grads)]);
  }
}
