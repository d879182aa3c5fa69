import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import { ActiveSites } from './active-sites';
import type { Padding2d } from './padding';
import { sparseAvgPool2d, sparseMaxPool2d } from './pool';
import { evaluate, evaluateWithGradients, expectGridClose, float32Grid, tolerancesFor, toTensor } from './testing/harness';
import { maskAt, maskFromRows, numericGradients, pool2dReference, zeroInactive, type Grid } from './testing/reference';

interface PoolCase {
  name: string;
  kind: 'max' | 'avg';
  input: [number, number, number, number];
  filterSize: number | [number, number];
  strides?: number | [number, number];
  pad?: Padding2d;
  /** The same padding as [top, bottom, left, right], for the reference. */
  sides?: [number, number, number, number];
  countIncludePad?: boolean;
  mask: string[];
}

const cases: PoolCase[] = [
  {
    name: 'max 3x3 stride 2 pad 1 on even sizes (ResNet stem)',
    kind: 'max',
    input: [2, 8, 6, 3],
    filterSize: 3,
    strides: 2,
    pad: 1,
    sides: [1, 1, 1, 1],
    mask: ['101/011', '110/001'],
  },
  {
    name: 'max 2x2 with the default stride (the window)',
    kind: 'max',
    input: [1, 4, 6, 2],
    filterSize: 2,
    mask: ['101/010'],
  },
  {
    name: 'max rectangular 2x3 window, strides [2, 1], horizontal padding only',
    kind: 'max',
    input: [1, 4, 5, 2],
    filterSize: [2, 3],
    strides: [2, 1],
    pad: [0, 1],
    sides: [0, 0, 1, 1],
    mask: ['10110'],
  },
  {
    name: 'avg 2x2 with the default stride',
    kind: 'avg',
    input: [1, 4, 6, 2],
    filterSize: 2,
    mask: ['110/011'],
  },
  {
    name: 'avg 3x3 stride 2 pad 1, countIncludePad true (PyTorch default)',
    kind: 'avg',
    input: [1, 6, 4, 2],
    filterSize: 3,
    strides: 2,
    pad: 1,
    sides: [1, 1, 1, 1],
    countIncludePad: true,
    mask: ['10/01/11'],
  },
  {
    name: 'avg 3x3 stride 2 pad 1, countIncludePad false',
    kind: 'avg',
    input: [1, 6, 4, 2],
    filterSize: 3,
    strides: 2,
    pad: 1,
    sides: [1, 1, 1, 1],
    countIncludePad: false,
    mask: ['10/01/11'],
  },
  {
    // TensorFlow's 'same' puts the odd padding row/column after: sides [0, 1, 0, 1] here.
    name: "avg 3x3 stride 2 'same' on an even size, countIncludePad false (TensorFlow's own average)",
    kind: 'avg',
    input: [1, 4, 4, 2],
    filterSize: 3,
    strides: 2,
    pad: 'same',
    sides: [0, 1, 0, 1],
    countIncludePad: false,
    mask: ['1/1'],
  },
];

const pair = (value: number | [number, number]): [number, number] => (typeof value === 'number' ? [value, value] : value);

