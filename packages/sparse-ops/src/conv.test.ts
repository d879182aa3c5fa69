import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import { ActiveSites } from './active-sites';
import { sparseConv2d, type SparseConv2dOptions } from './conv';
import { conv2d } from './conv-filter-gradient';
import type { Padding2d } from './padding';
import { evaluate, evaluateWithGradients, expectGridClose, float32Grid, tolerancesFor, toTensor } from './testing/harness';
import { conv2dReference, maskAt, maskFromRows, numericGradients, zeroInactive, type Grid } from './testing/reference';

interface ConvCase {
  name: string;
  input: [number, number, number, number];
  kernel: [number, number];
  outChannels: number;
  strides?: number | [number, number];
  pad?: Padding2d;
  /** The same padding as [top, bottom, left, right], for the reference. */
  sides?: [number, number, number, number];
  dilations?: number | [number, number];
  groups?: number;
  bias?: boolean;
  /** Base active mask, one pattern per batch item ('/' separates rows). */
  mask: string[];
}

const cases: ConvCase[] = [
  {
    name: '3x3 stride 1 pad 1 on a rectangular 4x6 input, mask at half resolution',
    input: [2, 4, 6, 3],
    kernel: [3, 3],
    outChannels: 4,
    pad: 1,
    sides: [1, 1, 1, 1],
    bias: true,
    mask: ['101/010', '011/100'],
  },
  {
    name: '7x7 stride 2 pad 3 stem on an even 8x8 input (PyTorch symmetric padding)',
    input: [1, 8, 8, 3],
    kernel: [7, 7],
    outChannels: 4,
    strides: 2,
    pad: 3,
    sides: [3, 3, 3, 3],
    bias: false,
    mask: ['10/11'],
  },
  {
    name: 'rectangular strides [2, 1]',
    input: [1, 4, 6, 2],
    kernel: [3, 3],
    outChannels: 3,
    strides: [2, 1],
    pad: 1,
    sides: [1, 1, 1, 1],
    bias: true,
    mask: ['101/011'],
  },
  {
    name: 'dilation 2',
    input: [1, 6, 6, 2],
    kernel: [3, 3],
    outChannels: 3,
    pad: 2,
    sides: [2, 2, 2, 2],
    dilations: 2,
    bias: true,
    mask: ['101/010/110'],
  },
  {
    name: 'depthwise with dilation [1, 2] and rectangular padding',
    input: [1, 4, 6, 2],
    kernel: [3, 3],
    outChannels: 2,
    pad: [1, 2],
    sides: [1, 1, 2, 2],
    dilations: [1, 2],
    groups: 2,
    bias: false,
    mask: ['011/110'],
  },
  {
    name: '2 groups',
    input: [1, 4, 4, 4],
    kernel: [3, 3],
    outChannels: 6,
    pad: 1,
    sides: [1, 1, 1, 1],
    groups: 2,
    bias: true,
    mask: ['01/11'],
  },
  {
    name: 'depthwise 7x7 pad 3 (ConvNeXt)',
    input: [1, 6, 6, 4],
    kernel: [7, 7],
    outChannels: 4,
    pad: 3,
    sides: [3, 3, 3, 3],
    groups: 4,
    bias: true,
    mask: ['110/011/101'],
  },
  {
    name: 'depthwise with channel multiplier 2 and stride 2',
    input: [1, 4, 4, 2],
    kernel: [3, 3],
    outChannels: 4,
    strides: 2,
    pad: 1,
    sides: [1, 1, 1, 1],
    groups: 2,
    bias: true,
    mask: ['10/01'],
  },
  {
    name: 'asymmetric explicit padding, mask finer than the output',
    input: [1, 4, 4, 2],
    kernel: [2, 2],
    outChannels: 3,
    strides: 2,
    pad: [
      [0, 1],
      [1, 0],
    ],
    sides: [0, 1, 1, 0],
    bias: true,
    mask: ['1100/0110/1011/0001'],
  },
];

