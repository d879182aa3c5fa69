import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import { createDensifyLayers, densifyConfigFromState, Identity, LightDecoder, lightDecoderConfigFromState } from './index';

async function valuesOf(variable: tf.Variable): Promise<Float32Array> {
  return (await variable.data()) as Float32Array;
}

function moments(values: ArrayLike<number>): { mean: number; std: number; maxAbs: number } {
  let sum = 0;
  let maxAbs = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i];
    maxAbs = Math.max(maxAbs, Math.abs(values[i]));
  }
  const mean = sum / values.length;
  let squares = 0;
  for (let i = 0; i < values.length; i++) squares += (values[i] - mean) ** 2;
  return { mean, std: Math.sqrt(squares / values.length), maxAbs };
}

describeBackends('LightDecoder', () => {
  it('has the official blocks, widths and state names', () => {
    const decoder = new LightDecoder({ upSampleRatio: 8, width: 32, seed: 0 });
    expect(decoder.channels).toEqual([32, 16, 8, 4]);
    expect(decoder.stateEntries().map((entry) => `${entry.name} ${entry.variable.shape.join('x')}`)).toEqual([
      ...[0, 1, 2].flatMap((j) => {
        const [cin, cout] = [decoder.channels[j], decoder.channels[j + 1]];
        return [
          `dec.${j}.up_sample.weight 4x4x${cin}x${cin}`,
          `dec.${j}.up_sample.bias ${cin}`,
          `dec.${j}.conv.0.weight 3x3x${cin}x${cin}`,
          ...['weight', 'bias', 'running_mean', 'running_var'].map((name) => `dec.${j}.conv.1.${name} ${cin}`),
          `dec.${j}.conv.1.num_batches_tracked `,
          `dec.${j}.conv.3.weight 3x3x${cin}x${cout}`,
          ...['weight', 'bias', 'running_mean', 'running_var'].map((name) => `dec.${j}.conv.4.${name} ${cout}`),
          `dec.${j}.conv.4.num_batches_tracked `,
        ];
      }),
      'proj.weight 1x1x4x3',
      'proj.bias 3',
    ]);
    decoder.dispose();
  });

  it('upsamples by the ratio, adding each given feature map before its block', async () => {
    const decoder = new LightDecoder({ upSampleRatio: 4, width: 8, seed: 1 }).eval();
    const smallest = tf.randomNormal([2, 3, 2, 8], 0, 1, 'float32', 7) as tf.Tensor4D;
    const next = tf.randomNormal([2, 6, 4, 4], 0, 1, 'float32', 8) as tf.Tensor4D;
    const rec = decoder.apply([smallest, next]);
    expect(rec.shape).toEqual([2, 12, 8, 3]);
    // Without the second map the output differs, and `undefined` means "add nothing" as in the official code.
    const withoutNext = decoder.apply([smallest]);
    const withUndefined = decoder.apply([smallest, undefined]);
    const byHand = tf.tidy(() =>
      decoder.proj.apply(decoder.blocks.items[1].apply(tf.add(decoder.blocks.items[0].apply(smallest), next) as tf.Tensor4D)),
    );
    expect(Array.from(await withoutNext.data())).toEqual(Array.from(await withUndefined.data()));
    expect(Array.from(await rec.data())).toEqual(Array.from(await byHand.data()));
    expect(Array.from(await rec.data())).not.toEqual(Array.from(await withoutNext.data()));
    tf.dispose([smallest, next, rec, withoutNext, withUndefined, byHand]);
    decoder.dispose();
  });

  it('initialises as decoder.py: convs trunc_normal(.02), transposed convs kaiming fan_out, BN 1/0, biases 0', async () => {
    const decoder = new LightDecoder({ upSampleRatio: 2, width: 96, seed: 3 });
    const [block] = decoder.blocks.items;
    const conv = moments(await valuesOf(block.conv.conv1.filter)); // 3*3*96*96 values
    expect(Math.abs(conv.mean)).toBeLessThan(0.001);
    expect(conv.std).toBeGreaterThan(0.0195);
    expect(conv.std).toBeLessThan(0.0205);
    const up = moments(await valuesOf(block.upSample.filter)); // 4*4*96*96 values
    const kaimingStd = Math.sqrt(2 / (96 * 16));
    expect(up.std).toBeGreaterThan(kaimingStd * 0.97);
    expect(up.std).toBeLessThan(kaimingStd * 1.03);
    expect(moments(await valuesOf(block.upSample.bias!)).maxAbs).toBe(0);
    expect(moments(await valuesOf(decoder.proj.bias!)).maxAbs).toBe(0);
    expect(Array.from(await valuesOf(block.conv.bn1.gamma)).every((value) => value === 1)).toBe(true);
    expect(moments(await valuesOf(block.conv.bn2.beta)).maxAbs).toBe(0);
    decoder.dispose();
  });

  it('is reproducible from a seed', async () => {
    const first = new LightDecoder({ upSampleRatio: 2, width: 8, seed: 42 });
    const second = new LightDecoder({ upSampleRatio: 2, width: 8, seed: 42 });
    const other = new LightDecoder({ upSampleRatio: 2, width: 8, seed: 43 });
    const filterOf = async (decoder: LightDecoder) => Array.from(await valuesOf(decoder.blocks.items[0].conv.conv2.filter));
    expect(await filterOf(first)).toEqual(await filterOf(second));
    expect(await filterOf(first)).not.toEqual(await filterOf(other));
    [first, second, other].forEach((decoder) => decoder.dispose());
  });

  it('says what is wrong with a bad configuration or input', () => {
    expect(() => new LightDecoder({ upSampleRatio: 24 })).toThrow('LightDecoder: upSampleRatio must be a power of 2 (at least 2), got 24');
    expect(() => new LightDecoder({ upSampleRatio: 32, width: 16 })).toThrow(
      'LightDecoder: width must be an integer of at least 32 so that 5 halvings leave a channel, got 16',
    );
    const decoder = new LightDecoder({ upSampleRatio: 4, width: 8, seed: 0 });
    const smallest = tf.zeros([2, 3, 3, 8]) as tf.Tensor4D;
    const wrong = tf.zeros([2, 6, 6, 8]) as tf.Tensor4D;
    expect(() => decoder.apply([smallest, wrong])).toThrow('LightDecoder: feature map 1 must have shape [2, 6, 6, 4], got [2, 6, 6, 8]');
    expect(() => decoder.apply([])).toThrow('LightDecoder: the first (smallest) feature map is required');
    expect(() => decoder.apply([smallest, undefined, undefined])).toThrow('LightDecoder: got 3 feature maps for 2 blocks');
    tf.dispose([smallest, wrong]);
    decoder.dispose();
  });
});

