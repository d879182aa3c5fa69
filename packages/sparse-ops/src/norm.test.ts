import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import { ActiveSites } from './active-sites';
import { ACTIVE_MOMENTS_KERNEL, CHANNEL_SUMS_KERNEL, activeMoments, sparseBatchNorm, sparseLayerNorm } from './norm';
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

// Random masks for the closed-form gradients: [3, 2, 2] bases over [3, 4, 4, 2] features, the second sample
// all masked (its sites must get no gradient and must not enter the statistics).
const randomMaskValues = [1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1];
const randomMask = () => tf.tensor4d(randomMaskValues, [3, 2, 2, 1]);

/**
 * The statistics as plain tfjs ops (the masked composite sparse-ops used before its one-op version), for
 * autodiff to differentiate: the obvious reference for the hand-written gradients.
 */
function compositeMoments(x: tf.Tensor4D, mask: tf.Tensor4D | undefined): { mean: tf.Tensor1D; variance: tf.Tensor1D } {
  if (!mask) {
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    return { mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D };
  }
  const siteMask = tf.image.resizeNearestNeighbor(mask, [x.shape[1], x.shape[2]]);
  const count = tf.sum(siteMask);
  const mean = tf.div(tf.sum(tf.mul(x, siteMask), [0, 1, 2]), count) as tf.Tensor1D;
  const variance = tf.div(tf.sum(tf.square(tf.mul(tf.sub(x, mean), siteMask)), [0, 1, 2]), count) as tf.Tensor1D;
  return { mean, variance };
}

/** Reads every gradient of `loss` with respect to `inputs` back, leaving no tensor behind. */
async function gradientValues(loss: (...inputs: tf.Tensor[]) => tf.Scalar, inputs: tf.Tensor[]): Promise<Float32Array[]> {
  const gradients = tf.grads(loss)(inputs);
  const values = await Promise.all(gradients.map(async (gradient) => (await gradient.data()) as Float32Array));
  tf.dispose(gradients);
  return values;
}

/** Each gradient against its expected values (a reference's, or autodiff's through tfjs), labelled by input. */
async function expectGradientsClose(
  actual: Float32Array[],
  expected: ArrayLike<number>[],
  inputs: Pick<Grid, 'shape'>[],
  relative: number,
  caseLabel?: string,
) {
  for (let i = 0; i < inputs.length; i++) {
    const label = caseLabel ? `${labels[i]} ${caseLabel}` : labels[i];
    await expectGridClose(
      { shape: inputs[i].shape, output: actual[i] },
      { shape: inputs[i].shape, data: Float64Array.from(expected[i]) },
      relative,
      label,
    );
  }
}

/**
 * Registers `kernelFunc` under `kernelName` for the current backend in place of any kernel registered there
 * (on webgpu, @sparkmim/webgpu-kernels' WGSL one); returns the function that puts the old one back.
 */
function standInKernel(kernelName: string, kernelFunc: tf.KernelFunc): () => void {
  const backendName = tf.getBackend();
  const registered = tf.getKernel(kernelName, backendName);
  if (registered) tf.unregisterKernel(kernelName, backendName);
  tf.registerKernel({ kernelName, backendName, kernelFunc });
  return () => {
    tf.unregisterKernel(kernelName, backendName);
    if (registered) tf.registerKernel(registered);
  };
}

