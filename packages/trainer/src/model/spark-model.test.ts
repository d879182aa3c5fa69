import * as tf from '@tensorflow/tfjs-core';
import { createBackboneFromConfig, createTinyConvNet } from '@sparkmim/backbones';
import { keepCount, upsampleMask } from '@sparkmim/masking';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { encodeSafetensors, ROW_PATH_BACKENDS, SparkModel, stateFromSafetensors, type SparsePath } from '../index';

// Small enough for SwiftShader: 64x64 images, stages of 8..16 channels, decoder width 32.
function tinyResNet(seed = 0): SparkModel {
  const backbone = createBackboneFromConfig({ kind: 'resnet', depths: [1, 1, 1, 1], block: 'basic', stemWidth: 8, channels: [8, 8, 16, 16], seed });
  return new SparkModel({ backbone, decoderWidth: 32, seed });
}

function tinyConvNeXt(seed = 0): SparkModel {
  const backbone = createBackboneFromConfig({ kind: 'convnext', depths: [1, 1, 1, 1], dims: [8, 8, 16, 32], seed });
  return new SparkModel({ backbone, decoderWidth: 32, seed });
}

function images(batch = 2, size = 64): tf.Tensor4D {
  return tf.randomNormal([batch, size, size, 3], 0, 1, 'float32', 11) as tf.Tensor4D;
}

/** 1 = visible: sample 0 keeps the diagonal of its 2x2 grid, sample 1 the other diagonal. */
function diagonalMask(): tf.Tensor4D {
  return tf.tensor4d([1, 0, 0, 1, 0, 1, 1, 0], [2, 2, 2, 1]);
}

async function valuesOf(tensor: tf.Tensor): Promise<number[]> {
  return Array.from(await tensor.data());
}

