import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackends } from '@sparkmim/test-utils';
import type { DataSource } from '../data/source';
import { lrWdAt } from '../optim/schedule';
import type { LrWdSchedule } from '../optim/schedule';
import { readCheckpointManifest, resumeFromCheckpoint } from './checkpoint';
import { Trainer, train } from './loop';
import type { TrainOptions } from './loop';
import type { EpochMetrics, StepMetrics } from './metrics';
import { NonFiniteLossError } from './step';
import { disposeTinyRun, setupTinyRun, stateValues } from './test-fixtures';
import type { TinyRun } from './test-fixtures';

const EPOCHS = 4;

const BATCHES_PER_EPOCH = 3;

function schedule(): LrWdSchedule {
  return { peakLr: 0.02, weightDecay: 0.04, weightDecayEnd: 0.2, warmupIterations: BATCHES_PER_EPOCH, maxIterations: EPOCHS * BATCHES_PER_EPOCH };
}

function setup(initSeed = 1): TinyRun {
  return setupTinyRun(initSeed, 12);
}

const dispose = disposeTinyRun;

describeBackends('train', () => {
  let folder: string;
  beforeEach(() => {
    folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-train-'));
  });
  afterEach(() => {
    fs.rmSync(folder, { recursive: true, force: true });
  });

  it('reports every step (loss, scheduled lr and wd, grad norm, speed, memory) to onStep and the JSONL file, and leaks nothing', async () => {
    const run = setup();
    const steps: StepMetrics[] = [];
    const epochs: EpochMetrics[] = [];
    const metricsFile = path.join(folder, 'logs', 'metrics.jsonl');
    const options: TrainOptions = {
      ...run,
      epochs: EPOCHS,
      schedule: schedule(),
      seed: 3,
      metricsFile,
      onStep: (m) => void steps.push(m),
      onEpochEnd: (m) => void epochs.push(m),
    };
    // 7 epochs of 3 batches = 21 steps, which the schedule must cover.
    options.epochs = 7;
    options.schedule = { ...schedule(), maxIterations: 21 };
    const result = await train(options);
    expect(result).toMatchObject({ stopped: false, steps: 21, progress: { epoch: 7, iterationInEpoch: 0, iteration: 21 } });
    expect(steps.map((m) => m.iteration)).toEqual([...Array(21).keys()]);
    for (const m of steps) {
      const { lr, weightDecay } = lrWdAt(options.schedule as LrWdSchedule, m.iteration);
      expect(m.lr).toBe(lr);
      expect(m.weightDecay).toBe(weightDecay);
      expect(m.minWeightDecay).toBe(0);
      expect(Number.isFinite(m.loss) && m.gradNorm > 0 && m.imagesPerSecond > 0 && m.batchSize === 4).toBe(true);
      expect(m.epoch).toBe(Math.floor(m.iteration / 3));
    }
    // The live-tensor count after 20 steps equals the count after 2: nothing accumulates per step.
    expect(steps[19].numTensors).toBe(steps[1].numTensors);
    expect(steps[19].numBytes).toBe(steps[1].numBytes);
    expect(epochs.map((m) => [m.epoch, m.steps])).toEqual([...Array(7).keys()].map((epoch) => [epoch, 3]));
    expect(epochs[6].lastLoss).toBe(steps[20].loss);
    const lines = fs
      .readFileSync(metricsFile, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines.filter((line) => line.type === 'step')).toEqual(steps);
    expect(lines.filter((line) => line.type === 'epoch')).toEqual(epochs);
    dispose(run);
  });

  it('a run stopped after an epoch and resumed gives the same losses as an uninterrupted run', async () => {
    const straight = setup();
    const straightLosses: number[] = [];
    await train({ ...straight, epochs: EPOCHS, schedule: schedule(), seed: 11, onStep: (m) => void straightLosses.push(m.loss) });
    const straightState = await stateValues(straight.model);
    dispose(straight);

    const first = setup();
    const firstLosses: number[] = [];
    const trainer: Trainer = new Trainer({
      ...first,
      epochs: EPOCHS,
      schedule: schedule(),
      seed: 11,
      checkpointDir: folder,
      onStep: (m) => void firstLosses.push(m.loss),
      onEpochEnd: (m): void => (m.epoch === 1 ? trainer.stop() : undefined),
    });
    const stopped = await trainer.run();
    expect(stopped).toMatchObject({ stopped: true, progress: { epoch: 2, iterationInEpoch: 0, iteration: 6 } });
    expect(firstLosses).toEqual(straightLosses.slice(0, 6));
    dispose(first);

    // Another initialisation, so that everything must come from the checkpoint.
    const second = setup(99);
    const manifest = await resumeFromCheckpoint(folder, second);
    expect(manifest.progress).toEqual({ epoch: 2, iterationInEpoch: 0, iteration: 6 });
    const resumedLosses: number[] = [];
    const resumed = await train({
      ...second,
      epochs: EPOCHS,
      schedule: schedule(),
      resume: manifest,
      onStep: (m) => void resumedLosses.push(m.loss),
    });
    expect(resumed).toMatchObject({ stopped: false, steps: 6 });
    expect(resumedLosses).toEqual(straightLosses.slice(6));
    expect(await stateValues(second.model)).toEqual(straightState);
    dispose(second);
  });

  it('stop() mid-epoch finishes the step, saves, and the resumed run skips the batches already seen', async () => {
    const straight = setup();
    const straightLosses: number[] = [];
    await train({ ...straight, epochs: EPOCHS, schedule: schedule(), seed: 5, onStep: (m) => void straightLosses.push(m.loss) });
    dispose(straight);

    const first = setup();
    const controller = new AbortController();
    const stopped = await train({
      ...first,
      epochs: EPOCHS,
      schedule: schedule(),
      seed: 5,
      checkpointDir: folder,
      signal: controller.signal,
      onStep: (m) => (m.iteration === 4 ? controller.abort() : undefined),
    });
    expect(stopped).toMatchObject({ stopped: true, steps: 5, progress: { epoch: 1, iterationInEpoch: 2, iteration: 5 } });
    expect((await readCheckpointManifest(folder)).progress).toEqual({ epoch: 1, iterationInEpoch: 2, iteration: 5 });
    dispose(first);

    const second = setup(42);
    const manifest = await resumeFromCheckpoint(folder, second);
    const resumed: StepMetrics[] = [];
    await train({ ...second, epochs: EPOCHS, schedule: schedule(), resume: manifest, onStep: (m) => void resumed.push(m) });
    expect(resumed[0]).toMatchObject({ epoch: 1, iterationInEpoch: 2, iteration: 5 });
    expect(resumed.map((m) => m.loss)).toEqual(straightLosses.slice(5));
    dispose(second);
  });

  it('returns at once, saving nothing, when the signal was aborted before the run', async () => {
    const run = setup();
    const controller = new AbortController();
    controller.abort();
    const result = await train({ ...run, epochs: 2, checkpointDir: folder, signal: controller.signal });
    expect(result).toEqual({ progress: { epoch: 0, iterationInEpoch: 0, iteration: 0 }, stopped: true, steps: 0 });
    expect(fs.readdirSync(folder)).toEqual([]);
    dispose(run);
  });

  it('stops on a NaN loss with an error naming the step, and keeps the last good checkpoint as it was', async () => {
    const run = setup();
    await train({ ...run, epochs: 1, checkpointDir: folder, seed: 1 });
    const snapshot = () => new Map(fs.readdirSync(folder).map((name) => [name, fs.readFileSync(path.join(folder, name)).toString('base64')]));
    const before = snapshot();
    expect([...before.keys()].sort()).toEqual([
      'checkpoint.json',
      'encoder.safetensors',
      expect.stringMatching(/^model\.it00000003-[0-9a-f]{4}\.safetensors$/),
      expect.stringMatching(/^optimizer\.it00000003-[0-9a-f]{4}\.safetensors$/),
    ]);
    // Forward calls 1-3 were epoch 0; the 4th, iteration 3 (epoch 1, batch 0), comes out NaN.
    run.model.nanAtCall = 4;
    const manifest = await readCheckpointManifest(folder);
    const failing = train({ ...run, epochs: 2, checkpointDir: folder, resume: manifest, checkpointEveryIterations: 1 });
    await expect(failing).rejects.toThrow(NonFiniteLossError);
    await expect(failing).rejects.toThrow(
      `train: stopped at iteration 3 (epoch 1, batch 0): the loss is NaN; nothing after iteration 3 was saved: ${folder} still holds the checkpoint of iteration 3; lower the learning rate or check the data`,
    );
    expect(snapshot()).toEqual(before);
    dispose(run);
  });

  it('stops when the last update of an epoch leaves NaN weights, before its checkpoint, and says which checkpoint remains', async () => {
    const run = setup();
    // A finite loss whose update diverges: after the step of iteration 2 (the last of epoch 0) a weight is NaN.
    const poison = (metrics: StepMetrics) => {
      if (metrics.iteration === 2) tf.tidy(() => run.model.proj.weight.assign(tf.fill(run.model.proj.weight.shape, NaN)));
    };
    const fresh = train({ ...run, epochs: 1, checkpointDir: folder, seed: 1, onStep: poison });
    await expect(fresh).rejects.toThrow(NonFiniteLossError);
    const message = await fresh.then(
      () => '',
      (error: Error) => error.message,
    );
    expect(message).toMatch(
      new RegExp(
        `^train: stopped after iteration 2: its loss was \\d\\S* but the update left 'dense_decoder\\.proj\\.weight' with NaN or infinite values; ` +
          `the checkpoint of iteration 3 was not written and nothing was saved: ${folder.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} holds no checkpoint of this run yet; lower the learning rate`,
      ),
    );
    // Not a file was written.
    expect(fs.readdirSync(folder)).toEqual([]);
    dispose(run);

    // Resumed from a good checkpoint of epoch 1, the same divergence at the end of epoch 2 leaves that one in place.
    const good = setup();
    await train({ ...good, epochs: 1, checkpointDir: folder, seed: 1 });
    const snapshot = () => new Map(fs.readdirSync(folder).map((name) => [name, fs.readFileSync(path.join(folder, name)).toString('base64')]));
    const before = snapshot();
    const resumed = train({
      ...good,
      epochs: 2,
      checkpointDir: folder,
      resume: await readCheckpointManifest(folder),
      onStep: (metrics) => {
        if (metrics.iteration === 5) tf.tidy(() => good.model.proj.weight.assign(tf.fill(good.model.proj.weight.shape, Infinity)));
      },
    });
    await expect(resumed).rejects.toThrow(
      `the checkpoint of iteration 6 was not written and nothing after iteration 3 was saved: ${folder} still holds the checkpoint of iteration 3`,
    );
    expect(snapshot()).toEqual(before);
    dispose(good);
  });

  it('says what it expected for a short schedule, a short data source and a mismatched resume position', async () => {
    const run = setup();
    expect(() => new Trainer({ ...run, epochs: 5, schedule: schedule() })).toThrow(
      'train: the schedule covers 12 iterations, but 5 epochs of 3 batches need 15',
    );
    expect(() => new Trainer({ ...run, epochs: 0 })).toThrow('train: epochs is 0, expected a whole number >= 1');
    // A source that claims more images than it yields.
    const short: DataSource = {
      size: 16,
      inputSize: 8,
      epochBatches: (epoch, options) => run.data.epochBatches(epoch, options),
      dispose: () => undefined,
    };
    await expect(train({ ...run, data: short, epochs: 1 })).rejects.toThrow(
      'train: the data source ended epoch 0 after 3 batches, expected 4 (16 images in batches of 4)',
    );
    await expect(
      train({ ...run, epochs: 2, resume: { progress: { epoch: 1, iterationInEpoch: 0, iteration: 5 }, random: { mask: 0 } } }),
    ).rejects.toThrow(
      'train: cannot resume at epoch 1, batch 0, iteration 5 with 3 batches per epoch (the data source has another size than the run that saved the checkpoint)',
    );
    dispose(run);
  });
  it('asks for the next batch of the epoch before each step runs, and disposes it when stopped', async () => {
    const tensorsBefore = tf.memory().numTensors;
    const run = setup();
    const events: string[] = [];
    const source = run.data;
    // The same source, logging when the loop asks it for a batch and when a step's forward pass runs.
    const logged: DataSource = {
      size: source.size,
      inputSize: source.inputSize,
      epochBatches: (epoch, options) => ({
        [Symbol.asyncIterator]: () => {
          const inner = source.epochBatches(epoch, options)[Symbol.asyncIterator]();
          let asked = options.startBatch ?? 0;
          return {
            next: () => {
              events.push(`ask ${epoch}.${asked++}`);
              return inner.next();
            },
            return: () => inner.return?.() ?? Promise.resolve({ done: true, value: undefined }),
          };
        },
      }),
      dispose: () => source.dispose(),
    };
    const forward = run.model.forward.bind(run.model);
    run.model.forward = (images, options) => {
      events.push('step');
      return forward(images, options);
    };
    const trainer = new Trainer({
      ...run,
      data: logged,
      epochs: 2,
      schedule: { ...schedule(), maxIterations: 2 * BATCHES_PER_EPOCH },
      seed: 3,
      // Stopped during the second step of epoch 1, while its third batch is already asked for.
      onStep: (m) => {
        if (m.iteration === 4) trainer.stop();
      },
    });
    const result = await trainer.run();
    expect(result).toMatchObject({ stopped: true, steps: 5 });
    expect(events).toEqual(['ask 0.0', 'ask 0.1', 'step', 'ask 0.2', 'step', 'step', 'ask 1.0', 'ask 1.1', 'step', 'ask 1.2', 'step']);
    dispose(run);
    // The batch asked for but never trained on (1.2) was disposed too: nothing is left.
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });
});
