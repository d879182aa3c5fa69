import * as tf from '@tensorflow/tfjs-core';
import { createTinyConvNet, resnet18 } from '@sparkmim/backbones';
import { describeBackends } from '@sparkmim/test-utils';
import { AdamW } from '../optim/adamw';
import { Lamb } from '../optim/lamb';
import { lrWdAt } from '../optim/schedule';
import { Classifier } from './classifier';
import { WeightEma } from './ema';
import { ClassificationMeter, evaluateLogits } from './evaluate';
import { classificationLoss } from './loss';
import { layerDecayParamGroups, layerIdAndScale } from './lr-decay';
import { LinearProbe, classifierTrainStep } from './step';

// [layer id, scale exponent] of each name, printed by the official functions of
// downstream_imagenet/models/__init__.py (resnets_get_layer_id_and_scale_exp,
// convnext_get_layer_id_and_scale_exp; SparK a63e386) run on models with these stage depths.
const OFFICIAL_LAYER_IDS: Record<string, Record<string, [number, number]>> = {
  resnet50: {
    'conv1.weight': [0, 7],
    'bn1.weight': [0, 7],
    'layer1.0.conv1.weight': [1, 6],
    'layer1.0.bn3.bias': [1, 6],
    'layer1.1.conv1.weight': [1, 6],
    'layer1.1.bn3.bias': [1, 6],
    'layer1.2.conv1.weight': [1, 6],
    'layer1.2.bn3.bias': [1, 6],
    'layer2.0.conv1.weight': [2, 5],
    'layer2.0.bn3.bias': [2, 5],
    'layer2.1.conv1.weight': [2, 5],
    'layer2.1.bn3.bias': [2, 5],
    'layer2.2.conv1.weight': [3, 4],
    'layer2.2.bn3.bias': [3, 4],
    'layer2.3.conv1.weight': [3, 4],
    'layer2.3.bn3.bias': [3, 4],
    'layer3.0.conv1.weight': [4, 3],
    'layer3.0.bn3.bias': [4, 3],
    'layer3.1.conv1.weight': [4, 3],
    'layer3.1.bn3.bias': [4, 3],
    'layer3.2.conv1.weight': [4, 3],
    'layer3.2.bn3.bias': [4, 3],
    'layer3.3.conv1.weight': [5, 2],
    'layer3.3.bn3.bias': [5, 2],
    'layer3.4.conv1.weight': [5, 2],
    'layer3.4.bn3.bias': [5, 2],
    'layer3.5.conv1.weight': [5, 2],
    'layer3.5.bn3.bias': [5, 2],
    'layer4.0.conv1.weight': [6, 1],
    'layer4.0.bn3.bias': [6, 1],
    'layer4.1.conv1.weight': [6, 1],
    'layer4.1.bn3.bias': [6, 1],
    'layer4.2.conv1.weight': [6, 1],
    'layer4.2.bn3.bias': [6, 1],
    'layer2.0.downsample.0.weight': [2, 5],
    'layer3.0.downsample.1.weight': [4, 3],
    'fc.weight': [7, 0],
    'fc.bias': [7, 0],
  },
  resnet101: {
    'conv1.weight': [0, 13],
    'bn1.weight': [0, 13],
    'layer1.0.conv1.weight': [1, 12],
    'layer1.0.bn3.bias': [1, 12],
    'layer1.1.conv1.weight': [1, 12],
    'layer1.1.bn3.bias': [1, 12],
    'layer1.2.conv1.weight': [1, 12],
    'layer1.2.bn3.bias': [1, 12],
    'layer2.0.conv1.weight': [2, 11],
    'layer2.0.bn3.bias': [2, 11],
    'layer2.1.conv1.weight': [2, 11],
    'layer2.1.bn3.bias': [2, 11],
    'layer2.2.conv1.weight': [3, 10],
    'layer2.2.bn3.bias': [3, 10],
    'layer2.3.conv1.weight': [3, 10],
    'layer2.3.bn3.bias': [3, 10],
    'layer3.0.conv1.weight': [4, 9],
    'layer3.0.bn3.bias': [4, 9],
    'layer3.1.conv1.weight': [4, 9],
    'layer3.1.bn3.bias': [4, 9],
    'layer3.2.conv1.weight': [4, 9],
    'layer3.2.bn3.bias': [4, 9],
    'layer3.3.conv1.weight': [5, 8],
    'layer3.3.bn3.bias': [5, 8],
    'layer3.4.conv1.weight': [5, 8],
    'layer3.4.bn3.bias': [5, 8],
    'layer3.5.conv1.weight': [5, 8],
    'layer3.5.bn3.bias': [5, 8],
    'layer3.6.conv1.weight': [6, 7],
    'layer3.6.bn3.bias': [6, 7],
    'layer3.7.conv1.weight': [6, 7],
    'layer3.7.bn3.bias': [6, 7],
    'layer3.8.conv1.weight': [6, 7],
    'layer3.8.bn3.bias': [6, 7],
    'layer3.9.conv1.weight': [7, 6],
    'layer3.9.bn3.bias': [7, 6],
    'layer3.10.conv1.weight': [7, 6],
    'layer3.10.bn3.bias': [7, 6],
    'layer3.11.conv1.weight': [7, 6],
    'layer3.11.bn3.bias': [7, 6],
    'layer3.12.conv1.weight': [8, 5],
    'layer3.12.bn3.bias': [8, 5],
    'layer3.13.conv1.weight': [8, 5],
    'layer3.13.bn3.bias': [8, 5],
    'layer3.14.conv1.weight': [8, 5],
    'layer3.14.bn3.bias': [8, 5],
    'layer3.15.conv1.weight': [9, 4],
    'layer3.15.bn3.bias': [9, 4],
    'layer3.16.conv1.weight': [9, 4],
    'layer3.16.bn3.bias': [9, 4],
    'layer3.17.conv1.weight': [9, 4],
    'layer3.17.bn3.bias': [9, 4],
    'layer3.18.conv1.weight': [10, 3],
    'layer3.18.bn3.bias': [10, 3],
    'layer3.19.conv1.weight': [10, 3],
    'layer3.19.bn3.bias': [10, 3],
    'layer3.20.conv1.weight': [10, 3],
    'layer3.20.bn3.bias': [10, 3],
    'layer3.21.conv1.weight': [11, 2],
    'layer3.21.bn3.bias': [11, 2],
    'layer3.22.conv1.weight': [11, 2],
    'layer3.22.bn3.bias': [11, 2],
    'layer4.0.conv1.weight': [12, 1],
    'layer4.0.bn3.bias': [12, 1],
    'layer4.1.conv1.weight': [12, 1],
    'layer4.1.bn3.bias': [12, 1],
    'layer4.2.conv1.weight': [12, 1],
    'layer4.2.bn3.bias': [12, 1],
    'layer2.0.downsample.0.weight': [2, 11],
    'layer3.0.downsample.1.weight': [4, 9],
    'fc.weight': [13, 0],
    'fc.bias': [13, 0],
  },
  convnext_tiny: {
    'downsample_layers.0.0.weight': [0, 7],
    'downsample_layers.1.1.weight': [2, 5],
    'downsample_layers.2.1.bias': [3, 4],
    'downsample_layers.3.1.weight': [6, 1],
    'stages.0.0.dwconv.weight': [1, 6],
    'stages.0.1.dwconv.weight': [1, 6],
    'stages.0.2.dwconv.weight': [1, 6],
    'stages.1.0.dwconv.weight': [2, 5],
    'stages.1.1.dwconv.weight': [2, 5],
    'stages.1.2.dwconv.weight': [2, 5],
    'stages.2.0.dwconv.weight': [3, 4],
    'stages.2.1.dwconv.weight': [3, 4],
    'stages.2.2.dwconv.weight': [3, 4],
    'stages.2.3.dwconv.weight': [4, 3],
    'stages.2.4.dwconv.weight': [4, 3],
    'stages.2.5.dwconv.weight': [4, 3],
    'stages.2.6.dwconv.weight': [5, 2],
    'stages.2.7.dwconv.weight': [5, 2],
    'stages.2.8.dwconv.weight': [5, 2],
    'stages.3.0.dwconv.weight': [6, 1],
    'stages.3.1.dwconv.weight': [6, 1],
    'stages.3.2.dwconv.weight': [6, 1],
    'head.weight': [7, 0],
    'norm.bias': [7, 0],
  },
  convnext_small: {
    'downsample_layers.0.0.weight': [0, 13],
    'downsample_layers.1.1.weight': [2, 11],
    'downsample_layers.2.1.bias': [3, 10],
    'downsample_layers.3.1.weight': [12, 1],
    'stages.0.0.dwconv.weight': [1, 12],
    'stages.0.1.dwconv.weight': [1, 12],
    'stages.0.2.dwconv.weight': [1, 12],
    'stages.1.0.dwconv.weight': [2, 11],
    'stages.1.1.dwconv.weight': [2, 11],
    'stages.1.2.dwconv.weight': [2, 11],
    'stages.2.0.dwconv.weight': [3, 10],
    'stages.2.1.dwconv.weight': [3, 10],
    'stages.2.2.dwconv.weight': [3, 10],
    'stages.2.3.dwconv.weight': [4, 9],
    'stages.2.4.dwconv.weight': [4, 9],
    'stages.2.5.dwconv.weight': [4, 9],
    'stages.2.6.dwconv.weight': [5, 8],
    'stages.2.7.dwconv.weight': [5, 8],
    'stages.2.8.dwconv.weight': [5, 8],
    'stages.2.9.dwconv.weight': [6, 7],
    'stages.2.10.dwconv.weight': [6, 7],
    'stages.2.11.dwconv.weight': [6, 7],
    'stages.2.12.dwconv.weight': [7, 6],
    'stages.2.13.dwconv.weight': [7, 6],
    'stages.2.14.dwconv.weight': [7, 6],
    'stages.2.15.dwconv.weight': [8, 5],
    'stages.2.16.dwconv.weight': [8, 5],
    'stages.2.17.dwconv.weight': [8, 5],
    'stages.2.18.dwconv.weight': [9, 4],
    'stages.2.19.dwconv.weight': [9, 4],
    'stages.2.20.dwconv.weight': [9, 4],
    'stages.2.21.dwconv.weight': [10, 3],
    'stages.2.22.dwconv.weight': [10, 3],
    'stages.2.23.dwconv.weight': [10, 3],
    'stages.2.24.dwconv.weight': [11, 2],
    'stages.2.25.dwconv.weight': [11, 2],
    'stages.2.26.dwconv.weight': [11, 2],
    'stages.3.0.dwconv.weight': [12, 1],
    'stages.3.1.dwconv.weight': [12, 1],
    'stages.3.2.dwconv.weight': [12, 1],
    'head.weight': [13, 0],
    'norm.bias': [13, 0],
  },
};
const OFFICIAL_DEPTHS: Record<string, { kind: 'resnet' | 'convnext'; depths: number[] }> = {
  resnet50: { kind: 'resnet', depths: [3, 4, 6, 3] },
  resnet101: { kind: 'resnet', depths: [3, 4, 23, 3] },
  convnext_tiny: { kind: 'convnext', depths: [3, 3, 9, 3] },
  convnext_small: { kind: 'convnext', depths: [3, 3, 27, 3] },
};

