import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { torchState, type TorchTensorData } from '@sparkmim/sparse-ops';
import { describeBackends } from '@sparkmim/test-utils';
import { initFromWeights } from '../train/checkpoint';
import { ENCODER_STATE_PREFIX } from '../train/trainable';
import { stateToSafetensors } from './state';
import { loadTfjsWeights, stateToTfjsArtifacts } from './tfjs-weights';
import { readWeightsFile, sparkModelFromWeights, stateToPth, summarizeWeights } from './weights-file';

// Fixtures made once by PyTorch with the official SparK code (test/fixtures/pth/make_fixtures.py).
const FIXTURES = path.join(__dirname, '../../test/fixtures/pth');
const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as {
  fixtures: Record<string, { kind: string; group?: string; keys?: number; parameters?: number }>;
};
const readFixture = (file: string) => readWeightsFile(new Uint8Array(fs.readFileSync(path.join(FIXTURES, file))), { source: file });

function bits(data: Float32Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

// Same keys (in the same order unless `sorted`: safetensors files sort them), same shapes, same float32 bits.
function expectSameState(
  actual: ReadonlyMap<string, TorchTensorData>,
  expected: ReadonlyMap<string, TorchTensorData>,
  { sorted = false } = {},
): void {
  const keys = (state: ReadonlyMap<string, TorchTensorData>) => (sorted ? [...state.keys()].sort() : [...state.keys()]);
  expect(keys(actual)).toEqual(keys(expected));
  for (const [key, tensor] of expected) {
    const got = actual.get(key)!;
    expect({ key, shape: got.shape, same: bits(got.data).equals(bits(tensor.data)) }).toEqual({ key, shape: tensor.shape, same: true });
  }
}

describe('readWeightsFile on the official file kinds', () => {
  const kinds = Object.entries(manifest.fixtures).filter(([, info]) => info.kind !== 'tensors' && info.kind !== 'legacy');
  it.each(kinds)('%s: its kind, and the parameter count PyTorch printed', (file, info) => {
    const summary = summarizeWeights(readFixture(file));
    expect({ kind: summary.kind, parameters: summary.parameterCount }).toEqual({ kind: info.kind, parameters: info.parameters });
  });

  it('keeps the checkpoint dict beside the weights and lists what it leaves out', () => {
    const file = readFixture('convnext_withdecoder_1kpretrained_spark_style.pth');
    expect(file.meta).toMatchObject({ arch: 'convnext_small', epoch: 41, input_size: 32, is_pretrain: true });
    expect(file.ignored.sort()).toEqual(['config', 'imn_m', 'imn_s', 'norm_black', 'optimizer']);
    const summary = summarizeWeights(readFixture('resnet_1kpretrained_timm_style.pth'));
    expect(summary.backbone).toEqual({ kind: 'resnet', depths: [1, 1, 1, 1], block: 'bottleneck', stemWidth: 4, channels: [2, 4, 8, 16] });
    expect(summary.architecture).toBeUndefined();
    expect(summary.tensors.find((tensor) => tensor.key === 'bn1.num_batches_tracked')).toEqual({
      key: 'bn1.num_batches_tracked',
      shape: [],
      dtype: 'int64',
    });
  });
  it('tells safetensors from .pth by content, even a safetensors header length ending in 0x80', () => {
    const state = new Map([['w', { shape: [1], data: Float32Array.from([1.5]) }]]);
    let bytes = stateToSafetensors(state);
    for (let pad = 0; bytes[0] !== 0x80; pad++) bytes = stateToSafetensors(state, { note: 'x'.repeat(pad) });
    expect(readWeightsFile(bytes)).toMatchObject({ format: 'safetensors', kind: 'state-dict' });
    expect(() => readWeightsFile(new Uint8Array(fs.readFileSync(path.join(FIXTURES, 'legacy.pth'))), { source: 'legacy.pth' })).toThrow(
      'legacy.pth: the legacy torch.save format (before PyTorch 1.6) is not read',
    );
  });

  it("takes a sparkmim checkpoint's epoch as the official dict's (the last epoch finished)", () => {
    const state = readFixture('resnet_1kpretrained_timm_style.pth').state;
    const bytes = stateToSafetensors(state, { format: 'pt', sparkmim_version: '0.1.0', epoch: '3' });
    expect(readWeightsFile(bytes).meta).toEqual({ epoch: 2 });
    expect(readWeightsFile(stateToSafetensors(state, { epoch: '3' })).meta).toEqual({});
  });
});

describeBackends('weights files through a SparkModel', () => {
  it('.pth -> model -> .pth and -> safetensors -> model -> safetensors are bit-exact; -> timm keeps the encoder bit-exact', async () => {
    for (const [fixture, encoderFixture] of [
      ['resnet_withdecoder_1kpretrained_spark_style.pth', 'resnet_1kpretrained_timm_style.pth'],
      ['convnext_withdecoder_bare.pth', 'convnext_1kpretrained_official_style.pth'],
    ]) {
      const original = readFixture(fixture);
      const model = await sparkModelFromWeights(original);
      const pth = readWeightsFile(stateToPth(await model.stateDict(), { meta: { arch: 'resnet50', epoch: 41 } }));
      expect(pth.kind).toBe('spark-checkpoint');
      expect(pth.meta).toEqual({ arch: 'resnet50', epoch: 41, is_pretrain: true });
      expectSameState(pth.state, original.state);
      // As PyTorch holds them: BatchNorm's counters int64, everything else float32.
      for (const [key, dtype] of pth.dtypes)
        expect({ key, dtype }).toEqual({ key, dtype: key.endsWith('num_batches_tracked') ? 'int64' : 'float32' });

      const safetensorsBytes = await model.toSafetensors();
      const fromSafetensors = await sparkModelFromWeights(readWeightsFile(safetensorsBytes));
      expect(Buffer.from(await fromSafetensors.toSafetensors()).equals(Buffer.from(safetensorsBytes))).toBe(true);
      expectSameState(readWeightsFile(safetensorsBytes).state, original.state, { sorted: true });

      const timm = readWeightsFile(stateToPth(await torchState(model, { stripPrefix: ENCODER_STATE_PREFIX }), { layout: 'encoder' }));
      expect(timm.kind).toBe(readFixture(encoderFixture).kind);
      expectSameState(timm.state, readFixture(encoderFixture).state);
      model.dispose();
      fromSafetensors.dispose();
    }
  });

  it('encoder-only files (timm ResNet, official ConvNeXt, float16) fill the encoder of a new model', async () => {
    for (const fixture of ['resnet_1kpretrained_timm_style.pth', 'float16.pth', 'convnext_1kpretrained_official_style.pth']) {
      const file = readFixture(fixture);
      const model = await sparkModelFromWeights(file, { decoderWidth: 32 });
      expectSameState(await torchState(model, { stripPrefix: ENCODER_STATE_PREFIX }), file.state);
      expect((await model.stateDict()).get('dense_decoder.dec.0.up_sample.weight')!.shape).toEqual([32, 32, 4, 4]);
      model.dispose();
    }
  });

  it('TF.js artefacts (model.json + shards): tf.io decodes them, loadTfjsWeights reads them back bit-exact with progress', async () => {
    const file = readFixture('resnet_withdecoder_1kpretrained_spark_style.pth');
    const { modelJson, shards } = stateToTfjsArtifacts(file.state, { shardBytes: 64 * 1024, meta: file.meta });
    expect(shards.size).toBe(4);
    const served = new Map<string, Uint8Array>([['https://example.org/w/model.json', new TextEncoder().encode(JSON.stringify(modelJson))]]);
    for (const [name, bytes] of shards) served.set(`https://example.org/w/${name}`, bytes);
    const fetch = async (url: string) => {
      const bytes = served.get(url);
      return { ok: bytes !== undefined, status: bytes ? 200 : 404, arrayBuffer: async () => bytes!.slice().buffer };
    };
    const progress: number[] = [];
    const loaded = await loadTfjsWeights('https://example.org/w/model.json', { fetch, onProgress: (fraction) => progress.push(fraction) });
    expect(loaded.kind).toBe('spark-state');
    expect(loaded.meta).toMatchObject({ arch: 'resnet50', epoch: 41 });
    expectSameState(loaded.state, file.state);
    expect(progress).toEqual([0, ...progress.slice(1).sort((a, b) => a - b)]);
    expect(progress[progress.length - 1]).toBe(1);
    // The standard TF.js decoder reads the same tensors.
    const concatenated = new Uint8Array([...shards.values()].reduce((sum, shard) => sum + shard.length, 0));
    let offset = 0;
    for (const shard of shards.values()) {
      concatenated.set(shard, offset);
      offset += shard.length;
    }
    const decoded = tf.io.decodeWeights(concatenated.buffer, modelJson.weightsManifest[0].weights);
    for (const [name, tensor] of Object.entries(decoded)) {
      expect({ name, same: bits((await tensor.data()) as Float32Array).equals(bits(file.state.get(name)!.data)) }).toEqual({ name, same: true });
    }
    tf.dispose(Object.values(decoded));
    await expect(loadTfjsWeights('https://example.org/x/model.json', { fetch })).rejects.toThrow(
      'loadTfjsWeights: https://example.org/x/model.json is not a TF.js model.json (loadTfjsWeights: https://example.org/x/model.json answered 404)',
    );
  });

  it('initFromWeights (pretrain --init-weights) takes an official encoder .pth and a checkpoint dict', async () => {
    const encoderBytes = new Uint8Array(fs.readFileSync(path.join(FIXTURES, 'resnet_1kpretrained_timm_style.pth')));
    const model = await sparkModelFromWeights(readFixture('resnet_1kpretrained_timm_style.pth'), { decoderWidth: 32, seed: 3 });
    const other = await sparkModelFromWeights(readFixture('float16.pth'), { decoderWidth: 32, seed: 3 });
    expect(await initFromWeights(other, encoderBytes)).toEqual({ missing: [], unexpected: [] });
    expectSameState(await torchState(other), await torchState(model));
    const full = readFixture('resnet_withdecoder_bare.pth');
    await initFromWeights(other, new Uint8Array(fs.readFileSync(path.join(FIXTURES, 'resnet_withdecoder_1kpretrained_spark_style.pth'))));
    expectSameState(await torchState(other), full.state);
    model.dispose();
    other.dispose();
  });
});