describeBackends('createDensifyLayers', () => {
  it('builds the official levels: 1x1 at the smallest map, 3x3 elsewhere, widths halving', () => {
    const layers = createDensifyLayers({ featureChannels: [16, 32, 64, 128], decoderWidth: 64, norm: 'bn', seed: 0 });
    expect(layers.levels).toBe(4);
    expect(layers.outputChannels).toEqual([64, 32, 16, 8]);
    expect(layers.projs.stateEntries().map((entry) => `${entry.name} ${entry.variable.shape.join('x')}`)).toEqual([
      '0.weight 1x1x128x64',
      '0.bias 64',
      '1.weight 3x3x64x32',
      '1.bias 32',
      '2.weight 3x3x32x16',
      '2.bias 16',
      '3.weight 3x3x16x8',
      '3.bias 8',
    ]);
    expect(layers.maskTokens.stateEntries().map((entry) => [entry.name, entry.layout, entry.variable.shape])).toEqual([
      ['0', 'token', [128]],
      ['1', 'token', [64]],
      ['2', 'token', [32]],
      ['3', 'token', [16]],
    ]);
    expect(
      layers.norms
        .stateEntries()
        .map((entry) => entry.name)
        .slice(0, 5),
    ).toEqual(['0.weight', '0.bias', '0.running_mean', '0.running_var', '0.num_batches_tracked']);
    layers.dispose();
  });

  it('uses an identity projection at the smallest map when the widths agree, and no norm for "none"', () => {
    const layers = createDensifyLayers({ featureChannels: [8, 16, 32, 64], decoderWidth: 64, norm: 'none', seed: 0 });
    expect(layers.projs.items[0]).toBeInstanceOf(Identity);
    expect(layers.norms.items.every((norm) => norm instanceof Identity)).toBe(true);
    expect(layers.outputChannels).toEqual([64, 32, 16, 8]);
    const ln = createDensifyLayers({ featureChannels: [8, 16, 32, 64], decoderWidth: 64, norm: 'ln', seed: 0 });
    expect(ln.norms.stateEntries().map((entry) => entry.name)).toEqual([0, 1, 2, 3].flatMap((i) => [`${i}.weight`, `${i}.bias`]));
    layers.dispose();
    ln.dispose();
  });

  it('fills inactive sites with the mask token before projecting, and normalises over active sites only', async () => {
    const layers = createDensifyLayers({ featureChannels: [2], decoderWidth: 2, norm: 'bn', seed: 0 });
    expect(layers.projs.items[0]).toBeInstanceOf(Identity);
    // One sample, 2x2 map, sites 0 and 3 active. Active values per channel: [1, 3] and [2, 6].
    const features = tf.tensor4d([1, 2, 0, 0, 0, 0, 3, 6], [1, 2, 2, 2]);
    const active = tf.tensor4d([1, 0, 0, 1], [1, 2, 2, 1]);
    const [dense] = layers.apply([features], active);
    const token = Array.from(await layers.maskTokens.token(0).data());
    // BN over the two active sites (biased variance): (x - mean) / sqrt(var + 1e-5); gamma 1, beta 0.
    const normalised = (value: number, mean: number, variance: number) => (value - mean) / Math.sqrt(variance + 1e-5);
    const expected = [normalised(1, 2, 1), normalised(2, 4, 4), ...token, ...token, normalised(3, 2, 1), normalised(6, 4, 4)];
    const values = Array.from(await dense.data());
    values.forEach((value, i) => expect(value).toBeCloseTo(expected[i], 5));
    tf.dispose([features, active, dense]);
    layers.dispose();
  });

  it('initialises mask tokens within ±.02 and projections as PyTorch convs, reproducibly', async () => {
    // One wide level and a width-1 decoder: 4000 token values, and a 1x1 projection of 4000 weights.
    const config = { featureChannels: [4000], decoderWidth: 1, seed: 5 };
    const layers = createDensifyLayers(config);
    const tokenMoments = moments(await valuesOf(layers.maskTokens.tokens[0]));
    expect(tokenMoments.maxAbs).toBeLessThanOrEqual(0.02);
    // A normal cut at one standard deviation keeps std * 0.5396.
    expect(tokenMoments.std).toBeGreaterThan(0.02 * 0.5396 * 0.95);
    expect(tokenMoments.std).toBeLessThan(0.02 * 0.5396 * 1.05);
    const proj = layers.projs.items[0];
    if (proj instanceof Identity) throw new Error('expected a conv');
    // PyTorch's default conv init: U(±1/sqrt(fanIn)), whose std is bound / sqrt(3).
    const bound = 1 / Math.sqrt(4000);
    const projMoments = moments(await valuesOf(proj.filter));
    expect(projMoments.maxAbs).toBeLessThanOrEqual(bound);
    expect(projMoments.std).toBeGreaterThan((bound / Math.sqrt(3)) * 0.95);
    const again = createDensifyLayers(config);
    expect(Array.from(await valuesOf(again.maskTokens.tokens[0]))).toEqual(Array.from(await valuesOf(layers.maskTokens.tokens[0])));
    layers.dispose();
    again.dispose();
  });

  it('says what is wrong with a bad configuration or input', () => {
    expect(() => createDensifyLayers({ featureChannels: [8, 16], decoderWidth: 16, norm: 'gn' as 'bn' })).toThrow(
      "createDensifyLayers: unknown norm 'gn': expected one of bn, ln, none",
    );
    expect(() => createDensifyLayers({ featureChannels: [8, 16, 32, 64], decoderWidth: 4 })).toThrow(
      'createDensifyLayers: decoderWidth must be an integer of at least 8 (it halves per level), got 4',
    );
    const layers = createDensifyLayers({ featureChannels: [8, 16], decoderWidth: 16, seed: 0 });
    const features = tf.zeros([1, 2, 2, 8]) as tf.Tensor4D;
    const active = tf.ones([1, 2, 2, 1]) as tf.Tensor4D;
    expect(() => layers.apply([features], active)).toThrow('DensifyLayers: expected 2 feature maps (smallest first), got 1');
    expect(() => layers.applyLevel(0, features, active)).toThrow('DensifyLayers: level 0 expects features [B, H, W, 16], got [1, 2, 2, 8]');
    tf.dispose([features, active]);
    layers.dispose();
  });
});

