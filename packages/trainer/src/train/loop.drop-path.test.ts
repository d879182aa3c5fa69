// Drop path draws from the run's seeded stream (the one checkpoints save), not from the model's own: a run
// stopped and resumed into a model whose own stream differs repeats the uninterrupted run exactly.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { createBackbone } from '@sparkmim/backbones';
import { torchState } from '@sparkmim/sparse-ops';
import { describeBackends } from '@sparkmim/test-utils';
import { InMemorySource } from '../data/in-memory';
import { SparkModel } from '../model/spark-model';
import { Lamb } from '../optim/lamb';
import { paramGroupsFromVariables } from '../optim/param-groups';
import { resumeFromCheckpoint } from './checkpoint';
import { Trainer, train } from './loop';

function setup(seed: number): { model: SparkModel; optimizer: Lamb; data: InMemorySource } {
  // Drop path 0.5 on every block but the first; branches that start non-zero (no zero-init of the last BN).
  const backbone = createBackbone('resnet18', {
    depths: [1, 1, 1, 1],
    stemWidth: 4,
    channels: [4, 4, 4, 4],
    dropPathRate: 0.5,
    zeroInitLast: false,
    seed,
  });
  const model = new SparkModel({ backbone, decoderWidth: 32, seed });
  const optimizer = new Lamb(paramGroupsFromVariables(model.namedParameters()), { betas: [0.9, 0.95] });
  const pixels = tf.randomUniform([2, 64, 64, 3], 0, 255, 'float32', 5) as tf.Tensor4D;
  const data = InMemorySource.fromTensor(pixels);
  pixels.dispose();
  return { model, optimizer, data };
}

function dispose(run: ReturnType<typeof setup>): void {
  run.data.dispose();
  run.optimizer.dispose();
  run.model.dispose();
}

describeBackends('train with drop path', () => {
  it('a run stopped after epoch 1 and resumed into a model with another drop-path stream repeats the uninterrupted run', async () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-drop-path-'));
    const options = { batchSize: 2, epochs: 3, seed: 8, schedule: () => ({ lr: 1e-2, weightDecay: 0.04 }) };
    try {
      const straight = setup(1);
      const straightLosses: number[] = [];
      await train({ ...straight, ...options, onStep: (m) => void straightLosses.push(m.loss) });
      const straightState = await torchState(straight.model);
      dispose(straight);

      const first = setup(1);
      const trainer: Trainer = new Trainer({
        ...first,
        ...options,
        checkpointDir: folder,
        onEpochEnd: (m): void => (m.epoch === 1 ? trainer.stop() : undefined),
      });
      await trainer.run();
      dispose(first);

      // Another seed: other initial weights (replaced by the checkpoint) and another drop-path stream of its own.
      const second = setup(2);
      const manifest = await resumeFromCheckpoint(folder, second);
      const resumedLosses: number[] = [];
      await train({ ...second, ...options, resume: manifest, onStep: (m) => void resumedLosses.push(m.loss) });
      expect(resumedLosses).toEqual(straightLosses.slice(2));
      const resumedState = await torchState(second.model);
      for (const [name, tensor] of straightState)
        expect({ name, data: Array.from(resumedState.get(name)!.data) }).toEqual({ name, data: Array.from(tensor.data) });
      dispose(second);
    } finally {
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });
});
