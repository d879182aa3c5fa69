import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import { SparseBatchNorm2d, SparseConv2d } from './layers';
import { Module, ModuleList, type TorchLayout } from './module';
import { fromTorchLayout, loadTorchState, ourShapeOf, torchShapeOf, torchState, toTorchLayout, type TorchTensorData } from './torch-state';

/** A small network shaped like the official code's: own parameters, a named child, an indexed list. */
class TinyNet extends Module {
  readonly maskToken = this.registerParameter('mask_token', tf.zeros([4]), 'token');
  readonly stem = this.registerModule('stem', new SparseConv2d({ inChannels: 3, outChannels: 4, kernelSize: 3, pad: 1 }));
  readonly blocks = this.registerModule(
    'blocks',
    new ModuleList<Module>([new SparseBatchNorm2d({ channels: 4 }), new SparseConv2d({ inChannels: 4, outChannels: 2, kernelSize: 1, bias: false })]),
  );
  readonly head = this.registerModule('head', new Linear(2, 5));
}

class Linear extends Module {
  readonly weight: tf.Variable;
  constructor(inFeatures: number, outFeatures: number) {
    super();
    this.weight = this.registerParameter('weight', tf.randomNormal([inFeatures, outFeatures]), 'linear');
  }
}

const expectedKeys = [
  'mask_token',
  'stem.weight',
  'stem.bias',
  'blocks.0.weight',
  'blocks.0.bias',
  'blocks.0.running_mean',
  'blocks.0.running_var',
  'blocks.0.num_batches_tracked',
  'blocks.1.weight',
  'head.weight',
];

/** Index of a row-major element. */
const at = (shape: number[], index: number[]) => index.reduce((offset, i, axis) => offset * shape[axis] + i, 0);

