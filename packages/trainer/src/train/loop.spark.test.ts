// The loop with the real SparkModel (a tiny convnet backbone, 64x64 images, in-memory data): resuming
// after an epoch reproduces an uninterrupted run, losses and final state alike. cpu only (a slow multi-step
// spec: minutes on SwiftShader): the same loop runs on webgpu in loop.test.ts, and SparkModel's own tests
// cover its numerics on both backends.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { createTinyConvNet } from '@sparkmim/backbones';
import { describeBackends } from '@sparkmim/test-utils';
import { InMemorySource } from '../data/in-memory';
import { decodeSafetensors } from '../io/safetensors';
import { SparkModel } from '../model/spark-model';
import { Lamb } from '../optim/lamb';
import { paramGroupsFromVariables } from '../optim/param-groups';
import { sparkSchedule } from '../optim/schedule';
import { ENCODER_WEIGHTS_FILE, readCheckpointManifest, resumeFromCheckpoint } from './checkpoint';
import { Trainer, train } from './loop';
import { deriveSeeds } from './random';
import { torchState } from '@sparkmim/sparse-ops';

const EPOCHS = 3;
const BATCH = 2;

function setup(seed: number): { model: SparkModel; optimizer: Lamb; data: InMemorySource } {
  const model = new SparkModel({ backbone: createTinyConvNet({ channels: [4, 8, 8, 8], seed }), decoderWidth: 32, seed });
  const optimizer = new Lamb(paramGroupsFromVariables(model.namedParameters()), { betas: [0.9, 0.95] });
  const pixels = tf.randomUniform([4, 64, 64, 3], 0, 255, 'float32', 5) as tf.Tensor4D;
  const data = InMemorySource.fromTensor(pixels, { flip: true });
  pixels.dispose();
  return { model, optimizer, data };
}

function dispose(run: { model: SparkModel; optimizer: Lamb; data: InMemorySource }): void {
  run.data.dispose();
  run.optimizer.dispose();
  run.model.dispose();
}

describeBackends('train with SparkModel', () => {
  let folder: string;
  beforeEach(() => {
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-spark-train-'));
  });
  afterEach(() => {
    fs.rmSync(folder, { recursive: true, force: true });
  });

  it('a run stopped after epoch 1 and resumed gives the same losses and weights as an uninterrupted one', async () => {
    const seed = 21;
    const schedule = sparkSchedule({ batchSize: BATCH, iterationsPerEpoch: 2, epochs: EPOCHS, warmupEpochs: 1, baseLr: 0.05 });
    const options = { batchSize: BATCH, epochs: EPOCHS, schedule, seed };

    const straight = setup(deriveSeeds(seed).init);
    const straightLosses: number[] = [];
    await train({ ...straight, ...options, onStep: (m) => void straightLosses.push(m.loss) });
    const straightState = await torchState(straight.model);
    dispose(straight);
    expect(straightLosses).toHaveLength(6);
    expect(straightLosses.every(Number.isFinite)).toBe(true);

    const first = setup(deriveSeeds(seed).init);
    const trainer: Trainer = new Trainer({
      ...first,
      ...options,
      checkpointDir: folder,
      onEpochEnd: (m): void => (m.epoch === 1 ? trainer.stop() : undefined),
    });
    const firstResult = await trainer.run();
    expect(firstResult).toMatchObject({ stopped: true, steps: 4, progress: { epoch: 2, iterationInEpoch: 0, iteration: 4 } });
    dispose(first);

    // A differently initialised model: everything must come from the checkpoint.
    const second = setup(12345);
    const manifest = await resumeFromCheckpoint(folder, second);
    const resumedLosses: number[] = [];
    await train({ ...second, ...options, resume: manifest, onStep: (m) => void resumedLosses.push(m.loss) });
    expect(resumedLosses).toEqual(straightLosses.slice(4));
    const resumedState = await torchState(second.model);
    expect([...resumedState.keys()]).toEqual([...straightState.keys()]);
    for (const [name, tensor] of straightState)
      expect({ name, data: Array.from(resumedState.get(name)!.data) }).toEqual({ name, data: Array.from(tensor.data) });
    dispose(second);

    // Encoder-only weights: the backbone's own names.
    expect((await readCheckpointManifest(folder)).progress.epoch).toBe(2);
    const encoder = decodeSafetensors(new Uint8Array(fs.readFileSync(path.join(folder, ENCODER_WEIGHTS_FILE))));
    expect([...encoder.tensors.keys()].every((key) => !key.startsWith('sparse_encoder.'))).toBe(true);
    expect([...encoder.tensors.keys()].length).toBe([...straightState.keys()].filter((key) => key.startsWith('sparse_encoder.sp_cnn.')).length);
  });
});