describeBackends('sparse pooling', ({ backend }) => {
  const tolerance = tolerancesFor(backend);

  for (const testCase of cases) {
    it(`matches the loop reference, with gradients: ${testCase.name}`, async () => {
      const [, height, width] = testCase.input;
      const { values: baseMask, shape: maskShape } = maskFromRows(testCase.mask);
      const size = pair(testCase.filterSize);
      const stride = pair(testCase.strides ?? testCase.filterSize);
      const reference = (x: Grid): Grid => {
        const unmasked = pool2dReference(x, {
          kind: testCase.kind,
          size,
          stride,
          pad: testCase.sides,
          countIncludePad: testCase.countIncludePad,
        });
        const outputMask = maskAt(baseMask, maskShape, unmasked.shape[1], unmasked.shape[2]);
        return pool2dReference(x, {
          kind: testCase.kind,
          size,
          stride,
          pad: testCase.sides,
          countIncludePad: testCase.countIncludePad,
          outputMask,
        });
      };
      const op = ([x]: tf.Tensor[]) => {
        const active = tf.tensor4d(Float32Array.from(baseMask), [...maskShape, 1]);
        const options = { filterSize: testCase.filterSize, strides: testCase.strides, pad: testCase.pad, active };
        return testCase.kind === 'max'
          ? sparseMaxPool2d(x as tf.Tensor4D, options)
          : sparseAvgPool2d(x as tf.Tensor4D, { ...options, countIncludePad: testCase.countIncludePad });
      };

      // Forward on a sparse input (zero at inactive sites, so max pooling sees those zeros, as in SparK).
      const sparseInput = zeroInactive(float32Grid(testCase.input, 11), maskAt(baseMask, maskShape, height, width));
      await expectGridClose(await evaluate(() => op([toTensor(sparseInput)])), reference(sparseInput), tolerance.forward, 'output');

      // Gradients on a dense random input: no ties inside a window, so max pooling is differentiable
      // there and central differences with a tiny step are exact.
      const denseInput = float32Grid(testCase.input, 12);
      const actual = await evaluateWithGradients(op, [denseInput]);
      await expectGridClose(actual, reference(denseInput), tolerance.forward, 'dense output');
      const [expectedGradient] = numericGradients(
        ([x]) => reference({ shape: testCase.input, data: x }).data,
        [denseInput.data],
        actual.weights,
        1e-6,
      );
      await expectGridClose(
        { shape: testCase.input, output: actual.gradients[0] },
        { shape: testCase.input, data: expectedGradient },
        tolerance.gradient,
        'd/dx',
      );
    });
  }

  it('is the ordinary dense pooling with no mask or an all-active mask, running the same kernels', async () => {
    const x = float32Grid([1, 4, 4, 2], 13);
    const sites = ActiveSites.fromArray([1, 1, 1, 1], [1, 2, 2]);
    const explicitPad: tf.backend_util.ExplicitPadding = [
      [0, 0],
      [1, 1],
      [1, 1],
      [0, 0],
    ];
    const kernelsOf = async (build: () => tf.Tensor) => {
      const profile = await tf.profile(() => tf.tidy(build));
      const values = Array.from(await (profile.result as tf.Tensor).data());
      tf.dispose(profile.result as tf.Tensor);
      return { values, kernels: profile.kernelNames };
    };
    try {
      const denseMax = await kernelsOf(() => tf.maxPool(toTensor(x) as tf.Tensor4D, 3, 2, explicitPad));
      for (const active of [undefined, sites]) {
        expect(await kernelsOf(() => sparseMaxPool2d(toTensor(x) as tf.Tensor4D, { filterSize: 3, strides: 2, pad: 1, active }))).toEqual(denseMax);
      }
      const denseAvg = await kernelsOf(() => tf.avgPool(toTensor(x) as tf.Tensor4D, 2, 2, 'valid'));
      for (const active of [undefined, sites]) {
        expect(await kernelsOf(() => sparseAvgPool2d(toTensor(x) as tf.Tensor4D, { filterSize: 2, active }))).toEqual(denseAvg);
      }
    } finally {
      sites.dispose();
    }
  });

  it('names the mask and the pooled shape when they do not divide', () => {
    tf.tidy(() => {
      const x = tf.zeros([1, 6, 6, 2]) as tf.Tensor4D;
      expect(() => sparseMaxPool2d(x, { filterSize: 3, strides: 2, pad: 1, active: tf.ones([1, 2, 2, 1]) as tf.Tensor4D })).toThrow(
        'sparseMaxPool2d: active mask [1, 2, 2, 1] does not divide features [1, 3, 3, 2] (height 3 is neither a multiple nor a divisor of 2)',
      );
      expect(() => sparseAvgPool2d(x, { filterSize: 2, active: tf.ones([2, 3, 3, 1]) as tf.Tensor4D })).toThrow(
        'sparseAvgPool2d: active mask [2, 3, 3, 1] has batch 2 but features [1, 3, 3, 2] have batch 1',
      );
    });
  });
});
