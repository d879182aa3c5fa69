import * as tf from '@tensorflow/tfjs-core';
import { loadTorchState, torchState } from '@sparkmim/sparse-ops';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { createTinyConvNet, type Backbone } from '../index';

// The custom-convnet example: the Backbone contract itself (shapes, masking, dense = all-ones mask,
// gradients, bad input) is checked in backbone.test.ts alongside ResNet and ConvNeXt; here, what a user
// copying it relies on besides.
describeBackends('TinyConvNet (custom backbone example)', () => {
  it('is a Backbone of kind custom with the documented state names, and round-trips a PyTorch state dict', async () => {
    const net: Backbone = createTinyConvNet({ channels: [4, 8, 8, 16], seed: 0 });
    expect(net.kind).toBe('custom');
    expect(net.featureChannels).toEqual([4, 8, 8, 16]);
    const names = net.namedParameters().map((entry) => entry.name);
    expect(names).toEqual([
      'stem.weight',
      'stem_bn.weight',
      'stem_bn.bias',
      ...[0, 1, 2, 3].flatMap((i) => [`stages.${i}.conv.weight`, `stages.${i}.bn.weight`, `stages.${i}.bn.bias`]),
    ]);
    // Weights written by one copy and loaded by another give the same features.
    const state = await torchState(net, { prefix: 'encoder.' });
    const copy = createTinyConvNet({ channels: [4, 8, 8, 16], seed: 1 });
    loadTorchState(copy, state, { prefix: 'encoder.' });
    const x = tf.randomNormal([1, 64, 64, 3], 0, 1, 'float32', 0) as tf.Tensor4D;
    const expected = net.eval().forward(x);
    const actual = copy.eval().forward(x);
    for (let i = 0; i < 4; i++) await expectClose(actual[i], expected[i], { relative: 1e-6, label: `map ${i}` });
    tf.dispose([x, expected, actual]);
    net.dispose();
    copy.dispose();
  });
});
