import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { conv2d, conv2dFilterGradient, conv2dTranspose, type FilterGradientMethod } from './conv-filter-gradient';
import type { Padding2d } from './padding';

interface GeometryCase {
  name: string;
  input: [number, number, number, number];
  kernel: [number, number];
  outChannels: number;
  strides: number | [number, number];
  pad: Padding2d;
}

const cases: GeometryCase[] = [
  { name: '3x3 stride 1 pad 1', input: [2, 5, 6, 3], kernel: [3, 3], outChannels: 4, strides: 1, pad: 1 },
  { name: '7x7 stride 2 pad 3 stem', input: [2, 8, 8, 3], kernel: [7, 7], outChannels: 5, strides: 2, pad: 3 },
  { name: '1x1 stride 2 downsample on an odd size', input: [1, 7, 5, 4], kernel: [1, 1], outChannels: 3, strides: 2, pad: 0 },
  { name: "'same' 3x3 stride 2 on an even size (odd pixel after)", input: [2, 6, 6, 2], kernel: [3, 3], outChannels: 2, strides: 2, pad: 'same' },
  {
    name: 'rectangular kernel, strides and padding',
    input: [1, 6, 7, 2],
    kernel: [3, 2],
    outChannels: 3,
    strides: [2, 1],
    pad: [
      [1, 0],
      [0, 1],
    ],
  },
];

/** Seeded values in [-1, 1), so that failures reproduce. */
function values(shape: number[], seed: number): tf.Tensor {
  return tf.randomUniform(shape, -1, 1, 'float32', seed);
}

const methods: FilterGradientMethod[] = ['conv', 'im2col', 'backend'];