describe('layer-wise lr decay', () => {
  for (const [model, table] of Object.entries(OFFICIAL_LAYER_IDS)) {
    it(`gives every parameter of ${model} the official layer id and scale exponent`, () => {
      const ours = Object.fromEntries(
        Object.keys(table).map((name) => {
          const { layerId, scaleExponent } = layerIdAndScale(name, OFFICIAL_DEPTHS[model]);
          return [name, [layerId, scaleExponent]];
        }),
      );
      expect(ours).toEqual(table);
    });
  }

  it('extends the rule to depths the official table lacks (one id per stage) and to custom backbones', () => {
    expect(layerIdAndScale('conv1.weight', { kind: 'resnet', depths: [1, 1, 1, 1] })).toEqual({ layerId: 0, scaleExponent: 5 });
    expect(layerIdAndScale('layer2.0.conv1.weight', { kind: 'resnet', depths: [2, 2, 2, 2] })).toEqual({ layerId: 2, scaleExponent: 3 });
    expect(layerIdAndScale('layer3.1.conv1.weight', { kind: 'resnet', depths: [2, 2, 2, 2] })).toEqual({ layerId: 3, scaleExponent: 2 });
    expect(layerIdAndScale('fc.bias', { kind: 'resnet', depths: [1, 1, 1, 1] })).toEqual({ layerId: 5, scaleExponent: 0 });
    expect(layerIdAndScale('stem.weight', { kind: 'custom' })).toEqual({ layerId: 0, scaleExponent: 5 });
    expect(layerIdAndScale('stages.3.conv.weight', { kind: 'custom' })).toEqual({ layerId: 4, scaleExponent: 1 });
    expect(() => layerIdAndScale('conv1.weight', { kind: 'resnet' })).toThrow('layerIdAndScale: a resnet needs its four stage depths, got none');
  });
});

