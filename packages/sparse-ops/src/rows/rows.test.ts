import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { activeAt } from '../active-sites';
import { sparseConv2d } from '../conv';
import { sparseBatchNorm, sparseLayerNorm } from '../norm';
import type { Padding2d } from '../padding';
import { SparseBatchNorm2d, SparseConv2d, SparseLayerNorm, SparseMaxPool2d } from '../layers';
import { sparseAvgPool2d, sparseMaxPool2d } from '../pool';
import { evaluateWithGradients, float32Grid } from '../testing/harness';
import { seededValues, type Grid } from '../testing/reference';
import { fromRows, rowAvgPool2d, rowBatchNorm, rowConv2d, rowLayerNorm, rowLinear, rowMaxPool2d, toRows } from './ops';
import { RowSites, windowOutputSize } from './row-sites';

// Every row op against the masked-dense op of this package (itself checked against loop references in
// conv.test.ts, pool.test.ts and norm.test.ts): the rows path is toRows -> row op -> fromRows, the dense
// path masks the input and runs the masked op, and outputs and gradients (of sum(output * seeded weights))
// must agree at every site. A wrong neighbour, sentinel or inverse table shows as an error of order 1.
const relative = 1e-5;

/** A seeded 0/1 mask with about 40% active sites (SparK's ratio 0.6), at least one per image. */
function randomMask([batch, height, width]: [number, number, number], seed: number): number[] {
  const values = Array.from(seededValues(batch * height * width, seed), (v) => (v < -0.2 ? 1 : 0));
  for (let b = 0; b < batch; b++) values[b * height * width + ((b + seed) % (height * width))] = 1;
  return values;
}

interface PathPair {
  /** Masked-dense: receives `[x, ...parameters]` and the base mask tensor. */
  dense: (inputs: tf.Tensor[], mask: tf.Tensor4D) => tf.Tensor;
  /** Rows: receives `[rows of x, ...parameters]` and the row sites; returns rows at `outputSize`. */
  rows: (inputs: tf.Tensor[], sites: RowSites) => tf.Tensor2D;
  outputSize: [number, number];
}

async function expectRowsMatchDense(
  maskShape: [number, number, number],
  maskSeed: number,
  inputs: Grid[],
  pair: PathPair,
  gradientLabels: string[],
): Promise<void> {
  const maskValues = randomMask(maskShape, maskSeed);
  const sites = RowSites.fromArray(maskValues, maskShape);
  try {
    const dense = await evaluateWithGradients(([x, ...rest]) => {
      const mask = tf.tensor4d(maskValues, [...maskShape, 1]);
      return pair.dense([tf.mul(x, activeAt(mask, x)), ...rest], mask);
    }, inputs);
    const rows = await evaluateWithGradients(
      ([x, ...rest]) => fromRows(pair.rows([toRows(x as tf.Tensor4D, sites), ...rest], sites), sites, pair.outputSize),
      inputs,
    );
    expect(rows.shape).toEqual(dense.shape);
    await expectClose(rows.output, dense.output, { relative, absolute: 1e-7, label: 'forward' });
    for (let i = 0; i < inputs.length; i++) {
      await expectClose(rows.gradients[i], dense.gradients[i], { relative, absolute: 1e-7, label: gradientLabels[i] });
    }
  } finally {
    sites.dispose();
  }
}

interface ConvCase {
  name: string;
  input: [number, number, number, number];
  mask: [number, number, number];
  filter: [number, number, number, number];
  strides?: number | [number, number];
  pad?: Padding2d;
  dilations?: number;
  groups?: number;
}

