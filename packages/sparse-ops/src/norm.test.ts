import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import { ActiveSites } from './active-sites';
import { activeMoments, sparseBatchNorm, sparseLayerNorm } from './norm';
import { evaluate, evaluateWithGradients, expectGridClose, float32Grid, tolerancesFor, toTensor } from './testing/harness';
import {
  batchNormEvalReference,
  batchNormTrainReference,
  layerNormReference,
  maskAt,
  maskFromRows,
  numericGradients,
  zeroInactive,
  type Grid,
} from './testing/reference';

// A rectangular feature map whose mask comes from a coarser base: [2, 4, 6, 3] features, [2, 2, 3] mask.
const shape = [2, 4, 6, 3];
const { values: baseMask, shape: maskShape } = maskFromRows(['101/011', '110/001']);
const siteMask = maskAt(baseMask, maskShape, 4, 6);
const maskTensor = () => tf.tensor4d(Float32Array.from(baseMask), [...maskShape, 1]);
const labels = ['d/dx', 'd/dgamma', 'd/dbeta'];

async function expectGradientsClose(actual: Float32Array[], expected: Float64Array[], inputs: Grid[], relative: number) {
  for (let i = 0; i < inputs.length; i++) {
    await expectGridClose({ shape: inputs[i].shape, output: actual[i] }, { shape: inputs[i].shape, data: expected[i] }, relative, labels[i]);
  }
}

