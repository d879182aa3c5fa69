// SparkActiveMoments against a float64 two-pass loop written here (and SparkChannelSums against a sum loop): on webgpu the kernel itself, on cpu
// (where nothing of ours is registered) the loop against the tfjs composite it stands for, so that the
// reference is checked too. Cases: one and several site slices, channels beyond one 64-wide block, a sample
// with no active site, a large-mean channel (which E[x^2] - E[x]^2 would get wrong), no active site at all.
import * as tf from '@tensorflow/tfjs-core';
// test-utils from the workspace root's dev dependencies (see kernels.test.ts for why not this package's).
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { registerWebGpuTrainingKernels } from '../index';
import { ACTIVE_MOMENTS_KERNEL, CHANNEL_SUMS_KERNEL, planActiveMoments } from './ActiveMoments';

interface MomentsCase {
  name: string;
  shape: [number, number, number, number];
  /** Keeps a site when the seeded draw is below this; a sample listed in `emptySamples` keeps none. */
  keep: number;
  emptySamples?: number[];
  /** Values are offset + scale * (uniform in [-1, 1)). */
  offset?: number;
  scale?: number;
  relative?: number;
}

const CASES: MomentsCase[] = [
  { name: 'one slice, a sample with no active site', shape: [2, 3, 5, 3], keep: 0.5, emptySamples: [1] },
  { name: 'channels beyond one 64-wide block', shape: [1, 4, 4, 70], keep: 0.6 },
  { name: 'sites split into slices', shape: [2, 20, 20, 2], keep: 0.4 },
  // Variance 3e-5 around a mean of 1000: E[x^2] - E[x]^2 in float32 is off by ~0.06 here.
  { name: 'a large mean (two passes)', shape: [2, 6, 6, 2], keep: 0.5, offset: 1000, scale: 0.01, relative: 2e-3 },
];

function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 16807) % 2147483647;
    return state / 2147483647;
  };
}

function makeInputs(c: MomentsCase, seed: number): { x: Float32Array; mask: Float32Array } {
  const [batch, height, width, channels] = c.shape;
  const random = seeded(seed);
  const x = Float32Array.from({ length: batch * height * width * channels }, () => (c.offset ?? 0) + (c.scale ?? 1) * (2 * random() - 1));
  const sitesPerSample = height * width;
  const mask = Float32Array.from({ length: batch * sitesPerSample }, (_, site) =>
    c.emptySamples?.includes(Math.floor(site / sitesPerSample)) ? 0 : random() < c.keep ? 1 : 0,
  );
  return { x, mask };
}

/** Mean, then biased variance of the deviations from it, over the active sites, in float64. */
function referenceMoments(x: Float32Array, mask: Float32Array, channels: number): { mean: Float64Array; variance: Float64Array } {
  const mean = new Float64Array(channels);
  const variance = new Float64Array(channels);
  const count = mask.reduce((sum, weight) => sum + weight, 0);
  for (let c = 0; c < channels; c++) {
    let sum = 0;
    for (let site = 0; site < mask.length; site++) if (mask[site]) sum += x[site * channels + c];
    mean[c] = sum / count;
    let squares = 0;
    for (let site = 0; site < mask.length; site++) if (mask[site]) squares += (x[site * channels + c] - mean[c]) ** 2;
    variance[c] = squares / count;
  }
  return { mean, variance };
}

/** What the kernel stands for, as tfjs ops (sparse-ops' composite). */
function compositeMoments(x: tf.Tensor4D, mask: tf.Tensor4D): tf.Tensor1D[] {
  return tf.tidy(() => {
    const count = tf.sum(mask);
    const mean = tf.div(tf.sum(tf.mul(x, mask), [0, 1, 2]), count);
    const variance = tf.div(tf.sum(tf.square(tf.mul(tf.sub(x, mean), mask)), [0, 1, 2]), count);
    return [mean, variance] as tf.Tensor1D[];
  });
}

