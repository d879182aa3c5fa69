import { runCli } from '../testing/run-cli';

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
});