describeBackends('sparseConv2d', ({ backend }) => {
  const tolerance = tolerancesFor(backend);

  for (const testCase of cases) {
    it(`matches the loop reference, with gradients: ${testCase.name}`, async () => {
      const [batch, height, width, inC] = testCase.input;
      const groups = testCase.groups ?? 1;
      const { values: baseMask, shape: maskShape } = maskFromRows(testCase.mask);
      // Inputs are zero at inactive sites, as the previous sparse op leaves them.
      const x = zeroInactive(float32Grid(testCase.input, 1), maskAt(baseMask, maskShape, height, width));
      const filter = float32Grid([...testCase.kernel, inC / groups, testCase.outChannels], 2, 0.5);
      const bias = float32Grid([testCase.outChannels], 3);
      const stride: [number, number] = typeof testCase.strides === 'number' ? [testCase.strides, testCase.strides] : (testCase.strides ?? [1, 1]);
      const dilation: [number, number] =
        typeof testCase.dilations === 'number' ? [testCase.dilations, testCase.dilations] : (testCase.dilations ?? [1, 1]);

      const reference = (xData: Float64Array, filterData: Float64Array, biasData?: Float64Array): Grid => {
        const unmasked = conv2dReference(
          { shape: x.shape, data: xData },
          { shape: filter.shape, data: filterData },
          {
            stride,
            pad: testCase.sides,
            dilation,
            groups,
            bias: biasData,
          },
        );
        const [, outH, outW] = unmasked.shape;
        const outputMask = maskAt(baseMask, maskShape, outH, outW);
        return conv2dReference(
          { shape: x.shape, data: xData },
          { shape: filter.shape, data: filterData },
          {
            stride,
            pad: testCase.sides,
            dilation,
            groups,
            bias: biasData,
            outputMask,
          },
        );
      };
      const inputs = testCase.bias ? [x, filter, bias] : [x, filter];
      const actual = await evaluateWithGradients(([xT, filterT, biasT]) => {
        const active = tf.tensor4d(Float32Array.from(baseMask), [...maskShape, 1]);
        const options: SparseConv2dOptions = {
          strides: testCase.strides,
          pad: testCase.pad,
          dilations: testCase.dilations,
          groups,
          bias: biasT as tf.Tensor1D | undefined,
          active,
        };
        return sparseConv2d(xT as tf.Tensor4D, filterT as tf.Tensor4D, options);
      }, inputs);

      const expected = reference(x.data, filter.data, testCase.bias ? bias.data : undefined);
      expect(expected.shape).toEqual([batch, expected.shape[1], expected.shape[2], testCase.outChannels]);
      await expectGridClose(actual, expected, tolerance.forward, 'output');
      const expectedGradients = numericGradients(
        ([xData, filterData, biasData]) => reference(xData, filterData, biasData).data,
        inputs.map((input) => input.data),
        actual.weights,
      );
      const labels = ['d/dx', 'd/dfilter', 'd/dbias'];
      for (let i = 0; i < inputs.length; i++) {
        await expectGridClose(
          { shape: inputs[i].shape, output: actual.gradients[i] },
          { shape: inputs[i].shape, data: expectedGradients[i] },
          tolerance.gradient,
          labels[i],
        );
      }
    });
  }

  it('keeps the bias out of inactive sites (output exactly 0 there)', async () => {
    const { output } = await evaluate(() => {
      const x = tf.zeros([1, 4, 4, 2]) as tf.Tensor4D;
      const filter = tf.ones([3, 3, 2, 2]) as tf.Tensor4D;
      const active = tf.tensor4d([1, 0, 0, 1], [1, 2, 2, 1]);
      return sparseConv2d(x, filter, { pad: 1, bias: tf.tensor1d([5, 7]), active });
    });
    const expected = Array.from(maskAt([1, 0, 0, 1], [1, 2, 2], 4, 4)).flatMap((m) => [5 * m, 7 * m]);
    expect(Array.from(output)).toEqual(Array.from(expected));
  });

  it('is the ordinary dense conv with no mask or an all-active mask, running the same kernels', async () => {
    const x = float32Grid([1, 4, 4, 3], 5);
    const filter = float32Grid([3, 3, 3, 2], 6);
    // This package's dense conv2d: tf.conv2d, with its filter gradient chosen per backend (on cpu a custom
    // gradient, which the profile lists as one more scope around the same Conv2D kernel).
    const dense = () => tf.add(conv2d(toTensor(x) as tf.Tensor4D, toTensor(filter) as tf.Tensor4D, 2, 1), tf.tensor1d([1, 2]));
    const sites = ActiveSites.fromArray([1, 1, 1, 1], [1, 2, 2]);
    expect(sites.allActive).toBe(true);
    const sparse = (active?: ActiveSites) => () =>
      sparseConv2d(toTensor(x) as tf.Tensor4D, toTensor(filter) as tf.Tensor4D, {
        strides: 2,
        pad: 1,
        bias: tf.tensor1d([1, 2]),
        active,
      });
    const expected = await evaluate(dense);
    expect(Array.from((await evaluate(sparse())).output)).toEqual(Array.from(expected.output));
    expect(Array.from((await evaluate(sparse(sites))).output)).toEqual(Array.from(expected.output));
    const kernelsOf = async (build: () => tf.Tensor) => {
      const profile = await tf.profile(() => tf.tidy(build));
      tf.dispose(profile.result as tf.Tensor);
      return profile.kernelNames;
    };
    const denseKernels = await kernelsOf(dense);
    expect(await kernelsOf(sparse())).toEqual(denseKernels);
    expect(await kernelsOf(sparse(sites))).toEqual(denseKernels);
    sites.dispose();
  });

  it('gives the same result for a plain mask tensor and for ActiveSites', async () => {
    const sites = ActiveSites.fromArray([1, 0, 1, 1], [1, 2, 2]);
    const run = (active: ActiveSites | tf.Tensor4D) => evaluate(() => sparseConv2d(tf.ones([1, 4, 4, 1]), tf.ones([3, 3, 1, 1]), { pad: 1, active }));
    const fromSites = await run(sites);
    const mask = tf.tensor4d([1, 0, 1, 1], [1, 2, 2, 1]);
    const fromTensor = await run(mask);
    mask.dispose();
    sites.dispose();
    expect(Array.from(fromSites.output)).toEqual(Array.from(fromTensor.output));
  });

  it('names the expected and received shapes for a wrong filter, bias, groups or mask', () => {
    // tidy frees the tensors made for each attempt.
    tf.tidy(() => {
      const x = tf.zeros([2, 8, 6, 4]) as tf.Tensor4D;
      const filter = tf.zeros([3, 3, 4, 8]) as tf.Tensor4D;
      expect(() => sparseConv2d(x, tf.zeros([3, 3, 3, 8]) as tf.Tensor4D)).toThrow(
        'sparseConv2d: filter [3, 3, 3, 8] expects 3 input channels (3 x 1 groups), x [2, 8, 6, 4] has 4',
      );
      expect(() => sparseConv2d(x, tf.zeros([3, 4, 8]) as unknown as tf.Tensor4D)).toThrow(
        'sparseConv2d: filter must have shape [kH, kW, inC / groups, outC], got [3, 4, 8]',
      );
      expect(() => sparseConv2d(x, filter, { bias: tf.zeros([4]) as tf.Tensor1D })).toThrow('sparseConv2d: bias must have shape [8], got [4]');
      expect(() => sparseConv2d(x, tf.zeros([3, 3, 2, 6]) as tf.Tensor4D, { groups: 3 })).toThrow(
        'sparseConv2d: groups 3 must divide input channels 4 and output channels 6',
      );
      expect(() => sparseConv2d(x, filter, { pad: 1, active: tf.ones([2, 4, 4, 1]) as tf.Tensor4D })).toThrow(
        'sparseConv2d: active mask [2, 4, 4, 1] does not divide features [2, 8, 6, 8] (width 6 is neither a multiple nor a divisor of 4)',
      );
      expect(() => sparseConv2d(x, filter, { pad: 1, active: tf.ones([1, 4, 3, 1]) as tf.Tensor4D })).toThrow(
        'sparseConv2d: active mask [1, 4, 3, 1] has batch 1 but features [2, 8, 6, 8] have batch 2',
      );
    });
  });
});
