import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import { ActiveSites } from './active-sites';
import { densify } from './densify';
import { evaluateWithGradients, expectGridClose, float32Grid, tolerancesFor } from './testing/harness';
import { densifyReference, maskAt, maskFromRows, numericGradients } from './testing/reference';

describeBackends('densify', ({ backend }) => {
  const tolerance = tolerancesFor(backend);

  it('fills inactive sites with the mask token and keeps active ones, with gradients for both', async () => {
    const shape = [2, 4, 6, 3];
    const { values: baseMask, shape: maskShape } = maskFromRows(['101/011', '110/001']);
    const siteMask = maskAt(baseMask, maskShape, 4, 6);
    const features = float32Grid(shape, 41);
    const token = float32Grid([3], 42);
    const reference = ([featureData, tokenData]: Float64Array[]) => densifyReference({ shape, data: featureData }, siteMask, tokenData);
    const actual = await evaluateWithGradients(
      ([featuresT, tokenT]) => densify(featuresT as tf.Tensor4D, tf.tensor4d(Float32Array.from(baseMask), [...maskShape, 1]), tokenT as tf.Tensor1D),
      [features, token],
    );
    // A pure selection: exact on every backend.
    await expectGridClose(actual, reference([features.data, token.data]), 0, 'output');
    const [featureGradient, tokenGradient] = numericGradients((values) => reference(values).data, [features.data, token.data], actual.weights);
    await expectGridClose({ shape, output: actual.gradients[0] }, { shape, data: featureGradient }, tolerance.gradient, 'd/dfeatures');
    await expectGridClose({ shape: [3], output: actual.gradients[1] }, { shape: [3], data: tokenGradient }, tolerance.gradient, 'd/dtoken');
  });

  it('with every site active returns the features and gives the token a zero gradient', async () => {
    const sites = ActiveSites.fromArray([1, 1], [1, 1, 2]);
    const features = float32Grid([1, 2, 4, 2], 43);
    const actual = await evaluateWithGradients(
      ([featuresT, tokenT]) => densify(featuresT as tf.Tensor4D, sites, tokenT as tf.Tensor1D),
      [features, float32Grid([2], 44)],
    );
    sites.dispose();
    expect(Array.from(actual.output)).toEqual(Array.from(Float32Array.from(features.data)));
    expect(Array.from(actual.gradients[1])).toEqual([0, 0]);
  });

  it('names the expected and received shapes for a wrong token, features or mask', () => {
    tf.tidy(() => {
      const features = tf.zeros([2, 4, 4, 3]) as tf.Tensor4D;
      const active = tf.ones([2, 2, 2, 1]) as tf.Tensor4D;
      expect(() => densify(features, active, tf.zeros([4]) as tf.Tensor1D)).toThrow('densify: maskToken must have shape [3], got [4]');
      expect(() => densify(tf.zeros([4, 4, 3]) as unknown as tf.Tensor4D, active, tf.zeros([3]) as tf.Tensor1D)).toThrow(
        'densify: features must have shape [B, H, W, C], got [4, 4, 3]',
      );
      expect(() => densify(features, tf.ones([3, 2, 2, 1]) as tf.Tensor4D, tf.zeros([3]) as tf.Tensor1D)).toThrow(
        'densify: active mask [3, 2, 2, 1] has batch 3 but features [2, 4, 4, 3] have batch 2',
      );
    });
  });
});