describeBackends('conv2d and conv2dTranspose with a chosen filter gradient', ({ backend }) => {
  for (const [c, method] of cases.flatMap((c) => methods.map((method) => [c, method] as const))) {
    it(`matches tf.conv2d's value and gradients (${method}): ${c.name}`, async () => {
      const x = values(c.input, 1) as tf.Tensor4D;
      const filter = values([...c.kernel, c.input[3], c.outChannels], 2) as tf.Tensor4D;
      const padding = typeof c.pad === 'number' || c.pad === 'same' || c.pad === 'valid' ? c.pad : [[0, 0], ...c.pad, [0, 0]];
      // A loss that weighs every output differently, so that a misplaced gradient entry shows.
      const weightsOf = (y: tf.Tensor) => values(y.shape, 3);
      const ours = tf.grads((a: tf.Tensor, b: tf.Tensor) => {
        const y = conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad, { filterGradient: method });
        return tf.sum(tf.mul(y, weightsOf(y)));
      });
      const theirs = tf.grads((a: tf.Tensor, b: tf.Tensor) => {
        const y = tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, padding as never);
        return tf.sum(tf.mul(y, weightsOf(y)));
      });
      const [dxOurs, dFilterOurs] = ours([x, filter]);
      const [dxTheirs, dFilterTheirs] = theirs([x, filter]);
      const yOurs = conv2d(x, filter, c.strides, c.pad);
      const yTheirs = tf.conv2d(x, filter, c.strides, padding as never);
      expect(yOurs.shape).toEqual(yTheirs.shape);
      expect(dFilterOurs.shape).toEqual(filter.shape);
      await expectClose(yOurs, yTheirs, { relative: 1e-5, label: `${backend} value` });
      await expectClose(dxOurs, dxTheirs, { relative: 1e-5, label: `${backend} input gradient` });
      await expectClose(dFilterOurs, dFilterTheirs, { relative: 1e-4, label: `${backend} filter gradient` });
      tf.dispose([x, filter, dxOurs, dFilterOurs, dxTheirs, dFilterTheirs, yOurs, yTheirs]);
    });
  }

  it('im2col gives the same filter gradient when the batch is split into blocks', async () => {
    const x = values([5, 6, 6, 3], 4) as tf.Tensor4D;
    const dy = values([5, 3, 3, 4], 5) as tf.Tensor4D;
    const whole = conv2dFilterGradient(x, dy, [3, 3, 3, 4], 2, 1, { method: 'im2col' });
    // One image's patches are 3 * 3 * 27 = 243 elements: blocks of two images, then one.
    const split = conv2dFilterGradient(x, dy, [3, 3, 3, 4], 2, 1, { method: 'im2col', maxPatchElements: 500 });
    await expectClose(split, whole, { relative: 1e-5, label: `${backend} split batch` });
    tf.dispose([x, dy, whole, split]);
  });

  it('names the expected shapes when x or dy do not fit the filter', () => {
    const x = tf.zeros([1, 4, 4, 3]) as tf.Tensor4D;
    const dy = tf.zeros([1, 4, 4, 2]) as tf.Tensor4D;
    expect(() => conv2dFilterGradient(x, dy, [3, 3, 2, 2], 1, 1)).toThrow('x must have shape [B, H, W, 2]');
    expect(() => conv2dFilterGradient(x, dy, [3, 3, 3, 2], 2, 1)).toThrow('dy must have shape [1, 2, 2, 2], got [1, 4, 4, 2]');
    tf.dispose([x, dy]);
  });

  for (const method of methods) {
    it(`matches tf.conv2dTranspose's value and gradients (${method}; kernel 4, stride 2, padding 1: the decoder's upsampling)`, async () => {
      const x = values([2, 3, 4, 3], 6) as tf.Tensor4D;
      const filter = values([4, 4, 2, 3], 7) as tf.Tensor4D;
      const outputShape: [number, number, number, number] = [2, 6, 8, 2];
      const weights = values(outputShape, 8);
      const loss = (transpose: typeof conv2dTranspose) => (a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(transpose(a as tf.Tensor4D, b as tf.Tensor4D, outputShape, 2, 1), weights));
      const tfTranspose: typeof conv2dTranspose = (a, b, shape, strides, pad) => tf.conv2dTranspose(a, b, shape, strides!, pad as number);
      const [dxOurs, dFilterOurs] = tf.grads(
        loss((a, b, shape, strides, pad) => conv2dTranspose(a, b, shape, strides, pad, { filterGradient: method })),
      )([x, filter]);
      const [dxTheirs, dFilterTheirs] = tf.grads(loss(tfTranspose))([x, filter]);
      const yOurs = conv2dTranspose(x, filter, outputShape, 2, 1);
      const yTheirs = tf.conv2dTranspose(x, filter, outputShape, 2, 1);
      await expectClose(yOurs, yTheirs, { relative: 1e-5, label: `${backend} value` });
      await expectClose(dxOurs, dxTheirs, { relative: 1e-5, label: `${backend} input gradient` });
      await expectClose(dFilterOurs, dFilterTheirs, { relative: 1e-4, label: `${backend} filter gradient` });
      tf.dispose([x, filter, weights, dxOurs, dFilterOurs, dxTheirs, dFilterTheirs, yOurs, yTheirs]);
    });
  }

  it('takes the default method from the tfjs flag SPARKMIM_FILTER_GRADIENT, and rejects an unknown one', async () => {
    const x = values([1, 4, 4, 2], 9) as tf.Tensor4D;
    const dy = values([1, 4, 4, 2], 10) as tf.Tensor4D;
    const expected = conv2dFilterGradient(x, dy, [3, 3, 2, 2], 1, 1, { method: 'backend' });
    try {
      tf.env().set('SPARKMIM_FILTER_GRADIENT', 'im2col');
      const viaFlag = conv2dFilterGradient(x, dy, [3, 3, 2, 2], 1, 1);
      await expectClose(viaFlag, expected, { relative: 1e-5, label: `${backend} im2col via the flag` });
      viaFlag.dispose();
      tf.env().set('SPARKMIM_FILTER_GRADIENT', 'winograd');
      expect(() => conv2dFilterGradient(x, dy, [3, 3, 2, 2], 1, 1)).toThrow(
        "SPARKMIM_FILTER_GRADIENT: expected auto, backend, conv, im2col; got 'winograd'",
      );
    } finally {
      tf.env().set('SPARKMIM_FILTER_GRADIENT', 'auto');
      tf.dispose([x, dy, expected]);
    }
  });

  it('names the valid methods when given another', () => {
    const x = tf.zeros([1, 4, 4, 3]) as tf.Tensor4D;
    const dy = tf.zeros([1, 4, 4, 2]) as tf.Tensor4D;
    expect(() => conv2dFilterGradient(x, dy, [3, 3, 3, 2], 1, 1, { method: 'fft' as FilterGradientMethod })).toThrow(
      "method must be 'backend', 'conv' or 'im2col', got 'fft'",
    );
    tf.dispose([x, dy]);
  });
});