const convCases: ConvCase[] = [
  { name: 'submanifold 3x3 (stride 1, pad 1)', input: [2, 8, 8, 3], mask: [2, 4, 4], filter: [3, 3, 3, 4], pad: 1 },
  // More input than output channels: the filter gradient then comes from the transposed gather (fewer
  // input channels: from the gathered input instead); both layouts are covered.
  { name: 'submanifold 3x3, 4 -> 2 channels', input: [2, 8, 8, 4], mask: [2, 4, 4], filter: [3, 3, 4, 2], pad: 1 },
  { name: '3x3 stride 2 pad 1 (ResNet downsampling conv)', input: [2, 8, 8, 3], mask: [2, 4, 4], filter: [3, 3, 3, 4], strides: 2, pad: 1 },
  { name: '1x1 stride 2 (ResNet shortcut)', input: [2, 8, 8, 3], mask: [2, 4, 4], filter: [1, 1, 3, 4], strides: 2 },
  {
    name: '7x7 stride 2 pad 3 (ResNet stem), mask coarser than the output',
    input: [2, 8, 8, 3],
    mask: [2, 2, 2],
    filter: [7, 7, 3, 2],
    strides: 2,
    pad: 3,
  },
  { name: '2x2 stride 2 (ConvNeXt downsampling), rectangular map', input: [2, 4, 6, 3], mask: [2, 2, 3], filter: [2, 2, 3, 4], strides: 2 },
  { name: '1x1 pointwise (plain matmul)', input: [2, 4, 6, 3], mask: [2, 2, 3], filter: [1, 1, 3, 5] },
  { name: '3x3 dilation 2 pad 2, rectangular map', input: [2, 4, 6, 2], mask: [2, 2, 3], filter: [3, 3, 2, 3], pad: 2, dilations: 2 },
  { name: 'depthwise 7x7 pad 3 (ConvNeXt)', input: [2, 8, 8, 4], mask: [2, 4, 4], filter: [7, 7, 1, 4], pad: 3, groups: 4 },
  // Fewer rows than input channels (a deep stage: ResNet-18's 7x7 layer4 keeps ~40 rows of 512 channels):
  // the input gradient is then the transposed product.
  // (16 sites at most, 20 channels.)
  { name: '3x3 on fewer rows than input channels, 20 -> 5', input: [2, 2, 4, 20], mask: [2, 2, 4], filter: [3, 3, 20, 5], pad: 1 },
];