describe('configuration from a state dict', () => {
  const shapes = (entries: [string, number[]][]) => new Map(entries.map(([key, shape]) => [key, { shape }]));

  it('reads the decoder width and block count', () => {
    const state = shapes([
      ['dense_decoder.dec.0.up_sample.weight', [768, 768, 4, 4]],
      ['dense_decoder.dec.1.up_sample.weight', [384, 384, 4, 4]],
      ['dense_decoder.dec.2.up_sample.weight', [192, 192, 4, 4]],
    ]);
    expect(lightDecoderConfigFromState(state, 'dense_decoder.')).toEqual({ upSampleRatio: 8, width: 768 });
    expect(() => lightDecoderConfigFromState(state)).toThrow(
      "lightDecoderConfigFromState: no 'dec.0.up_sample.weight' in the state dict: not a SparK decoder",
    );
  });

  it('reads the densify norm kind, channels and decoder width', () => {
    const tokens: [string, number[]][] = [
      ['mask_tokens.0', [1, 768, 1, 1]],
      ['mask_tokens.1', [1, 384, 1, 1]],
    ];
    expect(
      densifyConfigFromState(shapes([...tokens, ['densify_norms.0.running_mean', [768]], ['densify_projs.0.weight', [512, 768, 1, 1]]])),
    ).toEqual({
      featureChannels: [384, 768],
      decoderWidth: 512,
      norm: 'bn',
    });
    expect(densifyConfigFromState(shapes([...tokens, ['densify_norms.0.weight', [768]]]))).toEqual({
      featureChannels: [384, 768],
      decoderWidth: 768,
      norm: 'ln',
    });
    expect(densifyConfigFromState(shapes(tokens)).norm).toBe('none');
    expect(() => densifyConfigFromState(shapes([]))).toThrow("densifyConfigFromState: no 'mask_tokens.0' in the state dict: not a SparK model");
    expect(() => densifyConfigFromState(shapes([['mask_tokens.0', [768]]]))).toThrow(
      "densifyConfigFromState: 'mask_tokens.0' must have shape (1, C, 1, 1), got [768]",
    );
  });
});