describeBackends('webgpu-kernels: SparkActiveMoments and SparkChannelSums', ({ backend }) => {
  beforeAll(() => {
    if (backend === 'webgpu') registerWebGpuTrainingKernels();
  });

  const run = (x: tf.Tensor4D, mask: tf.Tensor4D): tf.Tensor1D[] =>
    backend === 'webgpu' ? (tf.engine().runKernel(ACTIVE_MOMENTS_KERNEL, { x, mask }, {}) as tf.Tensor1D[]) : compositeMoments(x, mask);

  it('is registered for webgpu only', () => {
    expect(tf.getKernel(ACTIVE_MOMENTS_KERNEL, backend) !== undefined).toBe(backend === 'webgpu');
    expect(tf.getKernel(CHANNEL_SUMS_KERNEL, backend) !== undefined).toBe(backend === 'webgpu');
  });

  it('splits the sites into slices only when there are enough of them', () => {
    expect(planActiveMoments(30, 3).slices).toBe(1);
    expect(planActiveMoments(800, 2)).toEqual({ sites: 800, channels: 2, slices: 25, sitesPerSlice: 32 });
    // 32 x 56 x 56 sites of 64 channels: 1024 workgroups of 98 sites.
    expect(planActiveMoments(100352, 64)).toEqual({ sites: 100352, channels: 64, slices: 1024, sitesPerSlice: 98 });
  });

  CASES.forEach((c, index) => {
    it(`${c.name}: mean and biased variance match the two-pass loop`, async () => {
      const [batch, height, width, channels] = c.shape;
      const { x, mask } = makeInputs(c, 17 + index);
      const expected = referenceMoments(x, mask, channels);
      const xTensor = tf.tensor4d(x, c.shape);
      const maskTensor = tf.tensor4d(mask, [batch, height, width, 1]);
      const [mean, variance] = run(xTensor, maskTensor);
      try {
        expect([mean.shape, variance.shape]).toEqual([[channels], [channels]]);
        const relative = c.relative ?? 1e-5;
        await expectClose(await mean.data(), expected.mean, { relative, label: `${c.name}: mean` });
        await expectClose(await variance.data(), expected.variance, { relative, label: `${c.name}: variance` });
      } finally {
        tf.dispose([xTensor, maskTensor, mean, variance]);
      }
    });
  });

  it('gives NaN for every channel when no site is active', async () => {
    const xTensor = tf.ones([2, 3, 3, 5]) as tf.Tensor4D;
    const maskTensor = tf.zeros([2, 3, 3, 1]) as tf.Tensor4D;
    const [mean, variance] = run(xTensor, maskTensor);
    try {
      expect(Array.from(await mean.data()).every(Number.isNaN)).toBe(true);
      expect(Array.from(await variance.data()).every(Number.isNaN)).toBe(true);
    } finally {
      tf.dispose([xTensor, maskTensor, mean, variance]);
    }
  });

  CASES.slice(0, 3).forEach((c, index) => {
    it(`${CHANNEL_SUMS_KERNEL}, ${c.name}: sums over B, H, W match the loop`, async () => {
      const channels = c.shape[3];
      const { x } = makeInputs(c, 31 + index);
      const expected = new Float64Array(channels);
      for (let i = 0; i < x.length; i++) expected[i % channels] += x[i];
      const xTensor = tf.tensor4d(x, c.shape);
      const sums =
        backend === 'webgpu' ? (tf.engine().runKernel(CHANNEL_SUMS_KERNEL, { x: xTensor }, {}) as tf.Tensor1D) : tf.sum(xTensor, [0, 1, 2]);
      try {
        expect(sums.shape).toEqual([channels]);
        await expectClose(await sums.data(), expected, { relative: 1e-5, label: `${c.name}: sums` });
      } finally {
        tf.dispose([xTensor, sums]);
      }
    });
  });

  it('names the expected and received mask shape', () => {
    if (backend !== 'webgpu') return; // the kernel exists on webgpu only
    tf.tidy(() => {
      const x = tf.zeros([2, 4, 4, 3]);
      expect(() => tf.engine().runKernel(ACTIVE_MOMENTS_KERNEL, { x, mask: tf.zeros([2, 2, 2, 1]) }, {})).toThrow(
        'SparkActiveMoments (@sparkmim/webgpu-kernels): expected mask of shape [2, 4, 4, 1], got [2, 2, 2, 1]',
      );
    });
  });
});