describeBackends('row ops', () => {
  for (const [index, testCase] of convCases.entries()) {
    it(`rowConv2d ${testCase.name} equals sparseConv2d, with gradients`, async () => {
      const [, height, width] = testCase.input;
      const outC = testCase.filter[3];
      const options = { strides: testCase.strides, pad: testCase.pad, dilations: testCase.dilations, groups: testCase.groups };
      const outputSize = windowOutputSize([height, width], { windowSize: [testCase.filter[0], testCase.filter[1]], ...options });
      await expectRowsMatchDense(
        testCase.mask,
        10 + index,
        [float32Grid(testCase.input, 1 + index), float32Grid(testCase.filter, 2 + index, 0.5), float32Grid([outC], 3 + index)],
        {
          dense: ([x, filter, bias], active) =>
            sparseConv2d(x as tf.Tensor4D, filter as tf.Tensor4D, { ...options, bias: bias as tf.Tensor1D, active }),
          rows: ([rows, filter, bias], sites) =>
            rowConv2d(rows as tf.Tensor2D, filter as tf.Tensor4D, { ...options, sites, inputSize: [height, width], bias: bias as tf.Tensor1D }),
          outputSize,
        },
        ['d/dx', 'd/dfilter', 'd/dbias'],
      );
    });
  }

  it('rowConv2d without the input gradient: the same filter gradient, a zero input gradient', async () => {
    const maskValues = randomMask([2, 4, 4], 21);
    const sites = RowSites.fromArray(maskValues, [2, 4, 4]);
    try {
      const inputs = [float32Grid([2, 8, 8, 3], 21), float32Grid([7, 7, 3, 4], 22, 0.5)];
      const run = (inputGradient: boolean) =>
        evaluateWithGradients(
          ([x, filter]) =>
            fromRows(
              rowConv2d(toRows(x as tf.Tensor4D, sites), filter as tf.Tensor4D, { sites, inputSize: [8, 8], strides: 2, pad: 3, inputGradient }),
              sites,
              [4, 4],
            ),
          inputs,
        );
      const full = await run(true);
      const filterOnly = await run(false);
      await expectClose(filterOnly.output, full.output, { relative, label: 'forward' });
      await expectClose(filterOnly.gradients[1], full.gradients[1], { relative, label: 'd/dfilter' });
      expect(Array.from(filterOnly.gradients[0]).every((value) => value === 0)).toBe(true);
      expect(Array.from(full.gradients[0]).some((value) => value !== 0)).toBe(true);
    } finally {
      sites.dispose();
    }
  });

  it('rowLinear equals a masked 1x1 convolution, with gradients', async () => {
    await expectRowsMatchDense(
      [2, 2, 3],
      31,
      [float32Grid([2, 4, 6, 3], 31), float32Grid([3, 5], 32), float32Grid([5], 33)],
      {
        dense: ([x, weight, bias], active) =>
          sparseConv2d(x as tf.Tensor4D, tf.reshape(weight, [1, 1, 3, 5]) as tf.Tensor4D, { bias: bias as tf.Tensor1D, active }),
        rows: ([rows, weight, bias]) => rowLinear(rows as tf.Tensor2D, weight as tf.Tensor2D, bias as tf.Tensor1D),
        outputSize: [4, 6],
      },
      ['d/dx', 'd/dweight', 'd/dbias'],
    );
  });

  it('rowMaxPool2d 3x3 stride 2 pad 1 (ResNet stem) equals sparseMaxPool2d, with gradients', async () => {
    // Negative inputs, so that the zeros of inactive sites inside a window often win, as in the masked map.
    await expectRowsMatchDense(
      [2, 4, 4],
      41,
      [float32Grid([2, 8, 8, 3], 41, 1, -0.4)],
      {
        dense: ([x], active) => sparseMaxPool2d(x as tf.Tensor4D, { filterSize: 3, strides: 2, pad: 1, active }),
        rows: ([rows], sites) => rowMaxPool2d(rows as tf.Tensor2D, { sites, inputSize: [8, 8], filterSize: 3, strides: 2, pad: 1 }),
        outputSize: [4, 4],
      },
      ['d/dx'],
    );
  });

  it('rowAvgPool2d 2x2 (default stride) equals sparseAvgPool2d, with gradients', async () => {
    await expectRowsMatchDense(
      [2, 2, 3],
      51,
      [float32Grid([2, 4, 6, 3], 51)],
      {
        dense: ([x], active) => sparseAvgPool2d(x as tf.Tensor4D, { filterSize: 2, active }),
        rows: ([rows], sites) => rowAvgPool2d(rows as tf.Tensor2D, { sites, inputSize: [4, 6], filterSize: 2 }),
        outputSize: [2, 3],
      },
      ['d/dx'],
    );
  });

  it('rowAvgPool2d 3x3 pad 1 without counting padding equals sparseAvgPool2d, with gradients', async () => {
    await expectRowsMatchDense(
      [2, 2, 3],
      52,
      [float32Grid([2, 4, 6, 3], 52)],
      {
        dense: ([x], active) => sparseAvgPool2d(x as tf.Tensor4D, { filterSize: 3, strides: 1, pad: 1, countIncludePad: false, active }),
        rows: ([rows], sites) =>
          rowAvgPool2d(rows as tf.Tensor2D, { sites, inputSize: [4, 6], filterSize: 3, strides: 1, pad: 1, countIncludePad: false }),
        outputSize: [4, 6],
      },
      ['d/dx'],
    );
  });

  it('rowBatchNorm (training statistics) equals sparseBatchNorm, with gradients', async () => {
    await expectRowsMatchDense(
      [2, 4, 4],
      61,
      [float32Grid([2, 8, 8, 3], 61, 2, 0.5), float32Grid([3], 62, 0.5, 1), float32Grid([3], 63)],
      {
        dense: ([x, gamma, beta], active) => sparseBatchNorm(x as tf.Tensor4D, { gamma: gamma as tf.Tensor1D, beta: beta as tf.Tensor1D, active }),
        rows: ([rows, gamma, beta]) => rowBatchNorm(rows as tf.Tensor2D, { gamma: gamma as tf.Tensor1D, beta: beta as tf.Tensor1D }),
        outputSize: [8, 8],
      },
      ['d/dx', 'd/dgamma', 'd/dbeta'],
    );
  });

  it('rowBatchNorm with running statistics equals sparseBatchNorm in inference', async () => {
    // (tfjs's batchNorm gradient needs both gamma and beta when either is missing, so both are given.)
    await expectRowsMatchDense(
      [2, 2, 3],
      64,
      [float32Grid([2, 4, 6, 3], 64), float32Grid([3], 65), float32Grid([3], 66, 0.4, 0.6), float32Grid([3], 67, 0.5, 1), float32Grid([3], 68)],
      {
        dense: ([x, mean, variance, gamma, beta], active) =>
          sparseBatchNorm(
            x as tf.Tensor4D,
            { gamma: gamma as tf.Tensor1D, beta: beta as tf.Tensor1D, active, epsilon: 1e-3 },
            mean as tf.Tensor1D,
            variance as tf.Tensor1D,
          ),
        rows: ([rows, mean, variance, gamma, beta]) =>
          rowBatchNorm(
            rows as tf.Tensor2D,
            { gamma: gamma as tf.Tensor1D, beta: beta as tf.Tensor1D, epsilon: 1e-3 },
            mean as tf.Tensor1D,
            variance as tf.Tensor1D,
          ),
        outputSize: [4, 6],
      },
      ['d/dx', 'd/dmean', 'd/dvariance', 'd/dgamma', 'd/dbeta'],
    );
  });

  it('rowLayerNorm equals sparseLayerNorm, with gradients', async () => {
    await expectRowsMatchDense(
      [2, 2, 3],
      71,
      [float32Grid([2, 4, 6, 4], 71, 2, 0.3), float32Grid([4], 72, 0.5, 1), float32Grid([4], 73)],
      {
        dense: ([x, gamma, beta], active) => sparseLayerNorm(x as tf.Tensor4D, { gamma: gamma as tf.Tensor1D, beta: beta as tf.Tensor1D, active }),
        rows: ([rows, gamma, beta]) => rowLayerNorm(rows as tf.Tensor2D, { gamma: gamma as tf.Tensor1D, beta: beta as tf.Tensor1D }),
        outputSize: [4, 6],
      },
      ['d/dx', 'd/dgamma', 'd/dbeta'],
    );
  });

  it('a ResNet basic block with a strided shortcut through rows equals the masked-dense block, with gradients', async () => {
    // conv3x3/2 -> BN -> ReLU -> conv3x3 -> BN, plus conv1x1/2 -> BN, then ReLU: every op, both scales.
    const shapes = { conv1: [3, 3, 3, 4], conv2: [3, 3, 4, 4], shortcut: [1, 1, 3, 4] };
    await expectRowsMatchDense(
      [2, 4, 4],
      81,
      [
        float32Grid([2, 8, 8, 3], 81),
        float32Grid(shapes.conv1, 82, 0.5),
        float32Grid(shapes.conv2, 83, 0.5),
        float32Grid(shapes.shortcut, 84, 0.5),
        float32Grid([4], 85, 0.5, 1),
        float32Grid([4], 86),
      ],
      {
        dense: ([x, conv1, conv2, shortcut, gamma, beta], active) => {
          const norm = (t: tf.Tensor) => sparseBatchNorm(t as tf.Tensor4D, { gamma: gamma as tf.Tensor1D, beta: beta as tf.Tensor1D, active });
          const h = tf.relu(norm(sparseConv2d(x as tf.Tensor4D, conv1 as tf.Tensor4D, { strides: 2, pad: 1, active })));
          const main = norm(sparseConv2d(h as tf.Tensor4D, conv2 as tf.Tensor4D, { pad: 1, active }));
          const identity = norm(sparseConv2d(x as tf.Tensor4D, shortcut as tf.Tensor4D, { strides: 2, active }));
          return tf.relu(tf.add(main, identity));
        },
        rows: ([rows, conv1, conv2, shortcut, gamma, beta], sites) => {
          const norm = (t: tf.Tensor2D) => rowBatchNorm(t, { gamma: gamma as tf.Tensor1D, beta: beta as tf.Tensor1D });
          const fine: [number, number] = [8, 8];
          const r = rows as tf.Tensor2D;
          const h = tf.relu(norm(rowConv2d(r, conv1 as tf.Tensor4D, { sites, inputSize: fine, strides: 2, pad: 1 })));
          const main = norm(rowConv2d(h, conv2 as tf.Tensor4D, { sites, inputSize: [4, 4], pad: 1 }));
          const identity = norm(rowConv2d(r, shortcut as tf.Tensor4D, { sites, inputSize: fine, strides: 2 }));
          return tf.relu(tf.add(main, identity)) as tf.Tensor2D;
        },
        outputSize: [4, 4],
      },
      ['d/dx', 'd/dconv1', 'd/dconv2', 'd/dshortcut', 'd/dgamma', 'd/dbeta'],
    );
  });

  it('layers: applyRows equals apply (stem conv, BN in training with its running statistics, max pool, LN)', async () => {
    const maskShape: [number, number, number] = [2, 2, 2];
    const maskValues = randomMask(maskShape, 91);
    const sites = RowSites.fromArray(maskValues, maskShape);
    const conv = new SparseConv2d({ inChannels: 3, outChannels: 4, kernelSize: 3, strides: 2, pad: 1 });
    const masked = new SparseBatchNorm2d({ channels: 4 });
    const rowNorm = new SparseBatchNorm2d({ channels: 4 });
    const pool = new SparseMaxPool2d({ filterSize: 3, strides: 2, pad: 1 });
    const layerNorm = new SparseLayerNorm({ channels: 4 });
    try {
      const [dense, rows] = tf.tidy(() => {
        const mask = tf.tensor4d(maskValues, [...maskShape, 1]);
        const x = tf.mul(
          tf.tensor4d(Float32Array.from(float32Grid([2, 8, 8, 3], 92).data), [2, 8, 8, 3]),
          activeAt(mask, tf.zeros([2, 8, 8, 1])),
        ) as tf.Tensor4D;
        const viaMask = layerNorm.apply(pool.apply(tf.relu(masked.apply(conv.apply(x, { active: mask }), { active: mask })), { active: mask }), {
          active: mask,
        });
        const stem = rowNorm.applyRows(conv.applyRows(toRows(x, sites), { sites, inputSize: [8, 8] }));
        const viaRows = layerNorm.applyRows(pool.applyRows(tf.relu(stem), { sites, inputSize: [4, 4] }));
        return [viaMask, fromRows(viaRows, sites, [2, 2])];
      });
      await expectClose(rows, dense, { relative, absolute: 1e-7, label: 'output' });
      await expectClose(rowNorm.runningMean, masked.runningMean, { relative, label: 'running_mean' });
      await expectClose(rowNorm.runningVar, masked.runningVar, { relative, label: 'running_var' });
      expect(Array.from(await rowNorm.numBatchesTracked.data())).toEqual([1]);
      tf.dispose([dense, rows]);
    } finally {
      for (const layer of [conv, masked, rowNorm, pool, layerNorm]) layer.dispose();
      sites.dispose();
    }
  });

  it('toRows and fromRows keep exactly the active sites, and fromRows zero-fills the rest', async () => {
    const sites = RowSites.fromArray([1, 0, 0, 1, 1, 0], [2, 1, 3]);
    try {
      const [rows, dense] = tf.tidy(() => {
        const x = tf.tensor4d([1, 2, 3, 4, 5, 6], [2, 1, 3, 1]);
        const gathered = toRows(x, sites);
        return [gathered, fromRows(gathered, sites, [1, 3])];
      });
      expect(rows.shape).toEqual([3, 1]);
      expect(Array.from(await rows.data())).toEqual([1, 4, 5]);
      expect(Array.from(await dense.data())).toEqual([1, 0, 0, 4, 5, 0]);
      expect(sites.rowCountAt(2, 6)).toBe(12); // each of the 3 active sites repeated as a 2x2 block
      tf.dispose([rows, dense]);
    } finally {
      sites.dispose();
    }
  });

  it('builds a neighbour table once per scale and geometry, shared by every layer', async () => {
    const sites = RowSites.fromArray(randomMask([1, 2, 2], 5), [1, 2, 2]);
    try {
      const table = sites.neighbours([4, 4], { windowSize: 3, pad: 1 });
      expect(sites.neighbours([4, 4], { windowSize: [3, 3], pad: [1, 1], strides: 1 })).toBe(table);
      expect(sites.neighbours([4, 4], { windowSize: 3, pad: 1, strides: 2 })).not.toBe(table);
      expect(sites.layoutAt(4, 4)).toBe(table.input);
    } finally {
      sites.dispose();
    }
  });

  it('names what it expected and what it got', () => {
    expect(() => RowSites.fromArray([1, 0.5], [1, 1, 2])).toThrow('RowSites: the mask [1, 1, 2, 1] must hold only 0 and 1, got 0.5 at index 1');
    const sites = RowSites.fromArray([1, 0, 0, 1], [1, 2, 2]);
    try {
      expect(() => sites.layoutAt(3, 4)).toThrow(
        'RowSites.layoutAt: active mask [1, 2, 2, 1] does not divide features of size 3x4 (height 3 is neither a multiple nor a divisor of 2)',
      );
      tf.tidy(() => {
        const rows = tf.zeros([5, 3]) as tf.Tensor2D;
        const filter = tf.zeros([3, 3, 3, 4]) as tf.Tensor4D;
        expect(() => rowConv2d(rows, filter, { sites, inputSize: [4, 4], pad: 1 })).toThrow(
          'rowConv2d: expected rows [8, C] (the active sites at 4x4), got [5, 3]',
        );
        const eight = tf.zeros([8, 4]) as tf.Tensor2D;
        expect(() => rowConv2d(eight, tf.zeros([3, 3, 2, 4]) as tf.Tensor4D, { sites, inputSize: [4, 4], groups: 2 })).toThrow(
          'rowConv2d: groups must be 1 or the channel count with one output per channel (filter [kH, kW, 1, 4]), got groups 2 and filter [3, 3, 2, 4]',
        );
      });
    } finally {
      sites.dispose();
    }
  });

  it('rejects a disposed RowSites', () => {
    const sites = RowSites.fromArray([1], [1, 1, 1]);
    sites.dispose();
    expect(() => sites.layoutAt(1, 1)).toThrow('RowSites.layoutAt: this RowSites was disposed');
  });
});
