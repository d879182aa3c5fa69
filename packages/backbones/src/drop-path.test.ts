import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { createBackbone, dropPath, type Backbone } from './index';

// Drop path as the backbones use it with a caller's stream (the training run's): which samples survive,
// their scale, how many numbers a forward pass draws, and that evaluation mode ignores it.
describeBackends('drop path with a caller stream', () => {
  it('keeps sample i when its draw is below 1 - rate, scaled by 1 / (1 - rate), zero otherwise', async () => {
    const x = tf.randomNormal([4, 2, 3, 5], 0, 1, 'float32', 3);
    const draws = [0.1, 0.9, 0.7499, 0.75];
    let next = 0;
    const y = dropPath(x, 0.25, true, () => draws[next++]);
    expect(next).toBe(4);
    const input = await x.data();
    const expected = Array.from(input, (value, i) => {
      const sample = Math.floor(i / 30);
      return draws[sample] < 0.75 ? value / 0.75 : 0;
    });
    await expectClose(y, expected, { relative: 1e-6, label: 'dropPath' });
    tf.dispose([x, y]);
  });

  for (const name of ['resnet18', 'convnext_tiny'] as const) {
    it(`${name}: a forward pass draws one number per sample and block with a rate above 0; kept paths are rescaled; eval draws nothing`, async () => {
      // Branches that start non-zero (the official inits zero them: zero_init_last, layer scale 1e-6).
      const options =
        name === 'resnet18'
          ? { depths: [1, 1, 2, 1], stemWidth: 4, channels: [4, 4, 8, 8], zeroInitLast: false }
          : { depths: [1, 1, 2, 1], dims: [4, 4, 8, 8], layerScaleInit: 1 };
      const withDrop: Backbone = createBackbone(name, { ...options, dropPathRate: 0.3, seed: 5 });
      const without: Backbone = createBackbone(name, { ...options, dropPathRate: 0, seed: 5 });
      const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      // In evaluation mode (first: training moves the batch-norm running statistics) the two are the same
      // function and nothing is drawn.
      const never = () => {
        throw new Error('evaluation mode drew a random number');
      };
      const evalDrop = withDrop.eval().forward(x, { random: never });
      const evalPlain = without.eval().forward(x);
      for (let i = 0; i < 4; i++) await expectClose(evalDrop[i], evalPlain[i], { relative: 1e-6, label: `eval map ${i}` });
      let drawn = 0;
      const keepAll = () => {
        drawn++;
        return 0;
      };
      // Five blocks: the first has rate 0 (linear from 0), so four draw, two samples each.
      const kept = withDrop.train().forward(x, { random: keepAll });
      expect(drawn).toBe(4 * 2);
      const plain = without.train().forward(x);
      // In training, kept branches are scaled by 1 / (1 - rate): keeping every path still differs from rate 0.
      const [keptLast, plainLast] = [kept[3], plain[3]];
      const differs = tf.tidy(() => tf.max(tf.abs(tf.sub(keptLast, plainLast))));
      expect((await differs.data())[0]).toBeGreaterThan(1e-4);
      tf.dispose([x, kept, plain, differs, evalDrop, evalPlain]);
      withDrop.dispose();
      without.dispose();
    });
  }
});