describeBackends('sparse norms', ({ backend }) => {
  const tolerance = tolerancesFor(backend);

  it('activeMoments: mean and biased variance over the active sites only', async () => {
    // Features are not zero at inactive sites here: a wrong mask would change the statistics.
    const x = float32Grid(shape, 21, 2, 0.5);
    const expected = batchNormTrainReference(x, siteMask, new Float64Array(3).fill(1), new Float64Array(3));
    const [mean, variance, count] = tf.tidy(() => {
      const moments = activeMoments(toTensor(x) as tf.Tensor4D, maskTensor());
      return [moments.mean, moments.variance, moments.count];
    });
    await expectGridClose(
      { shape: mean.shape, output: (await mean.data()) as Float32Array },
      { shape: [3], data: expected.mean },
      tolerance.forward,
      'mean',
    );
    await expectGridClose(
      { shape: variance.shape, output: (await variance.data()) as Float32Array },
      { shape: [3], data: expected.biasedVariance },
      tolerance.forward,
      'variance',
    );
    expect(Array.from(await count.data())).toEqual([expected.count]);
    tf.dispose([mean, variance, count]);
  });

  it('sparseBatchNorm (training statistics) matches the gather-BatchNorm1d-scatter reference, with gradients', async () => {
    const x = zeroInactive(float32Grid(shape, 22, 2, 0.5), siteMask);
    const gamma = float32Grid([3], 23, 0.5, 1);
    const beta = float32Grid([3], 24);
    const reference = ([xData, gammaData, betaData]: Float64Array[]) =>
      batchNormTrainReference({ shape, data: xData }, siteMask, gammaData, betaData).y;
    const inputs = [x, gamma, beta];
    const actual = await evaluateWithGradients(
      ([xT, gammaT, betaT]) =>
        sparseBatchNorm(xT as tf.Tensor4D, {
          gamma: gammaT as tf.Tensor1D,
          beta: betaT as tf.Tensor1D,
          active: maskTensor(),
        }),
      inputs,
    );
    await expectGridClose(actual, reference(inputs.map((input) => input.data)), tolerance.forward, 'output');
    const expected = numericGradients(
      (values) => reference(values).data,
      inputs.map((input) => input.data),
      actual.weights,
    );
    await expectGradientsClose(actual.gradients, expected, inputs, tolerance.gradient);
  });

  it('sparseBatchNorm (given running statistics) normalises with them, with gradients', async () => {
    const x = zeroInactive(float32Grid(shape, 25), siteMask);
    const gamma = float32Grid([3], 26, 0.5, 1);
    const beta = float32Grid([3], 27);
    const runningMean = float32Grid([3], 28, 0.2);
    const runningVar = float32Grid([3], 29, 0.3, 1);
    const reference = ([xData, gammaData, betaData]: Float64Array[]) =>
      batchNormEvalReference({ shape, data: xData }, siteMask, gammaData, betaData, runningMean.data, runningVar.data);
    const inputs = [x, gamma, beta];
    const actual = await evaluateWithGradients(
      ([xT, gammaT, betaT]) =>
        sparseBatchNorm(
          xT as tf.Tensor4D,
          { gamma: gammaT as tf.Tensor1D, beta: betaT as tf.Tensor1D, active: maskTensor() },
          toTensor(runningMean) as tf.Tensor1D,
          toTensor(runningVar) as tf.Tensor1D,
        ),
      inputs,
    );
    await expectGridClose(actual, reference(inputs.map((input) => input.data)), tolerance.forward, 'output');
    const expected = numericGradients(
      (values) => reference(values).data,
      inputs.map((input) => input.data),
      actual.weights,
    );
    await expectGradientsClose(actual.gradients, expected, inputs, tolerance.gradient);
  });

  it('sparseLayerNorm matches the per-site reference (eps 1e-6), with gradients', async () => {
    const x = zeroInactive(float32Grid(shape, 31, 2, 0.3), siteMask);
    const gamma = float32Grid([3], 32, 0.5, 1);
    const beta = float32Grid([3], 33);
    const reference = ([xData, gammaData, betaData]: Float64Array[]) =>
      layerNormReference({ shape, data: xData }, siteMask, gammaData, betaData, 1e-6);
    const inputs = [x, gamma, beta];
    const actual = await evaluateWithGradients(
      ([xT, gammaT, betaT]) =>
        sparseLayerNorm(xT as tf.Tensor4D, {
          gamma: gammaT as tf.Tensor1D,
          beta: betaT as tf.Tensor1D,
          active: maskTensor(),
        }),
      inputs,
    );
    await expectGridClose(actual, reference(inputs.map((input) => input.data)), tolerance.forward, 'output');
    const expected = numericGradients(
      (values) => reference(values).data,
      inputs.map((input) => input.data),
      actual.weights,
      1e-5,
    );
    await expectGradientsClose(actual.gradients, expected, inputs, tolerance.gradient);
  });

  it('without a mask, both norms use every site', async () => {
    const x = float32Grid([1, 2, 3, 4], 34, 2);
    const gamma = float32Grid([4], 35, 0.5, 1);
    const beta = float32Grid([4], 36);
    const batchNorm = await evaluate(() =>
      sparseBatchNorm(toTensor(x) as tf.Tensor4D, {
        gamma: toTensor(gamma) as tf.Tensor1D,
        beta: toTensor(beta) as tf.Tensor1D,
      }),
    );
    await expectGridClose(batchNorm, batchNormTrainReference(x, undefined, gamma.data, beta.data).y, tolerance.forward, 'batch norm');
    const layerNorm = await evaluate(() =>
      sparseLayerNorm(toTensor(x) as tf.Tensor4D, {
        gamma: toTensor(gamma) as tf.Tensor1D,
        beta: toTensor(beta) as tf.Tensor1D,
      }),
    );
    await expectGridClose(layerNorm, layerNormReference(x, undefined, gamma.data, beta.data), tolerance.forward, 'layer norm');
  });

  it('with no mask or an all-active mask, runs exactly the dense kernels (tf.moments + tf.batchNorm)', async () => {
    const x = float32Grid([1, 2, 2, 3], 37);
    const sites = ActiveSites.fromArray([1], [1, 1, 1]);
    const kernelsOf = async (build: () => tf.Tensor) => {
      const profile = await tf.profile(() => tf.tidy(build));
      const values = Array.from(await (profile.result as tf.Tensor).data());
      tf.dispose(profile.result as tf.Tensor);
      return { values, kernels: profile.kernelNames };
    };
    try {
      const dense = await kernelsOf(() => {
        const input = toTensor(x) as tf.Tensor4D;
        const { mean, variance } = tf.moments(input, [0, 1, 2]);
        return tf.batchNorm(input, mean, variance, undefined, undefined, 1e-5);
      });
      expect(await kernelsOf(() => sparseBatchNorm(toTensor(x) as tf.Tensor4D))).toEqual(dense);
      expect(await kernelsOf(() => sparseBatchNorm(toTensor(x) as tf.Tensor4D, { active: sites }))).toEqual(dense);
      const layerNorm = await kernelsOf(() => sparseLayerNorm(toTensor(x) as tf.Tensor4D));
      expect(await kernelsOf(() => sparseLayerNorm(toTensor(x) as tf.Tensor4D, { active: sites }))).toEqual(layerNorm);
    } finally {
      sites.dispose();
    }
  });

  it('names the expected and received shapes for wrong gamma, beta, statistics or mask', () => {
    tf.tidy(() => {
      const x = tf.zeros([2, 4, 4, 3]) as tf.Tensor4D;
      expect(() => sparseBatchNorm(x, { gamma: tf.ones([4]) as tf.Tensor1D })).toThrow('sparseBatchNorm: gamma must have shape [3], got [4]');
      expect(() => sparseBatchNorm(x, { beta: tf.ones([1, 3]) as unknown as tf.Tensor1D })).toThrow(
        'sparseBatchNorm: beta must have shape [3], got [1, 3]',
      );
      expect(() => sparseBatchNorm(x, {}, tf.zeros([2]) as tf.Tensor1D, tf.ones([2]) as tf.Tensor1D)).toThrow(
        'sparseBatchNorm: mean must have shape [3], got [2]',
      );
      expect(() => sparseBatchNorm(x, {}, tf.zeros([3]) as tf.Tensor1D)).toThrow(
        'sparseBatchNorm: pass both mean and variance (inference) or neither (training), got only mean',
      );
      expect(() => sparseLayerNorm(x, { gamma: tf.ones([6]) as tf.Tensor1D })).toThrow('sparseLayerNorm: gamma must have shape [3], got [6]');
      expect(() => sparseLayerNorm(tf.zeros([4, 3]) as unknown as tf.Tensor4D)).toThrow(
        'sparseLayerNorm: x must have shape [B, H, W, C], got [4, 3]',
      );
      expect(() => sparseBatchNorm(x, { active: tf.ones([1, 2, 2, 1]) as tf.Tensor4D })).toThrow(
        'sparseBatchNorm: active mask [1, 2, 2, 1] has batch 1 but features [2, 4, 4, 3] have batch 2',
      );
      expect(() => activeMoments(x, tf.ones([2, 3, 3, 1]) as tf.Tensor4D)).toThrow(
        'activeMoments: active mask [2, 3, 3, 1] does not divide features [2, 4, 4, 3] (height 4 is neither a multiple nor a divisor of 3)',
      );
    });
  });
});