describeBackends('SparkModel', ({ backend }) => {
  it('names its state as the official SparK module, in named_parameters() order', () => {
    const model = tinyResNet();
    const names = model.parameters().map((parameter) => parameter.name);
    const groups = [...new Set(names.map((name) => name.split('.')[0]))];
    expect(groups).toEqual(['sparse_encoder', 'dense_decoder', 'densify_norms', 'densify_projs', 'mask_tokens']);
    expect(names.filter((name) => name.startsWith('mask_tokens'))).toEqual(['mask_tokens.0', 'mask_tokens.1', 'mask_tokens.2', 'mask_tokens.3']);
    expect(names).toContain('sparse_encoder.sp_cnn.conv1.weight');
    expect(names).toContain('dense_decoder.dec.4.up_sample.weight');
    expect(model.stateEntries().map((entry) => entry.name)).toContain('densify_norms.0.running_mean');
    expect(model.densifyNorm).toBe('bn');
    const convnext = tinyConvNeXt();
    expect(convnext.densifyNorm).toBe('ln');
    // The smallest map already has the decoder's width: no densify_projs.0, as the official code has it.
    expect(convnext.stateEntries().some((entry) => entry.name.startsWith('densify_projs.0.'))).toBe(false);
    model.dispose();
    convnext.dispose();
  });

  it('create() passes the backbone options through, depths included, and fromSafetensors() rebuilds those depths', async () => {
    const model = SparkModel.create('resnet18', {
      backbone: { depths: [1, 2, 1, 1], stemWidth: 8, channels: [8, 8, 16, 16] },
      decoderWidth: 32,
      seed: 0,
    });
    const blocksOf = (names: string[]) => [
      ...new Set(names.map((name) => /^sparse_encoder\.sp_cnn\.(layer\d\.\d+)\./.exec(name)?.[1]).filter(Boolean)),
    ];
    const names = model.stateEntries().map((entry) => entry.name);
    const loaded = await SparkModel.fromSafetensors(await model.toSafetensors());
    const loadedNames = loaded.stateEntries().map((entry) => entry.name);
    model.dispose();
    loaded.dispose();
    expect(blocksOf(names)).toEqual(['layer1.0', 'layer2.0', 'layer2.1', 'layer3.0', 'layer4.0']);
    expect(loadedNames).toEqual(names);
    expect(() => SparkModel.create('resnet18', { backbone: { depths: [1, 1, 1] } })).toThrow(
      "createBackbone: depths of 'resnet18' must be four whole numbers >= 1",
    );
  });

  it('rebuilds itself from its own state dict (safetensors round trip), whatever the input size', async () => {
    for (const original of [tinyResNet(1), tinyConvNeXt(1)]) {
      const bytes = await original.toSafetensors({ note: 'round trip' });
      const loaded = await SparkModel.fromSafetensors(bytes, { source: 'memory' });
      expect(loaded.densifyNorm).toBe(original.densifyNorm);
      const [before, after] = [await original.stateDict(), await loaded.stateDict()];
      expect([...after.keys()]).toEqual([...before.keys()]);
      for (const [key, tensor] of before) expect({ key, data: Array.from(after.get(key)!.data) }).toEqual({ key, data: Array.from(tensor.data) });
      original.eval();
      loaded.eval();
      for (const size of original.densifyNorm === 'bn' ? [64, 96] : [64]) {
        const x = images(1, size);
        const a = original.forward(x, { seed: 5 });
        const b = loaded.forward(x, { seed: 5 });
        expect(await valuesOf(b)).toEqual(await valuesOf(a));
        tf.dispose([x, a, b]);
      }
      original.dispose();
      loaded.dispose();
    }
  });

  it('gives the same features in sparse and dense mode when every patch is visible', async () => {
    const sparse = tinyResNet(2);
    const dense = await SparkModel.fromState(await sparse.stateDict(), { sparse: false });
    const x = images();
    const allVisible = tf.ones([2, 2, 2, 1]) as tf.Tensor4D;
    const a = sparse.forwardWithIntermediates(x, { active: allVisible });
    const b = dense.forwardWithIntermediates(x, { active: allVisible });
    for (const [i, features] of a.features.entries()) await expectClose(b.features[i], features, { relative: 1e-5, label: `enc.${i}` });
    for (const [i, level] of a.toDecoder.entries()) await expectClose(b.toDecoder[i], level, { relative: 1e-5, label: `dec_in.${i}` });
    await expectClose(b.reconstruction, a.reconstruction, { relative: 1e-5, label: 'rec' });
    // With patches hidden they differ: the dense encoder lets masked zeros into visible sites.
    const someHidden = diagonalMask();
    const c = sparse.forwardWithIntermediates(x, { active: someHidden });
    const d = dense.forwardWithIntermediates(x, { active: someHidden });
    expect(await valuesOf(d.features[0])).not.toEqual(await valuesOf(c.features[0]));
    tf.dispose([x, allVisible, someHidden, a, b, c, d]);
    sparse.dispose();
    dense.dispose();
  });

  it('draws random masks with the exact keep count, reproducibly from a seed', async () => {
    const model = tinyResNet(3);
    const x = images(2, 96);
    const first = model.forwardWithIntermediates(x, { seed: 7 });
    const second = model.forwardWithIntermediates(x, { seed: 7 });
    expect(first.active.shape).toEqual([2, 3, 3, 1]);
    const values = await valuesOf(first.active);
    for (let sample = 0; sample < 2; sample++) {
      expect(values.slice(sample * 9, (sample + 1) * 9).reduce((a, b) => a + b, 0)).toBe(keepCount(3, 3, model.maskRatio));
    }
    expect(await valuesOf(second.active)).toEqual(values);
    // Masked sites of the encoder output are exactly zero.
    const hiddenFeatures = tf.tidy(() => tf.mul(first.features[0], tf.sub(1, upsampleMask(first.active, [24, 24]))));
    expect((await valuesOf(hiddenFeatures)).every((value) => value === 0)).toBe(true);
    tf.dispose([x, first, second, hiddenFeatures]);
    model.dispose();
  });

  it('returns the loss, and a gradient for every parameter by official name', async () => {
    const model = tinyConvNeXt(4);
    const x = images();
    const active = diagonalMask();
    const { loss, grads } = model.lossAndGradients(x, { active });
    expect(loss.shape).toEqual([]);
    expect([...grads.keys()]).toEqual(model.parameters().map((parameter) => parameter.name));
    for (const { name, variable } of model.parameters()) expect({ name, shape: grads.get(name)!.shape }).toEqual({ name, shape: variable.shape });
    const maskTokenGrad = await valuesOf(grads.get('mask_tokens.3')!);
    expect(maskTokenGrad.some((value) => value !== 0)).toBe(true);
    // The same loss as forward() on the same mask.
    const again = tinyConvNeXt(4);
    const direct = again.forward(x, { active });
    expect(await valuesOf(direct)).toEqual(await valuesOf(loss));
    tf.dispose([x, active, loss, direct, ...grads.values()]);
    model.dispose();
    again.dispose();
  });

  it('skips the official deprecated buffers when loading', async () => {
    const model = tinyResNet(5);
    const state = await model.stateDict();
    state.set('imn_m', { shape: [1, 3, 1, 1], data: new Float32Array(3) });
    state.set('norm_black', { shape: [1, 3, 64, 64], data: new Float32Array(3 * 64 * 64) });
    const loaded = await SparkModel.fromState(state);
    expect(loaded.stateEntries().length).toBe(model.stateEntries().length);
    model.dispose();
    loaded.dispose();
  });

  it('sparsePath: rows gives the masked-dense loss and gradients; auto picks rows for a wide ResNet on ROW_PATH_BACKENDS only', async () => {
    const build = (sparsePath: SparsePath) =>
      new SparkModel({
        backbone: createBackboneFromConfig({ kind: 'resnet', depths: [1, 1, 1, 1], block: 'basic', stemWidth: 8, channels: [8, 8, 16, 16], seed: 5 }),
        decoderWidth: 32,
        sparsePath,
        seed: 5,
      });
    const [auto, rows, dense] = [build('auto'), build('rows'), build('dense')];
    // This encoder is narrow (8 to 16 channels): auto keeps it dense; a 64-channel one goes on rows where rows pay.
    expect([auto.usesRowPath(), rows.usesRowPath(), dense.usesRowPath()]).toEqual([false, true, false]);
    const wide = new SparkModel({
      backbone: createBackboneFromConfig({ kind: 'resnet', depths: [1, 1, 1, 1], block: 'basic', stemWidth: 8, channels: [64, 8, 8, 8] }),
      decoderWidth: 32,
    });
    expect(wide.usesRowPath()).toBe(ROW_PATH_BACKENDS.includes(backend));
    wide.dispose();
    const x = images();
    const active = diagonalMask();
    if (ROW_PATH_BACKENDS.includes(backend)) {
      const expected = dense.lossAndGradients(x, { active });
      const actual = rows.lossAndGradients(x, { active });
      await expectClose(actual.loss, expected.loss, { label: 'loss' });
      for (const name of ['sparse_encoder.sp_cnn.conv1.weight', 'sparse_encoder.sp_cnn.layer2.0.bn1.weight', 'mask_tokens.0']) {
        await expectClose(actual.grads.get(name)!, expected.grads.get(name)!, { label: name });
      }
      tf.dispose([expected.loss, actual.loss, ...expected.grads.values(), ...actual.grads.values()]);
    } else {
      // WebGPU in Node reads nothing synchronously: 'rows' says so rather than failing deep in tfjs.
      expect(() => rows.forward(x, { active })).toThrow(/SparkModel: the row path reads the mask synchronously/);
    }
    tf.dispose([x, active]);
    [auto, rows, dense].forEach((model) => model.dispose());
  });
});

