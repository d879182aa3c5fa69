import * as tf from '@tensorflow/tfjs-core';
import { runCli } from '../testing/run-cli';
import { aggregateKernelTimes } from './bench';

describe('sparkmim bench', () => {
  it('lists its scenarios, the quickstart and the 224 steps among them', async () => {
    const result = await runCli(['bench', '--list']);
    expect(result.code).toBe(0);
    const names = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line).name);
    expect(names).toEqual(expect.arrayContaining(['quickstart', 'resnet18-224', 'resnet50-224', 'convnext-t-224', 'resnet50-infer-224', 'ci-step']));
  });

  it('names the scenarios it knows when given another, with exit code 2', async () => {
    const result = await runCli(['bench', '--scenario', 'resnet9000']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^sparkmim: --scenario: unknown scenario 'resnet9000': expected one of quickstart, resnet18-224, /);
  });

  it('rejects a step count that is not a whole number >= 1', async () => {
    const result = await runCli(['bench', '--steps', '0']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe("sparkmim: --steps is '0', expected a whole number >= 1\n");
  });

  it('times a tiny training step on wasm: forward, backward and optimiser apart, no tensor leaked', async () => {
    const result = await runCli(['bench', '--scenario', 'ci-step', '--backend', 'wasm', '--steps', '1']);
    expect(result.code).toBe(0);
    const lines = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines).toHaveLength(1);
    const [line] = lines;
    expect(line).toMatchObject({ scenario: 'ci-step', backend: 'wasm', kind: 'step', batch: 2, inputSize: 64, steps: 1, leakedTensors: 0 });
    expect(line.ms.forward).toBeGreaterThan(0);
    expect(line.ms.backward).toBeGreaterThan(0);
    expect(line.ms.optimiser).toBeGreaterThan(0);
    expect(line.ms.total).toBeCloseTo(line.ms.forward + line.ms.backward + line.ms.optimiser, 0);
    expect(line.imagesPerSecond).toBeCloseTo(2 / (line.ms.total / 1000), 0);
    expect(line.peakBytes).toBeGreaterThan(0);
    expect(line.liveTensors).toBeGreaterThan(0);
  });

  it('runs a pair in one process (inference on wasm and cpu) and prints their ratio', async () => {
    const result = await runCli(['bench', '--scenario', 'ci-infer', '--backend', 'wasm,cpu', '--steps', '1']);
    expect(result.code).toBe(0);
    const lines = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines.map((line) => line.backend ?? line.pair)).toEqual(['wasm', 'cpu', ['wasm', 'cpu']]);
    expect(lines[0]).toMatchObject({ kind: 'inference', ms: { backward: 0, optimiser: 0 }, leakedTensors: 0 });
    expect(lines[2].ratio).toBeCloseTo(lines[0].imagesPerSecond / lines[1].imagesPerSecond, 1);
  });

  it('rejects an input size that is not a multiple of 32', async () => {
    const result = await runCli(['bench', '--scenario', 'ci-profile', '--input-size', '100']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe("sparkmim: --input-size is '100', expected a whole multiple of 32\n");
  });

  it('sums profiled kernel calls by name, slowest first, with shares, optimiser part and webgpu programs; scopes left out', () => {
    const lines = aggregateKernelTimes(
      {
        model: [
          { name: 'Conv2D', kernelTimeMs: 3, extraInfo: 'Conv2DMMProgram: 3' },
          { name: 'unnamed scope', kernelTimeMs: 50 },
          { name: 'Multiply', kernelTimeMs: 1 },
          { name: 'Conv2D', kernelTimeMs: 2, extraInfo: 'Conv2DMMProgram: 1.5, TransposeProgram: 0.5' },
          { name: 'Reshape', kernelTimeMs: { error: 'no timer' } },
        ],
        optimiser: [{ name: 'Multiply', kernelTimeMs: 4 }],
      },
      's',
      'webgpu',
      (name) => name !== 'unnamed scope',
    );
    expect(lines).toEqual([
      {
        scenario: 's',
        backend: 'webgpu',
        kernel: 'Conv2D',
        ms: 5,
        count: 2,
        share: 0.5,
        optimiserMs: 0,
        programs: { Conv2DMMProgram: 4.5, TransposeProgram: 0.5 },
      },
      { scenario: 's', backend: 'webgpu', kernel: 'Multiply', ms: 5, count: 2, share: 0.5, optimiserMs: 4 },
      { scenario: 's', backend: 'webgpu', kernel: 'Reshape', ms: 0, count: 1, share: 0, optimiserMs: 0 },
    ]);
  });

  it('profiles one tiny step on wasm: a line per kernel (convolutions and their gradients among them), then a summary', async () => {
    // As in describeBackends: tfjs's test-mode kernel leak check counts the copies tf.customGrad saves for
    // the backward pass as leaks on wasm; the summary's own tensor count (leakedTensors) still checks.
    const wasTest = tf.env().getBool('IS_TEST');
    tf.env().set('IS_TEST', false);
    const result = await runCli(['bench', '--scenario', 'ci-profile', '--backend', 'wasm']).finally(() => tf.env().set('IS_TEST', wasTest));
    expect(result.code).toBe(0);
    const lines = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    const summary = lines.pop();
    expect(summary).toMatchObject({
      scenario: 'ci-profile',
      backend: 'wasm',
      kind: 'profile',
      batch: 2,
      inputSize: 64,
      timing: 'wall',
      leakedTensors: 0,
    });
    expect(summary.kernels).toBe(lines.length);
    expect(summary.plainOptimiserMs).toBeGreaterThan(0);
    expect(summary.plainOptimiserMs).toBeLessThan(summary.plainStepMs);
    expect(summary.calls).toBe(lines.reduce((total, line) => total + line.count, 0));
    expect(summary.kernelMs).toBeCloseTo(
      lines.reduce((total, line) => total + line.ms, 0),
      1,
    );
    const names = lines.map((line) => line.kernel);
    expect(names).toEqual(expect.arrayContaining(['Conv2D', 'Conv2DBackpropInput', 'FusedBatchNorm', 'Multiply']));
    expect(names).not.toContain('unnamed scope');
    const times = lines.map((line) => line.ms);
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(lines.reduce((total, line) => total + line.share, 0)).toBeCloseTo(1, 2);
    expect(lines.find((line) => line.kernel === 'Conv2D').optimiserMs).toBe(0);
    expect(lines.find((line) => line.kernel === 'Multiply').optimiserMs).toBeGreaterThan(0);
  });
});
