import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { SeededRandom } from '@sparkmim/sparse-ops';
import { dropPath, gelu, Linear } from './index';

/** erf by its Maclaurin series (converges fast for |x| < 4), in float64: an independent reference. */
function referenceErf(x: number): number {
  if (Math.abs(x) > 4) return Math.sign(x);
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

describeBackends('gelu', () => {
  it("is PyTorch's exact erf GELU, 0.5 x (1 + erf(x / sqrt 2))", async () => {
    const xs = Array.from({ length: 81 }, (_, i) => -5 + i * 0.125);
    const x = tf.tensor1d(xs);
    const y = gelu(x);
    const expected = xs.map((value) => 0.5 * value * (1 + referenceErf(value / Math.SQRT2)));
    // Values PyTorch prints for nn.GELU()(torch.tensor([-1., 0., 1., 3.])).
    expect(expected[32]).toBeCloseTo(-0.158655, 6);
    expect(expected[40]).toBe(0);
    expect(expected[48]).toBeCloseTo(0.841345, 6);
    await expectClose(y, expected, { relative: 1e-6, absolute: 1e-6, label: 'gelu' });
    tf.dispose([x, y]);
  });

  it('has a gradient (d/dx GELU = Phi(x) + x phi(x))', async () => {
    const xs = [-2, -0.5, 0, 0.7, 3];
    const x = tf.tensor1d(xs);
    const gradient = tf.grad((input: tf.Tensor) => tf.sum(gelu(input)))(x);
    const expected = xs.map(
      (value) => 0.5 * (1 + referenceErf(value / Math.SQRT2)) + (value * Math.exp((-value * value) / 2)) / Math.sqrt(2 * Math.PI),
    );
    await expectClose(gradient, expected, { relative: 1e-5, absolute: 1e-6, label: 'gelu gradient' });
    tf.dispose([x, gradient]);
  });
});

describeBackends('Linear', () => {
  it('is x W^T + b over the last axis with the PyTorch (out, in) weight stored as [in, out]', async () => {
    const random = new SeededRandom(1);
    const linear = new Linear({ inFeatures: 3, outFeatures: 2, weightInit: random.normal(1), biasInit: random.normal(1) });
    const xValues = Array.from({ length: 2 * 2 * 2 * 3 }, (_, i) => Math.sin(i));
    const x = tf.tensor4d(xValues, [2, 2, 2, 3]);
    const y = linear.apply(x);
    expect(y.shape).toEqual([2, 2, 2, 2]);
    const weight = await linear.weight.data();
    const bias = await linear.bias!.data();
    const expected: number[] = [];
    for (let site = 0; site < 8; site++) {
      for (let out = 0; out < 2; out++) {
        let sum = bias[out];
        for (let input = 0; input < 3; input++) sum += xValues[site * 3 + input] * weight[input * 2 + out];
        expected.push(sum);
      }
    }
    await expectClose(y, expected, { relative: 1e-6, label: 'linear' });
    const wrong = tf.zeros([1, 4]);
    expect(() => linear.apply(wrong)).toThrow('Linear: expected 3 input features, got [1, 4]');
    tf.dispose([x, y, wrong]);
    linear.dispose();
  });
});

describeBackends('dropPath', () => {
  it('returns the branch itself in evaluation mode and at rate 0', () => {
    const x = tf.ones([4, 2, 2, 3]);
    expect(dropPath(x, 0.5, false, new SeededRandom(0))).toBe(x);
    expect(dropPath(x, 0, true, new SeededRandom(0))).toBe(x);
    expect(() => dropPath(x, 1, true, new SeededRandom(0))).toThrow('dropPath: rate must be in [0, 1), got 1');
    x.dispose();
  });

  it('zeroes whole samples with probability rate and scales the rest by 1 / (1 - rate), reproducibly', async () => {
    const batch = 400;
    const x = tf.ones([batch, 2, 2, 3]);
    const first = dropPath(x, 0.25, true, new SeededRandom(7));
    const again = dropPath(x, 0.25, true, new SeededRandom(7));
    const values = await first.data();
    let kept = 0;
    for (let sample = 0; sample < batch; sample++) {
      const sampleValues = new Set(Array.from(values.subarray(sample * 12, (sample + 1) * 12)));
      expect(sampleValues.size).toBe(1);
      const [value] = sampleValues;
      expect([0, 1 / 0.75]).toContainEqual(expect.closeTo(value, 6));
      if (value !== 0) kept++;
    }
    // Binomial(400, 0.75): mean 300, sd 8.7.
    expect(kept).toBeGreaterThan(300 - 40);
    expect(kept).toBeLessThan(300 + 40);
    expect(Array.from(await again.data())).toEqual(Array.from(values));
    tf.dispose([x, first, again]);
  });
});
