import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import { decodeSafetensors, encodeSafetensors } from '../io/safetensors';
import type { Lamb } from '../optim/lamb';
import { initFromWeights, loadCheckpoint, readCheckpointManifest, resumeFromCheckpoint, saveCheckpoint, saveEncoderWeights } from './checkpoint';
import type { SaveCheckpointOptions } from './checkpoint';
import { train } from './loop';
import { disposeTinyRun, setupTinyRun, stateValues } from './test-fixtures';
import type { TinyRun } from './test-fixtures';
import { torchState } from '@sparkmim/sparse-ops';

function setup(initSeed = 1): TinyRun {
  return setupTinyRun(initSeed, 8);
}

const dispose = disposeTinyRun;

const TINY_STATE_KEYS = [
  'dense_decoder.proj.bias',
  'dense_decoder.proj.weight',
  'mask_tokens.0',
  'sparse_encoder.sp_cnn.bn1.num_batches_tracked',
  'sparse_encoder.sp_cnn.bn1.running_mean',
  'sparse_encoder.sp_cnn.conv1.bias',
  'sparse_encoder.sp_cnn.conv1.weight',
];

describeBackends('checkpoints', () => {
  let folder: string;
  beforeEach(() => {
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-checkpoint-'));
  });
  afterEach(() => {
    fs.rmSync(folder, { recursive: true, force: true });
  });

  it('saves the model in official names and PyTorch layouts, the optimiser state, the manifest and encoder-only weights', async () => {
    const run = setup();
    await train({ ...run, epochs: 1, seed: 4, checkpointDir: folder, config: { model: 'tiny', batchSize: 4 } });
    const manifest = await readCheckpointManifest(folder);
    expect(manifest).toMatchObject({
      format: 'sparkmim-checkpoint',
      formatVersion: 1,
      sparkmimVersion: expect.stringMatching(/^\d+\.\d+\.\d+/),
      progress: { epoch: 1, iterationInEpoch: 0, iteration: 2 },
      random: { seed: 4, mask: expect.any(Number) },
      config: { model: 'tiny', batchSize: 4 },
      optimizer: {
        groups: [
          { name: 'decay', parameters: 2 },
          { name: 'no_decay', parameters: 3 },
        ],
      },
      metrics: { lastLoss: expect.any(Number) },
    });
    const { modelState, optimizerState } = await loadCheckpoint(folder);
    expect([...modelState.keys()].sort()).toEqual(TINY_STATE_KEYS);
    // PyTorch layouts: conv OIHW, mask token (1, C, 1, 1).
    expect(modelState.get('sparse_encoder.sp_cnn.conv1.weight')!.shape).toEqual([4, 3, 3, 3]);
    expect(modelState.get('mask_tokens.0')!.shape).toEqual([1, 4, 1, 1]);
    expect(Array.from(modelState.get('sparse_encoder.sp_cnn.bn1.num_batches_tracked')!.data)).toEqual([2]);
    expect([...optimizerState.keys()]).toContain('exp_avg_sq.sparse_encoder.sp_cnn.conv1.weight');
    expect(Array.from(optimizerState.get('step')!.data)).toEqual([2]);
    const encoder = decodeSafetensors(new Uint8Array(fs.readFileSync(path.join(folder, 'encoder.safetensors'))));
    expect([...encoder.tensors.keys()].sort()).toEqual(['bn1.num_batches_tracked', 'bn1.running_mean', 'conv1.bias', 'conv1.weight']);
    expect(Array.from(encoder.tensors.get('conv1.weight')!.data)).toEqual(Array.from(modelState.get('sparse_encoder.sp_cnn.conv1.weight')!.data));
    // A second save replaces the first: one checkpoint's files remain.
    await train({ ...run, epochs: 2, checkpointDir: folder, resume: manifest });
    expect(fs.readdirSync(folder).filter((name) => name.endsWith('.safetensors')).length).toBe(3);
    expect((await readCheckpointManifest(folder)).progress.iteration).toBe(4);
    dispose(run);
  });

  for (const where of ['between the model and the optimiser files', 'after both data files, before the manifest'] as const) {
    it(`a save that fails ${where} leaves the previous checkpoint loadable`, async () => {
      const run = setup();
      await train({ ...run, epochs: 1, seed: 2, checkpointDir: folder });
      const good = await stateValues(run.model);
      const manifestBytes = fs.readFileSync(path.join(folder, 'checkpoint.json'));
      await train({ ...run, epochs: 2, resume: await readCheckpointManifest(folder) });
      const options: SaveCheckpointOptions = { ...run, progress: { epoch: 2, iterationInEpoch: 0, iteration: 4 }, random: { mask: 1 } };
      if (where === 'between the model and the optimiser files') {
        const optimizer = Object.create(run.optimizer) as Lamb;
        optimizer.getState = () => {
          throw new Error('out of memory (simulated)');
        };
        await expect(saveCheckpoint(folder, { ...options, optimizer })).rejects.toThrow('out of memory (simulated)');
      } else {
        const config = {
          toJSON: () => {
            throw new Error('disk full (simulated)');
          },
        };
        await expect(saveCheckpoint(folder, { ...options, config })).rejects.toThrow('disk full (simulated)');
      }
      expect(fs.readFileSync(path.join(folder, 'checkpoint.json'))).toEqual(manifestBytes);
      const fresh = setup(7);
      const manifest = await resumeFromCheckpoint(folder, fresh);
      expect(manifest.progress.iteration).toBe(2);
      expect(await stateValues(fresh.model)).toEqual(good);
      // The next good save clears the pieces the failed one left.
      await saveCheckpoint(folder, { ...fresh, progress: manifest.progress, random: manifest.random });
      expect(fs.readdirSync(folder).sort()).toEqual([
        'checkpoint.json',
        'encoder.safetensors',
        expect.stringMatching(/^model\./),
        expect.stringMatching(/^optimizer\./),
      ]);
      dispose(fresh);
      dispose(run);
    });
  }

  it('initFromWeights loads model weights only (full or encoder-only files) and says what did not fit', async () => {
    const trained = setup();
    await train({ ...trained, epochs: 2, seed: 9 });
    const full = await torchState(trained.model);
    const fullFile = path.join(folder, 'full.safetensors');
    fs.writeFileSync(fullFile, encodeSafetensors(new Map([...full].map(([name, t]) => [`param.${name}`, t]))));
    const encoderFile = path.join(folder, 'encoder.safetensors');
    await saveEncoderWeights(trained.model, encoderFile);
    const expected = await stateValues(trained.model);

    const fromFull = setup(3);
    await initFromWeights(fromFull.model, fullFile, { stripPrefix: 'param.' });
    expect(await stateValues(fromFull.model)).toEqual(expected);
    // Model only: the optimiser has no state yet.
    const optimizerState = fromFull.optimizer.getState();
    expect([...optimizerState.keys()]).toEqual(['step']);
    tf.dispose([...optimizerState.values()]);

    const fromEncoder = setup(3);
    const untouched = await stateValues(fromEncoder.model);
    await initFromWeights(fromEncoder.model, new Uint8Array(fs.readFileSync(encoderFile)));
    const loaded = await stateValues(fromEncoder.model);
    for (const name of TINY_STATE_KEYS) expect(loaded[name]).toEqual(name.startsWith('sparse_encoder.') ? expected[name] : untouched[name]);

    const partial = new Map(full);
    partial.delete('mask_tokens.0');
    partial.set('decoder.extra', { shape: [1], data: new Float32Array(1) });
    const partialBytes = encodeSafetensors(new Map([...partial].map(([name, t]) => [name, { shape: t.shape, data: t.data }])));
    await expect(initFromWeights(fromEncoder.model, partialBytes)).rejects.toThrow(
      'initFromWeights(the weights): the state dict does not fit the model\nmissing keys:\n  mask_tokens.0\nunexpected keys:\n  decoder.extra',
    );
    expect(await initFromWeights(fromEncoder.model, partialBytes, { strict: false })).toEqual({
      missing: ['mask_tokens.0'],
      unexpected: ['decoder.extra'],
    });
    await expect(readCheckpointManifest(folder)).rejects.toThrow(`${folder} holds no checkpoint: checkpoint.json is missing`);
    for (const run of [trained, fromFull, fromEncoder]) dispose(run);
  });
});