describe('evaluation', () => {
  it('counts top-1, top-5, the confusion matrix and the cross-entropy as by hand', () => {
    const meter = new ClassificationMeter(6);
    // Row 0: class 2 highest (right). Row 1: true 0 ranked last (6th). Row 2: true 5 ranked 2nd.
    // Row 3: all equal, true 3: the tie goes to class 0 (predicted), class 3 ranked 4th.
    const rows = [
      [0, 1, 5, 2, 3, 4],
      [1, 2, 3, 4, 5, 6],
      [0, 0, 0, 0, 2, 1],
      [1, 1, 1, 1, 1, 1],
    ];
    const labels = [2, 0, 5, 3];
    meter.add(rows.flat(), labels);
    const result = meter.result();
    expect(result.count).toBe(4);
    expect(result.top1).toBe(0.25);
    expect(result.top5).toBe(0.75);
    const confusion = Array.from({ length: 6 }, () => new Array(6).fill(0));
    confusion[2][2] = 1;
    confusion[0][5] = 1;
    confusion[5][4] = 1;
    confusion[3][0] = 1;
    expect(result.confusion).toEqual(confusion);
    const ce = (row: number[], label: number) => Math.log(row.reduce((sum, v) => sum + Math.exp(v), 0)) - row[label];
    const expected = rows.reduce((sum, row, i) => sum + ce(row, labels[i]), 0) / 4;
    expect(result.loss).toBeCloseTo(expected, 12);
    expect(() => meter.add([1, 2], [0])).toThrow('ClassificationMeter.add: expected 1 x 6 = 6 logits for 1 labels, got 2');
  });
});