/** Mean and variance against the reference's (both `[C]`). */
async function expectMomentsClose(
  mean: tf.Tensor,
  variance: tf.Tensor,
  expected: { mean: Float64Array; biasedVariance: Float64Array },
  relative: number,
): Promise<void> {
  const channels = expected.mean.length;
  await expectGridClose(
    { shape: mean.shape, output: (await mean.data()) as Float32Array },
    { shape: [channels], data: expected.mean },
    relative,
    'mean',
  );
  await expectGridClose(
    { shape: variance.shape, output: (await variance.data()) as Float32Array },
    { shape: [channels], data: expected.biasedVariance },
    relative,
    'variance',
  );
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
    await expectMomentsClose(mean, variance, expected, tolerance.forward);
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

  it('with no mask or an all-active mask, runs the dense kernels (tf.moments + tf.batchNorm), to the same values', async () => {
    const x = float32Grid([1, 2, 2, 3], 37);
    const sites = ActiveSites.fromArray([1], [1, 1, 1]);
    // Batch norm in training mode is one op with a hand-written gradient: its forward pass runs the same
    // arithmetic kernels as tf.moments + tf.batchNorm, inside the op's own scope entry, with the statistics
    // stacked into one [2, C] tensor (Pack) and taken apart (Unpack); those move C numbers.
    const wrappers = ['unnamed scope', 'Pack', 'Unpack'];
    // A statistics kernel (webgpu's from @sparkmim/webgpu-kernels) would replace tf.moments: the claim is
    // about the fallback, so one registered steps aside here.
    const statisticsKernel = tf.getKernel(ACTIVE_MOMENTS_KERNEL, tf.getBackend());
    if (statisticsKernel) tf.unregisterKernel(ACTIVE_MOMENTS_KERNEL, tf.getBackend());
    const kernelsOf = async (build: () => tf.Tensor) => {
      const profile = await tf.profile(() => tf.tidy(build));
      const values = Array.from(await (profile.result as tf.Tensor).data());
      tf.dispose(profile.result as tf.Tensor);
      return { values, kernels: profile.kernelNames.filter((name) => !wrappers.includes(name)) };
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
      if (statisticsKernel) tf.registerKernel(statisticsKernel);
    }
  });

  it('activeMoments is one op whose gradient equals autodiff of the plain composite (random mask, an all-masked sample)', async () => {
    const x = float32Grid([3, 4, 4, 2], 41, 2, 0.7);
    const meanWeights = tf.tensor1d([0.8, -1.3]);
    const varianceWeights = tf.tensor1d([-0.6, 1.1]);
    try {
      for (const masked of [true, false]) {
        const mask = masked ? randomMask() : undefined;
        const loss = (statistics: { mean: tf.Tensor1D; variance: tf.Tensor1D }) =>
          tf.add(tf.sum(tf.mul(statistics.mean, meanWeights)), tf.sum(tf.mul(statistics.variance, varianceWeights))) as tf.Scalar;
        const input = toTensor(x) as tf.Tensor4D;
        const [actual] = await gradientValues((features) => loss(activeMoments(features as tf.Tensor4D, mask)), [input]);
        const [expected] = await gradientValues((features) => loss(compositeMoments(features as tf.Tensor4D, mask)), [input]);
        await expectGridClose(
          { shape: x.shape, output: actual },
          { shape: x.shape, data: Float64Array.from(expected) },
          tolerance.gradient,
          `d/dx ${masked ? 'masked' : 'dense'}`,
        );
        if (masked) {
          // The all-masked sample (second of three) gets no gradient at all.
          expect(Array.from(actual.subarray(32, 64)).every((value) => value === 0)).toBe(true);
        }
        tf.dispose([input, mask]);
      }
    } finally {
      tf.dispose([meanWeights, varianceWeights]);
    }
  });

  it('sparseBatchNorm in training is one op whose gradient equals autodiff of the plain composite, with or without gamma, beta, mask', async () => {
    const x = float32Grid([3, 4, 4, 2], 42, 1.5, -0.4);
    const gamma = float32Grid([2], 43, 0.5, 1);
    const beta = float32Grid([2], 44);
    const upstream = tf.tensor(Float32Array.from(float32Grid([3, 4, 4, 2], 45).data), [3, 4, 4, 2]);
    const cases = [
      { label: 'masked, gamma and beta', masked: true, affine: true },
      { label: 'masked, no gamma or beta', masked: true, affine: false },
      { label: 'dense, gamma and beta', masked: false, affine: true },
    ];
    try {
      for (const { label, masked, affine } of cases) {
        const mask = masked ? randomMask() : undefined;
        const inputs = affine ? [toTensor(x), toTensor(gamma), toTensor(beta)] : [toTensor(x)];
        const weighted = (output: tf.Tensor) => tf.sum(tf.mul(output, upstream)) as tf.Scalar;
        const actual = await gradientValues(
          (features, scale, shift) =>
            weighted(sparseBatchNorm(features as tf.Tensor4D, { gamma: scale as tf.Tensor1D, beta: shift as tf.Tensor1D, active: mask })),
          inputs,
        );
        const expected = await gradientValues((features, scale, shift) => {
          const { mean, variance } = compositeMoments(features as tf.Tensor4D, mask);
          // tf.batchNorm's own gradient cannot run without a scale (it saves the missing tensor): 1 and 0 stand in.
          const normalised = tf.batchNorm(features as tf.Tensor4D, mean, variance, shift ?? tf.zeros([2]), scale ?? tf.ones([2]), 1e-5);
          return weighted(mask ? tf.mul(normalised, tf.image.resizeNearestNeighbor(mask, [4, 4])) : normalised);
        }, inputs);
        await expectGradientsClose(actual, expected, inputs, tolerance.gradient, label);
        tf.dispose([...inputs, mask]);
      }
    } finally {
      upstream.dispose();
    }
  });

  it(`takes the statistics from a registered ${ACTIVE_MOMENTS_KERNEL} kernel ({x, mask} in, [mean, variance] out)`, async () => {
    // A stand-in kernel for the current backend, made of tfjs ops, that counts its calls: what a backend
    // package registers under that name must give the same statistics. A kernel already registered (on
    // webgpu, @sparkmim/webgpu-kernels' WGSL one, which the other specs here run through) steps aside.
    let calls = 0;
    const restore = standInKernel(ACTIVE_MOMENTS_KERNEL, ({ inputs }) => {
      calls++;
      const { x, mask } = inputs as { x: tf.Tensor4D; mask: tf.Tensor4D };
      expect({ x: x.shape, mask: mask.shape, dtype: mask.dtype }).toEqual({ x: [2, 4, 6, 3], mask: [2, 4, 6, 1], dtype: 'float32' });
      return tf.tidy(() => {
        const { mean, variance } = compositeMoments(x, mask);
        return [mean, variance];
      });
    });
    try {
      const x = float32Grid(shape, 46, 2, 0.5);
      const expected = batchNormTrainReference(x, siteMask, new Float64Array(3).fill(1), new Float64Array(3));
      const [mean, variance] = tf.tidy(() => {
        const moments = activeMoments(toTensor(x) as tf.Tensor4D, maskTensor());
        return [moments.mean, moments.variance];
      });
      expect(calls).toBe(1);
      await expectMomentsClose(mean, variance, expected, tolerance.forward);
      tf.dispose([mean, variance]);
      // Without a mask, the kernel gets a mask of ones.
      const dense = batchNormTrainReference(x, undefined, new Float64Array(3).fill(1), new Float64Array(3));
      const [denseMean, denseVariance] = tf.tidy(() => {
        const moments = activeMoments(toTensor(x) as tf.Tensor4D);
        return [moments.mean, moments.variance];
      });
      expect(calls).toBe(2);
      await expectMomentsClose(denseMean, denseVariance, dense, tolerance.forward);
      tf.dispose([denseMean, denseVariance]);
    } finally {
      restore();
    }
  });

  it(`sums batch norm's gradient over B, H, W with a registered ${CHANNEL_SUMS_KERNEL} kernel ({x} in, [C] out)`, async () => {
    // A stand-in made of tf.sum that counts its calls, in place of any kernel already registered.
    let calls = 0;
    const restore = standInKernel(CHANNEL_SUMS_KERNEL, ({ inputs }) => {
      calls++;
      const { x } = inputs as { x: tf.Tensor4D };
      expect(x.shape).toEqual([3, 4, 4, 2]);
      return tf.sum(x, [0, 1, 2]);
    });
    const x = toTensor(float32Grid([3, 4, 4, 2], 47, 1.5, -0.4));
    const gamma = toTensor(float32Grid([2], 48, 0.5, 1));
    const beta = toTensor(float32Grid([2], 49));
    const upstream = toTensor(float32Grid([3, 4, 4, 2], 50));
    const mask = randomMask();
    try {
      const inputs = [x, gamma, beta];
      const weighted = (output: tf.Tensor) => tf.sum(tf.mul(output, upstream)) as tf.Scalar;
      const actual = await gradientValues(
        (features, scale, shift) =>
          weighted(sparseBatchNorm(features as tf.Tensor4D, { gamma: scale as tf.Tensor1D, beta: shift as tf.Tensor1D, active: mask })),
        inputs,
      );
      expect(calls).toBe(2);
      const expected = await gradientValues((features, scale, shift) => {
        const { mean, variance } = compositeMoments(features as tf.Tensor4D, mask);
        const normalised = tf.batchNorm(features as tf.Tensor4D, mean, variance, shift as tf.Tensor1D, scale as tf.Tensor1D, 1e-5);
        return weighted(tf.mul(normalised, tf.image.resizeNearestNeighbor(mask, [4, 4])));
      }, inputs);
      await expectGradientsClose(actual, expected, inputs, tolerance.gradient);
    } finally {
      tf.dispose([x, gamma, beta, upstream, mask]);
      restore();
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