describeBackends('Module and PyTorch state', () => {
  it('names parameters and buffers in PyTorch order: own entries first, then children in registration order', () => {
    const net = new TinyNet();
    try {
      expect(net.stateEntries().map(({ name }) => name)).toEqual(expectedKeys);
      expect(net.namedParameters().map(({ name }) => name)).toEqual(expectedKeys.filter((key) => !/running|num_batches/.test(key)));
      expect(net.namedBuffers('model.').map(({ name }) => name)).toEqual([
        'model.blocks.0.running_mean',
        'model.blocks.0.running_var',
        'model.blocks.0.num_batches_tracked',
      ]);
      expect(net.namedChildren().map(([name]) => name)).toEqual(['stem', 'blocks', 'head']);
      expect(net.blocks.length).toBe(2);
      expect(net.blocks.namedChildren().map(([name]) => name)).toEqual(['0', '1']);
    } finally {
      net.dispose();
    }
  });

  it('train()/eval() reach every child; dispose() frees every parameter and buffer', () => {
    const before = tf.memory().numTensors;
    const net = new TinyNet();
    net.eval();
    expect([net.training, net.stem.training, net.blocks.items[0].training]).toEqual([false, false, false]);
    net.train();
    expect([net.training, net.blocks.training, net.blocks.items[1].training]).toEqual([true, true, true]);
    net.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('converts layouts element by element: conv2d OIHW <-> HWIO, conv2dTranspose IOHW <-> HWOI, linear, token', async () => {
    const cases: {
      layout: TorchLayout;
      torchShape: number[];
      ourShape: number[];
      ourIndexOf: (torchIndex: number[]) => number[];
    }[] = [
      {
        layout: 'conv2d',
        torchShape: [4, 3, 2, 5],
        ourShape: [2, 5, 3, 4],
        ourIndexOf: ([o, i, h, w]) => [h, w, i, o],
      },
      {
        layout: 'conv2dTranspose',
        torchShape: [4, 3, 2, 5],
        ourShape: [2, 5, 3, 4],
        ourIndexOf: ([i, o, h, w]) => [h, w, o, i],
      },
      { layout: 'linear', torchShape: [3, 5], ourShape: [5, 3], ourIndexOf: ([out, input]) => [input, out] },
      { layout: 'token', torchShape: [1, 6, 1, 1], ourShape: [6], ourIndexOf: ([, c]) => [c] },
      { layout: 'same', torchShape: [2, 3], ourShape: [2, 3], ourIndexOf: (index) => index },
    ];
    for (const { layout, torchShape, ourShape, ourIndexOf } of cases) {
      expect({ layout, shape: ourShapeOf(torchShape, layout) }).toEqual({ layout, shape: ourShape });
      expect({ layout, shape: torchShapeOf(ourShape, layout) }).toEqual({ layout, shape: torchShape });
      const size = torchShape.reduce((a, b) => a * b, 1);
      const torch: TorchTensorData = { shape: torchShape, data: Float32Array.from({ length: size }, (_, i) => i) };
      const ours = fromTorchLayout(torch, layout);
      const back = toTorchLayout(ours, layout);
      const oursValues = await ours.data();
      expect({ layout, shape: ours.shape }).toEqual({ layout, shape: ourShape });
      // Every torch element lands where the layout says.
      const forEachIndex = (shape: number[], visit: (index: number[]) => void, prefix: number[] = []): void => {
        if (prefix.length === shape.length) {
          visit(prefix);
          return;
        }
        for (let i = 0; i < shape[prefix.length]; i++) forEachIndex(shape, visit, [...prefix, i]);
      };
      forEachIndex(torchShape, (index) => {
        const value = oursValues[at(ourShape, ourIndexOf(index))];
        if (value !== at(torchShape, index)) throw new Error(`${layout}: torch [${index}] went to the wrong place (found ${value})`);
      });
      expect({ layout, shape: back.shape, values: Array.from(await back.data()) }).toEqual({
        layout,
        shape: torchShape,
        values: Array.from(torch.data),
      });
      tf.dispose([ours, back]);
    }
  });

  it('torchState then loadTorchState copies every parameter and buffer into another module (with a prefix)', async () => {
    const source = new TinyNet();
    const target = new TinyNet();
    try {
      // Make the buffers differ from their initial values too.
      tf.tidy(() => {
        (source.blocks.items[0] as SparseBatchNorm2d).apply(tf.randomNormal([2, 2, 2, 4]));
      });
      const state = await torchState(source, { prefix: 'sparse_encoder.' });
      expect([...state.keys()]).toEqual(expectedKeys.map((key) => `sparse_encoder.${key}`));
      expect(state.get('sparse_encoder.stem.weight')!.shape).toEqual([4, 3, 3, 3]);
      expect(state.get('sparse_encoder.mask_token')!.shape).toEqual([1, 4, 1, 1]);
      expect(state.get('sparse_encoder.head.weight')!.shape).toEqual([5, 2]);
      expect(Array.from(state.get('sparse_encoder.blocks.0.num_batches_tracked')!.data)).toEqual([1]);
      const report = loadTorchState(target, state, { prefix: 'sparse_encoder.' });
      expect(report).toEqual({ missing: [], unexpected: [] });
      const sourceEntries = source.stateEntries();
      const targetEntries = target.stateEntries();
      for (let i = 0; i < sourceEntries.length; i++) {
        expect({ name: targetEntries[i].name, values: Array.from(await targetEntries[i].variable.data()) }).toEqual({
          name: sourceEntries[i].name,
          values: Array.from(await sourceEntries[i].variable.data()),
        });
      }
    } finally {
      source.dispose();
      target.dispose();
    }
  });

  it('strict loading lists missing, unexpected and mis-shaped keys in one error; non-strict reports and loads the rest', async () => {
    const net = new TinyNet();
    try {
      const state = await torchState(net);
      state.delete('blocks.0.running_var');
      state.delete('head.weight');
      state.set('blocks.2.weight', { shape: [1], data: new Float32Array(1) });
      state.set('stem.weight', { shape: [4, 3, 5, 5], data: new Float32Array(300) });
      state.set('decoder.weight', { shape: [1], data: new Float32Array(1) });
      const stemBias = state.get('stem.bias')!;
      state.set('stem.bias', { shape: stemBias.shape, data: Float32Array.from([1, 2, 3, 4]) });
      expect(() => loadTorchState(net, state, { prefix: '', caller: 'SparkModel.load' })).toThrow(
        [
          'SparkModel.load: the state dict does not fit the model',
          'mis-shaped keys:',
          '  stem.weight: expected [4, 3, 3, 3], got [4, 3, 5, 5]',
          'missing keys:',
          '  blocks.0.running_var',
          '  head.weight',
          'unexpected keys:',
          '  blocks.2.weight',
          '  decoder.weight',
        ].join('\n'),
      );
      // Nothing was assigned by the failed strict load.
      expect(Array.from(await net.stem.bias!.data())).not.toEqual([1, 2, 3, 4]);

      state.set('stem.weight', (await torchState(net)).get('stem.weight')!);
      const report = loadTorchState(net, state, { strict: false });
      expect(report).toEqual({
        missing: ['blocks.0.running_var', 'head.weight'],
        unexpected: ['blocks.2.weight', 'decoder.weight'],
      });
      expect(Array.from(await net.stem.bias!.data())).toEqual([1, 2, 3, 4]);
      // A mis-shaped key is an error even when not strict, as in PyTorch.
      state.set('stem.bias', { shape: [5], data: new Float32Array(5) });
      expect(() => loadTorchState(net, state, { strict: false })).toThrow('mis-shaped keys:\n  stem.bias: expected [4], got [5]');
    } finally {
      net.dispose();
    }
  });

  it('stripPrefix selects and strips (loading and exporting), prefix prepends, ignore skips, value counts are checked', async () => {
    const net = new TinyNet();
    const copy = new TinyNet();
    try {
      tf.tidy(() => {
        (net.blocks.items[0] as SparseBatchNorm2d).apply(tf.randomNormal([2, 2, 2, 4]));
      });
      // The exporter's stripPrefix keeps one child's entries under its own names.
      const blocks = await torchState(net, { stripPrefix: 'blocks.' });
      expect([...blocks.keys()]).toEqual(expectedKeys.filter((key) => key.startsWith('blocks.')).map((key) => key.slice('blocks.'.length)));
      await expect(torchState(net, { stripPrefix: 'decoder.' })).rejects.toThrow(
        "torchState: the module has no entry under 'decoder.' (it has mask_token, stem.weight",
      );
      // A golden-style file: every key under 'param.', plus a leftover that `ignore` names.
      const golden = new Map([...(await torchState(net, { prefix: 'param.' }))]);
      golden.set('input', { shape: [1], data: new Float32Array(1) });
      golden.set('param.norm_black', { shape: [1], data: new Float32Array(1) });
      expect(loadTorchState(copy, golden, { stripPrefix: 'param.', ignore: ['norm_black'] })).toEqual({ missing: [], unexpected: [] });
      const netEntries = net.stateEntries();
      const copyEntries = copy.stateEntries();
      for (let i = 0; i < netEntries.length; i++) {
        expect({ name: copyEntries[i].name, values: Array.from(await copyEntries[i].variable.data()) }).toEqual({
          name: netEntries[i].name,
          values: Array.from(await netEntries[i].variable.data()),
        });
      }
      expect(() => loadTorchState(copy, golden, { stripPrefix: 'params.' })).toThrow(
        "loadTorchState: no key of the state dict starts with 'params.' (it has param.mask_token",
      );
      expect(() => loadTorchState(copy, golden, { stripPrefix: 'param.' })).toThrow('unexpected keys:\n  norm_black');
      // The shape is right but the data holds fewer values.
      const short = await torchState(net);
      short.set('stem.bias', { shape: [4], data: new Float32Array(3) });
      expect(() => loadTorchState(copy, short)).toThrow('mis-shaped keys:\n  stem.bias: shape [4] holds 4 values, got 3');
    } finally {
      net.dispose();
      copy.dispose();
    }
  });
});
