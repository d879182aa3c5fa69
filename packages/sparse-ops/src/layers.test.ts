import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import { sparseConv2d } from './conv';
import { SparseAvgPool2d, SparseBatchNorm2d, SparseConv2d, SparseLayerNorm, SparseMaxPool2d } from './layers';
import { sparseLayerNorm } from './norm';
import { sparseAvgPool2d, sparseMaxPool2d } from './pool';
import { evaluate, evaluateWithGradients, expectGridClose, float32Grid, tolerancesFor, toTensor } from './testing/harness';
import { batchNormEvalReference, batchNormTrainReference, maskAt, maskFromRows, numericGradients, zeroInactive } from './testing/reference';

const shape = [2, 4, 4, 3];
const { values: baseMask, shape: maskShape } = maskFromRows(['10/11', '01/01']);
const siteMask = maskAt(baseMask, maskShape, 4, 4);
const maskTensor = () => tf.tensor4d(Float32Array.from(baseMask), [...maskShape, 1]);

async function read(variable: tf.Tensor): Promise<number[]> {
  return Array.from(await variable.data());
}

describeBackends('sparse layers', ({ backend }) => {
  const tolerance = tolerancesFor(backend);

  it('SparseBatchNorm2d: training normalises over active sites and updates running_mean, running_var (unbiased), num_batches_tracked; eval uses them', async () => {
    const bn = new SparseBatchNorm2d({ channels: 3 });
    try {
      expect(bn.momentum).toBe(0.1);
      expect(bn.epsilon).toBe(1e-5);
      const gamma = float32Grid([3], 51, 0.5, 1);
      const beta = float32Grid([3], 52);
      for (const [variable, values] of [
        [bn.gamma, gamma],
        [bn.beta, beta],
      ] as const) {
        const initial = toTensor(values);
        variable.assign(initial);
        initial.dispose();
      }
      const batches = [zeroInactive(float32Grid(shape, 53, 2, 0.5), siteMask), zeroInactive(float32Grid(shape, 54, 1.5, -0.3), siteMask)];
      let runningMean = [0, 0, 0];
      let runningVar = [1, 1, 1];
      for (const [index, batch] of batches.entries()) {
        const expected = batchNormTrainReference(batch, siteMask, gamma.data, beta.data, 1e-5);
        const actual = await evaluate(() => bn.apply(toTensor(batch) as tf.Tensor4D, { active: maskTensor() }));
        await expectGridClose(actual, expected.y, tolerance.forward, `training output ${index}`);
        runningMean = runningMean.map((value, c) => 0.9 * value + 0.1 * expected.mean[c]);
        runningVar = runningVar.map((value, c) => 0.9 * value + 0.1 * expected.unbiasedVariance[c]);
        await expectGridClose(
          { shape: [3], output: Float32Array.from(await read(bn.runningMean)) },
          { shape: [3], data: Float64Array.from(runningMean) },
          tolerance.forward,
          'running_mean',
        );
        await expectGridClose(
          { shape: [3], output: Float32Array.from(await read(bn.runningVar)) },
          { shape: [3], data: Float64Array.from(runningVar) },
          tolerance.forward,
          'running_var',
        );
        expect(await read(bn.numBatchesTracked)).toEqual([index + 1]);
      }

      bn.eval();
      const input = zeroInactive(float32Grid(shape, 55), siteMask);
      const evaluated = await evaluate(() => bn.apply(toTensor(input) as tf.Tensor4D, { active: maskTensor() }));
      await expectGridClose(
        evaluated,
        batchNormEvalReference(input, siteMask, gamma.data, beta.data, runningMean, runningVar, 1e-5),
        tolerance.forward,
        'eval output',
      );
      expect(await read(bn.numBatchesTracked)).toEqual([2]);
      await expectGridClose(
        { shape: [3], output: Float32Array.from(await read(bn.runningMean)) },
        { shape: [3], data: Float64Array.from(runningMean) },
        tolerance.forward,
        'running_mean unchanged by eval',
      );
    } finally {
      bn.dispose();
    }
  });

  it('SparseBatchNorm2d in training mode differentiates through the batch statistics', async () => {
    const bn = new SparseBatchNorm2d({ channels: 3 });
    const x = zeroInactive(float32Grid(shape, 56, 2), siteMask);
    const actual = await evaluateWithGradients(([xT]) => bn.apply(xT as tf.Tensor4D, { active: maskTensor() }), [x]);
    bn.dispose();
    const ones = new Float64Array(3).fill(1);
    const [expected] = numericGradients(
      ([xData]) => batchNormTrainReference({ shape, data: xData }, siteMask, ones, new Float64Array(3)).y.data,
      [x.data],
      actual.weights,
    );
    await expectGridClose({ shape, output: actual.gradients[0] }, { shape, data: expected }, tolerance.gradient, 'd/dx');
  });

  it('SparseConv2d holds weight [kH, kW, inC/groups, outC] and bias, applies sparseConv2d with them, and frees them', async () => {
    const before = tf.memory().numTensors;
    const depthwise = new SparseConv2d({ inChannels: 3, outChannels: 3, kernelSize: 7, pad: 3, groups: 3 });
    const stem = new SparseConv2d({
      inChannels: 3,
      outChannels: 4,
      kernelSize: [3, 3],
      strides: 2,
      pad: 1,
      bias: false,
    });
    try {
      expect(depthwise.namedParameters().map(({ name, variable, layout }) => [name, variable.shape, layout])).toEqual([
        ['weight', [7, 7, 1, 3], 'conv2d'],
        ['bias', [3], 'same'],
      ]);
      expect(stem.namedParameters().map(({ name }) => name)).toEqual(['weight']);
      expect(stem.bias).toBeUndefined();
      // PyTorch's default init: U(-1/sqrt(fanIn), 1/sqrt(fanIn)), fanIn = 1 * 7 * 7 for the depthwise conv.
      expect(Math.max(...(await read(depthwise.filter)).map(Math.abs))).toBeLessThanOrEqual(1 / 7);
      const x = zeroInactive(float32Grid(shape, 57), siteMask);
      for (const [layer, options] of [
        [depthwise, { pad: 3, groups: 3, withBias: true }],
        [stem, { strides: 2, pad: 1, withBias: false }],
      ] as const) {
        const viaLayer = await evaluate(() => layer.apply(toTensor(x) as tf.Tensor4D, { active: maskTensor() }));
        const viaFunction = await evaluate(() =>
          sparseConv2d(toTensor(x) as tf.Tensor4D, layer.filter as tf.Tensor4D, {
            ...options,
            bias: options.withBias ? (layer.bias as tf.Tensor1D) : undefined,
            active: maskTensor(),
          }),
        );
        expect(viaLayer.shape).toEqual(viaFunction.shape);
        expect(Array.from(viaLayer.output)).toEqual(Array.from(viaFunction.output));
      }
    } finally {
      depthwise.dispose();
      stem.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('SparseLayerNorm and the pooling layers apply their functions (weights named weight and bias)', async () => {
    const ln = new SparseLayerNorm({ channels: 3 });
    try {
      expect(ln.epsilon).toBe(1e-6);
      expect(ln.namedParameters().map(({ name }) => name)).toEqual(['weight', 'bias']);
      const x = zeroInactive(float32Grid(shape, 58), siteMask);
      const pairs: [() => tf.Tensor, () => tf.Tensor][] = [
        [
          () => ln.apply(toTensor(x) as tf.Tensor4D, { active: maskTensor() }),
          () =>
            sparseLayerNorm(toTensor(x) as tf.Tensor4D, {
              gamma: ln.gamma as tf.Tensor1D,
              beta: ln.beta as tf.Tensor1D,
              epsilon: 1e-6,
              active: maskTensor(),
            }),
        ],
        [
          () =>
            new SparseMaxPool2d({ filterSize: 3, strides: 2, pad: 1 }).apply(toTensor(x) as tf.Tensor4D, {
              active: maskTensor(),
            }),
          () => sparseMaxPool2d(toTensor(x) as tf.Tensor4D, { filterSize: 3, strides: 2, pad: 1, active: maskTensor() }),
        ],
        [
          () => new SparseAvgPool2d({ filterSize: 2 }).apply(toTensor(x) as tf.Tensor4D, { active: maskTensor() }),
          () => sparseAvgPool2d(toTensor(x) as tf.Tensor4D, { filterSize: 2, active: maskTensor() }),
        ],
      ];
      for (const [viaLayer, viaFunction] of pairs) {
        expect(Array.from((await evaluate(viaLayer)).output)).toEqual(Array.from((await evaluate(viaFunction)).output));
      }
    } finally {
      ln.dispose();
    }
  });

  it('a stack of layers trains: every trainable variable gets a gradient, buffers none', async () => {
    const conv = new SparseConv2d({ inChannels: 3, outChannels: 4, kernelSize: 3, pad: 1 });
    const bn = new SparseBatchNorm2d({ channels: 4 });
    const ln = new SparseLayerNorm({ channels: 4 });
    const modules = [conv, bn, ln];
    try {
      const trainable = modules.flatMap((module) => module.namedParameters().map(({ variable }) => variable));
      const { value: loss, grads } = tf.variableGrads(() => {
        const active = maskTensor();
        const x = toTensor(zeroInactive(float32Grid(shape, 59), siteMask)) as tf.Tensor4D;
        const y = ln.apply(bn.apply(conv.apply(x, { active }), { active }), { active });
        return tf.sum(tf.mul(y, toTensor(float32Grid(y.shape, 60)))) as tf.Scalar;
      }, trainable);
      try {
        expect(Object.keys(grads).sort()).toEqual(trainable.map((variable) => variable.name).sort());
        for (const variable of trainable) {
          const gradient = grads[variable.name];
          expect(gradient.shape).toEqual(variable.shape);
          expect(Math.max(...(await read(gradient)).map(Math.abs))).toBeGreaterThan(0);
        }
      } finally {
        tf.dispose([loss, ...Object.values(grads)]);
      }
      expect(modules.flatMap((module) => module.namedBuffers().map(({ variable }) => variable.trainable))).toEqual([false, false, false]);
    } finally {
      for (const module of modules) module.dispose();
    }
  });
});