// Tiny images of two classes that pooling keeps apart: class 0 is brighter in the red channel, class 1 in
// the blue; noise on top so that every image differs.
function toyBatch(batchSize: number, size: number, seed: number): { images: tf.Tensor4D; labels: number[] } {
  let state = seed;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
  const labels = Array.from({ length: batchSize }, (_, i) => i % 2);
  const data = new Float32Array(batchSize * size * size * 3);
  for (let b = 0; b < batchSize; b++) {
    for (let p = 0; p < size * size; p++) {
      for (let c = 0; c < 3; c++) {
        const signal = (labels[b] === 0 && c === 0) || (labels[b] === 1 && c === 2) ? 1 : 0;
        data[(b * size * size + p) * 3 + c] = signal + (next() - 0.5);
      }
    }
  }
  return { images: tf.tensor4d(data, [batchSize, size, size, 3]), labels };
}

// Float64 references, written out the slow way.
function softmaxCrossEntropy64(logits: number[][], labels: number[], smoothing: number): number {
  const K = logits[0].length;
  let total = 0;
  logits.forEach((row, b) => {
    const max = Math.max(...row);
    const logZ = max + Math.log(row.reduce((sum, v) => sum + Math.exp(v - max), 0));
    for (let k = 0; k < K; k++) {
      const target = k === labels[b] ? 1 - smoothing + smoothing / K : smoothing / K;
      total -= target * (row[k] - logZ);
    }
  });
  return total / logits.length;
}

function binaryCrossEntropy64(logits: number[][], labels: number[], smoothing: number): number {
  const K = logits[0].length;
  let total = 0;
  logits.forEach((row, b) => {
    for (let k = 0; k < K; k++) {
      const target = k === labels[b] ? 1 - smoothing + smoothing / K : smoothing / K;
      const p = 1 / (1 + Math.exp(-row[k]));
      total -= target * Math.log(p) + (1 - target) * Math.log(1 - p);
    }
  });
  return total / (logits.length * K);
}