describeBackends('SparkModel errors', () => {
  it('rejects an image size that is not a multiple of 32, naming the sizes that would work', () => {
    const model = tinyResNet();
    const x = tf.zeros([1, 48, 64, 3]) as tf.Tensor4D;
    expect(() => model.forward(x)).toThrow(
      'SparkModel.forward: input [1, 48, 64, 3] has height 48, which is not a multiple of the downsample ratio 32 (use 32 or 64)',
    );
    const y = tf.zeros([2, 64, 64, 3]) as tf.Tensor4D;
    const wrongMask = tf.ones([2, 4, 4, 1]) as tf.Tensor4D;
    expect(() => model.forward(y, { active: wrongMask })).toThrow(
      'SparkModel.forward: active mask [2, 4, 4, 1] does not fit images [2, 64, 64, 3]: expected [2, 2, 2, 1] (one value per 32x32 patch, 1 = visible)',
    );
    tf.dispose([x, y, wrongMask]);
    model.dispose();
  });

  it('frees what it built when the decoder or densify settings are rejected (the leak check fails otherwise)', () => {
    const backbone = { stemWidth: 8, channels: [8, 8, 8, 8] as [number, number, number, number] };
    expect(() => SparkModel.create('resnet18', { decoderWidth: 4, backbone })).toThrow(
      'LightDecoder: width must be an integer of at least 32 so that 5 halvings leave a channel, got 4',
    );
    expect(() => SparkModel.create('resnet18', { decoderWidth: 32, densifyNorm: 'group' as never, backbone })).toThrow(
      "createDensifyLayers: unknown norm 'group'",
    );
  });

  it('rejects an unknown model name, listing the known ones', () => {
    expect(() => SparkModel.create('resnet51')).toThrow(
      "SparkModel.create: unknown model 'resnet51': expected one of resnet18, resnet34, resnet50, resnet101, resnet152, resnet200, convnext_tiny, convnext_small, convnext_base, convnext_large",
    );
  });

  it('lists missing, unexpected and mis-shaped keys together for weights of another architecture', async () => {
    const model = tinyResNet();
    const wider = new SparkModel({
      backbone: createBackboneFromConfig({ kind: 'resnet', depths: [1, 1, 1, 1], block: 'basic', stemWidth: 16, channels: [8, 8, 16, 16], seed: 0 }),
      decoderWidth: 32,
      seed: 0,
    });
    const convnext = tinyConvNeXt();
    let message = '';
    try {
      model.loadState(await wider.stateDict());
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('SparkModel.loadState: the state dict does not fit the model');
    expect(message).toContain('mis-shaped keys:\n  sparse_encoder.sp_cnn.conv1.weight: expected [8, 3, 7, 7], got [16, 3, 7, 7]');
    let convnextMessage = '';
    try {
      model.loadState(await convnext.stateDict());
    } catch (error) {
      convnextMessage = (error as Error).message;
    }
    expect(convnextMessage).toMatch(/missing keys:\n {2}sparse_encoder\.sp_cnn\.conv1\.weight/);
    expect(convnextMessage).toMatch(/unexpected keys:\n {2}sparse_encoder\.sp_cnn\.downsample_layers\.0\.0\.bias/);
    // A state dict that is not SparK's at all.
    await expect(SparkModel.fromState(new Map([['conv1.weight', { shape: [8, 3, 7, 7], data: new Float32Array(8 * 3 * 49) }]]))).rejects.toThrow(
      'SparkModel.fromState: cannot read the encoder from the state dict: backboneConfigFromState: no timm ResNet keys',
    );
    model.dispose();
    wider.dispose();
    convnext.dispose();
  });

  it('says a truncated safetensors file is truncated, and a prefix that matches nothing matches nothing', async () => {
    const model = tinyResNet();
    const bytes = await model.toSafetensors();
    await expect(SparkModel.fromSafetensors(bytes.subarray(0, bytes.length - 100), { source: 'spark.safetensors' })).rejects.toThrow(
      /^safetensors \(spark\.safetensors\): tensor '.*' .* but it is \d+ bytes: the file is truncated$/,
    );
    await expect(SparkModel.fromSafetensors(bytes.subarray(0, 20))).rejects.toThrow('the file is truncated');
    await expect(SparkModel.fromSafetensors(bytes, { stripPrefix: 'param.' })).rejects.toThrow(
      "stateFromSafetensors: no key of the file starts with 'param.'",
    );
    const stray = stateFromSafetensors(encodeSafetensors(new Map([['x', { shape: [1], data: new Float32Array(1) }]])));
    expect([...stray.keys()]).toEqual(['x']);
    model.dispose();
  });

  it('sparsePath rows needs a ResNet or a ConvNeXt in sparse mode; auto picks rows for wide ones only', () => {
    const custom = createTinyConvNet({ channels: [8, 8, 16, 32] });
    expect(() => new SparkModel({ backbone: custom, sparsePath: 'rows' })).toThrow(
      "SparkModel: sparsePath 'rows' needs a backbone with a row path (a ResNet or a ConvNeXt), got a custom backbone; use 'auto' or 'dense'",
    );
    custom.dispose();
    const convnext = createBackboneFromConfig({ kind: 'convnext', depths: [1, 1, 1, 1], dims: [8, 8, 16, 32] });
    const model = new SparkModel({ backbone: convnext, decoderWidth: 32 });
    expect([model.sparsePath, model.usesRowPath()]).toEqual(['auto', false]);
    model.dispose();
    // A ConvNeXt of ROW_PATH_MIN_CHANNELS channels: rows on ROW_PATH_BACKENDS, as a ResNet.
    const wide = new SparkModel({
      backbone: createBackboneFromConfig({ kind: 'convnext', depths: [1, 1, 1, 1], dims: [64, 8, 8, 8] }),
      decoderWidth: 32,
    });
    expect(wide.usesRowPath()).toBe(ROW_PATH_BACKENDS.includes(tf.getBackend()));
    wide.dispose();
    const resnet = createBackboneFromConfig({ kind: 'resnet', depths: [1, 1, 1, 1], block: 'basic', stemWidth: 8, channels: [8, 8, 16, 16] });
    expect(() => new SparkModel({ backbone: resnet, sparse: false, sparsePath: 'rows' })).toThrow(
      "SparkModel: sparsePath 'rows' needs sparse mode, got sparse: false",
    );
    expect(() => new SparkModel({ backbone: resnet, sparsePath: 'sparse' as SparsePath })).toThrow(
      "SparkModel: sparsePath must be one of auto, rows, dense, got 'sparse'",
    );
    resnet.dispose();
  });

  it('rejects a mask ratio outside (0, 1)', () => {
    const backbone = createBackboneFromConfig({ kind: 'resnet', depths: [1, 1, 1, 1], block: 'basic', stemWidth: 8, channels: [8, 8, 16, 16] });
    expect(() => new SparkModel({ backbone, maskRatio: 1 })).toThrow('SparkModel: maskRatio must be in (0, 1), got 1');
    backbone.dispose();
  });
});