describeBackends('finetune', () => {
  it('groups parameters per layer with lr scale decay ** exponent, and no_decay for 1-D / bias', () => {
    const names = Object.keys(OFFICIAL_LAYER_IDS.resnet50);
    const variables = names.map((name) => ({
      name,
      variable: tf.tidy(() => tf.variable(tf.zeros(name.includes('conv') || name === 'fc.weight' ? [1, 1] : [1]))),
    }));
    try {
      const groups = layerDecayParamGroups(variables, { ...OFFICIAL_DEPTHS.resnet50, decay: 0.7 });
      for (const group of groups) {
        for (const { name, variable } of group.variables) {
          const [layerId, exponent] = OFFICIAL_LAYER_IDS.resnet50[name];
          const decays = variable.shape.length > 1 && !name.endsWith('.bias');
          expect(group.name).toBe(`layer${layerId}_${decays ? 'decay' : 'no_decay'}`);
          expect(group.lrScale).toBeCloseTo(0.7 ** exponent, 12);
          expect(group.weightDecayScale).toBe(decays ? 1 : 0);
        }
      }
      expect(groups.flatMap((group) => group.variables.map((entry) => entry.name)).sort()).toEqual([...names].sort());
      // decay outside (0, 1): the official code uses no layer scale at all.
      expect(layerDecayParamGroups(variables, { ...OFFICIAL_DEPTHS.resnet50, decay: 1 }).map((group) => [group.name, group.lrScale])).toEqual([
        ['decay', 1],
        ['no_decay', 1],
      ]);
    } finally {
      for (const { variable } of variables) variable.dispose();
    }
  });

  it('label-smoothing cross-entropy and BCE equal float64 references', async () => {
    const rows = [
      [2.5, -1, 0.25, 3],
      [-4, 1.5, 0.5, 0],
      [0.1, 0.2, 0.3, -7],
    ];
    const labels = [3, 0, 2];
    const logits = tf.tensor2d(rows);
    const labelTensor = tf.tensor1d(labels, 'int32');
    for (const smoothing of [0, 0.1, 0.3]) {
      const ce = classificationLoss(logits, labelTensor, 4, { labelSmoothing: smoothing });
      const bce = classificationLoss(logits, labelTensor, 4, { labelSmoothing: smoothing, loss: 'bce' });
      expect((await ce.data())[0]).toBeCloseTo(softmaxCrossEntropy64(rows, labels, smoothing), 5);
      expect((await bce.data())[0]).toBeCloseTo(binaryCrossEntropy64(rows, labels, smoothing), 5);
      tf.dispose([ce, bce]);
    }
    expect(() => classificationLoss(logits, labelTensor, 5)).toThrow(
      'classificationLoss: expected logits [B, 5] and labels [B], got logits [3, 4] and labels [3]',
    );
    tf.dispose([logits, labelTensor]);
  });

  it('keeps an EMA of parameters and buffers equal to a float64 reference, and evaluates with it', async () => {
    const initial = [
      [0.5, -1.25, 2],
      [3, 0.125],
    ];
    const a = tf.tidy(() => tf.variable(tf.tensor1d(initial[0])));
    const b = tf.tidy(() => tf.variable(tf.tensor1d(initial[1]), false));
    const entries = [
      { name: 'a', variable: a, layout: 'same' as const },
      { name: 'b', variable: b, layout: 'same' as const },
    ];
    const ema = new WeightEma(entries, 0.9);
    const reference = initial.map((values) => [...values]);
    const steps = [
      [
        [1, 2, 3],
        [-1, 0.5],
      ],
      [
        [0.25, -0.5, 4],
        [2, 2],
      ],
      [
        [-3, 1, 0],
        [0, -8],
      ],
    ];
    for (const [valuesA, valuesB] of steps) {
      tf.tidy(() => {
        a.assign(tf.tensor1d(valuesA));
        b.assign(tf.tensor1d(valuesB));
      });
      ema.update(entries);
      for (const [i, values] of [valuesA, valuesB].entries()) {
        for (const [j, value] of values.entries()) reference[i][j] = 0.9 * reference[i][j] + 0.1 * value;
      }
    }
    const state = ema.state();
    const averaged = [Array.from(await state.get('a')!.data()), Array.from(await state.get('b')!.data())];
    for (const [i, values] of averaged.entries()) for (const [j, value] of values.entries()) expect(value).toBeCloseTo(reference[i][j], 5);
    const seen = await ema.withAverage(entries, async () => Array.from(await a.data()));
    for (const [j, value] of seen.entries()) expect(value).toBeCloseTo(reference[0][j], 5);
    expect(Array.from(await a.data())).toEqual([-3, 1, 0]); // the model's own values are back
    ema.dispose();
    tf.dispose([a, b]);
  });

  const cases = [
    { name: 'the tiny example convnet', build: () => createTinyConvNet({ channels: [4, 8, 8, 16], seed: 1 }), optimizer: 'adamw' as const },
    {
      name: 'a narrow ResNet (LAMB, BCE, layer decay)',
      build: () => resnet18({ depths: [1, 1, 1, 1], stemWidth: 4, channels: [4, 8, 8, 16], seed: 1 }),
      optimizer: 'lamb' as const,
    },
  ];
  for (const { name, build, optimizer: optimizerName } of cases) {
    it(`fine-tunes ${name} on a separable toy problem`, async () => {
      const classifier = new Classifier({ backbone: build(), numClasses: 2, seed: 2 });
      const depths = classifier.backbone.kind === 'custom' ? undefined : [1, 1, 1, 1];
      const groups = layerDecayParamGroups(classifier.namedParameters(), { kind: classifier.backbone.kind, depths, decay: 0.8 });
      const optimizer =
        optimizerName === 'lamb'
          ? new Lamb(groups, { maxGradNorm: 1e7, alwaysAdapt: true, biasCorrection: false })
          : new AdamW(groups, { maxGradNorm: 5 });
      const schedule = {
        peakLr: optimizerName === 'lamb' ? 0.05 : 0.03,
        weightDecay: 0.01,
        weightDecayEnd: 0.01,
        warmupIterations: 1,
        maxIterations: 10,
      };
      const train = toyBatch(8, 32, 7);
      const held = toyBatch(8, 32, 99);
      const losses: number[] = [];
      for (let iteration = 0; iteration < schedule.maxIterations; iteration++) {
        const { loss } = await classifierTrainStep(classifier, optimizer, train.images, train.labels, {
          lrWd: lrWdAt(schedule, iteration),
          labelSmoothing: 0.1,
          loss: optimizerName === 'lamb' ? 'bce' : 'ce',
          iteration,
        });
        losses.push(loss);
      }
      classifier.eval();
      const metrics = await evaluateLogits((x) => classifier.logits(x), [{ images: held.images, labels: held.labels }], 2);
      expect(losses[losses.length - 1]).toBeLessThan(losses[0] * 0.7);
      expect(metrics.top1).toBe(1);
      expect(metrics.confusion).toEqual([
        [4, 0],
        [0, 4],
      ]);
      optimizer.dispose();
      classifier.dispose();
      tf.dispose([train.images, held.images]);
    }, 300_000); // SwiftShader (webgpu) takes minutes for these steps on a loaded 2-core machine
  }

  it('trains a linear probe on frozen features', async () => {
    const classifier = new Classifier({ backbone: createTinyConvNet({ channels: [4, 8, 8, 16], seed: 3 }), numClasses: 2, seed: 0 });
    classifier.eval();
    const train = toyBatch(8, 32, 5);
    const features = classifier.features(train.images);
    const probe = new LinearProbe({ featureSize: classifier.featureSize, numClasses: 2, seed: 0 });
    probe.setStandardization(features);
    const optimizer = new AdamW([{ name: 'probe', variables: probe.namedParameters() }], { lr: 0.1, weightDecay: 0 });
    const losses: number[] = [];
    for (let step = 0; step < 15; step++) losses.push((await probe.trainStep(optimizer, features, train.labels)).loss);
    const logits = probe.logits(features);
    const meter = new ClassificationMeter(2);
    meter.add(await logits.data(), train.labels);
    expect(meter.result().top1).toBe(1);
    expect(losses[14]).toBeLessThan(losses[0]);
    tf.dispose([logits, features, train.images]);
    optimizer.dispose();
    probe.dispose();
    classifier.dispose();
  });
});
