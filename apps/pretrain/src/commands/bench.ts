// `sparkmim bench`: named scenarios (bench-scenarios.ts), one JSON line each, and a ratio line per
// scenario when run on two backends in the same process. Figures only: it fails on errors, never on time.
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from '@sparkmim/runtime';
import { AdamW, SparkModel, defaultBetas, paramGroupsFromVariables } from '@sparkmim/trainer';
import { UsageError } from '../errors';
import { BENCH_SCENARIOS, CI_SCENARIOS, type BenchScenario } from './bench-scenarios';

export const BENCH_HELP = `usage: sparkmim bench [--scenario NAME[,NAME...]] [--backend NAME[,NAME]] [--steps N] [--batch N] [--ci] [--list]

Times SparK training steps (forward, backward, optimiser apart) or dense encoder inference, and prints one
JSON line per scenario and backend: scenario, backend, batch, inputSize, imagesPerSecond, ms (forward,
backward, optimiser, total; per step), cpuMs (this process's CPU time per step), peakBytes, liveTensors. With two backends, a line per scenario
gives their ratio (images/s of the first over the second), both measured in this process.

  --scenario LIST   scenarios to run (default quickstart); --list shows them all
  --backend LIST    backends, in order (default wasm,cpu)
  --steps N         timed steps per scenario (default: the scenario's own, after one warm-up step)
  --batch N         images per step instead of the scenario's
  --ci              the CI-sized scenarios on wasm and cpu (${CI_SCENARIOS.join(', ')}): a check that every
                    path runs, in well under 2 minutes; fails only on errors
  --list            the scenarios, one JSON line each
`;

/** One scenario on one backend, as printed. */
export interface BenchResult {
  scenario: string;
  backend: string;
  kind: BenchScenario['kind'];
  model: string;
  batch: number;
  inputSize: number;
  steps: number;
  imagesPerSecond: number;
  /** Milliseconds per step (inference: forward only). */
  ms: { forward: number; backward: number; optimiser: number; total: number };
  /**
   * CPU time of this process per step (user + system), ms: on a machine shared with other work the wall
   * time stretches, this much less (the wasm backend runs on one thread).
   */
  cpuMs: number;
  /** Largest tf.memory().numBytes during the warm-up step. */
  peakBytes: number;
  /** Tensors alive after the timed steps (the model's and the optimiser's included). */
  liveTensors: number;
  /** Tensors gained over the timed steps: anything but 0 is a leak. */
  leakedTensors: number;
}

function seededUniform(seed: number): () => number {
  let state = seed % 2147483647 || 1;
  return () => {
    state = (state * 16807) % 2147483647;
    return state / 2147483647;
  };
}

async function settle(tensors: tf.Tensor[]): Promise<void> {
  // Reading a value waits for asynchronous backends (webgpu) to finish the work timed.
  await Promise.all(tensors.map((t) => t.data()));
}

async function runScenario(scenario: BenchScenario, backend: string, stepsOverride?: number): Promise<BenchResult> {
  await setupBackend(backend);
  const steps = stepsOverride ?? scenario.steps;
  const model = SparkModel.create(scenario.model, { backbone: scenario.backbone, decoderWidth: scenario.decoderWidth, seed: 0 });
  const images = tf.randomNormal([scenario.batch, scenario.inputSize, scenario.inputSize, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const optimizer =
    scenario.kind === 'step'
      ? new AdamW(paramGroupsFromVariables(model.namedParameters()), { betas: defaultBetas(scenario.model), maxGradNorm: 5 })
      : undefined;
  const variables = model.namedParameters().map(({ variable }) => variable);
  const names = new Map(model.namedParameters().map(({ name, variable }) => [variable.name, name]));
  const random = seededUniform(1);
  const totals = { forward: 0, backward: 0, optimiser: 0 };

  const oneStep = async (timed: boolean): Promise<void> => {
    if (scenario.kind === 'inference') {
      model.train(false);
      const start = performance.now();
      const features = tf.tidy(() => model.backbone.forward(images));
      await settle(features);
      tf.dispose(features);
      if (timed) totals.forward += performance.now() - start;
      return;
    }
    model.train(true);
    // The forward pass alone (its own mask draw included), then forward + backward: the backward time is
    // their difference, as autograd interleaves nothing else.
    let start = performance.now();
    const loss = tf.tidy(() => model.forward(images, { random }));
    await settle([loss]);
    loss.dispose();
    const forward = performance.now() - start;
    start = performance.now();
    const { value, grads } = tf.variableGrads(() => model.forward(images, { random }), variables);
    await settle([value, ...Object.values(grads)]);
    const forwardBackward = performance.now() - start;
    start = performance.now();
    const named = new Map(Object.entries(grads).map(([variableName, grad]) => [names.get(variableName)!, grad]));
    await optimizer!.step(named);
    await settle(variables.slice(0, 1));
    const optimiser = performance.now() - start;
    value.dispose();
    tf.dispose(Object.values(grads));
    if (timed) {
      totals.forward += forward;
      totals.backward += Math.max(0, forwardBackward - forward);
      totals.optimiser += optimiser;
    }
  };

  try {
    const profile = await tf.profile(() => oneStep(false));
    const tensorsBefore = tf.memory().numTensors;
    const cpuBefore = process.cpuUsage();
    for (let i = 0; i < steps; i++) await oneStep(true);
    const cpuUsed = process.cpuUsage(cpuBefore);
    const liveTensors = tf.memory().numTensors;
    const ms = {
      forward: totals.forward / steps,
      backward: totals.backward / steps,
      optimiser: totals.optimiser / steps,
      total: (totals.forward + totals.backward + totals.optimiser) / steps,
    };
    const round = (value: number) => Math.round(value * 10) / 10;
    return {
      scenario: scenario.name,
      backend,
      kind: scenario.kind,
      model: scenario.model,
      batch: scenario.batch,
      inputSize: scenario.inputSize,
      steps,
      imagesPerSecond: Math.round((scenario.batch / (ms.total / 1000)) * 1000) / 1000,
      ms: { forward: round(ms.forward), backward: round(ms.backward), optimiser: round(ms.optimiser), total: round(ms.total) },
      cpuMs: round((cpuUsed.user + cpuUsed.system) / 1000 / steps),
      peakBytes: profile.peakBytes,
      liveTensors,
      leakedTensors: liveTensors - tensorsBefore,
    };
  } finally {
    images.dispose();
    optimizer?.dispose();
    model.dispose();
  }
}

/** Runs `sparkmim bench`; returns the exit code. */
export async function benchCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      scenario: { type: 'string' },
      backend: { type: 'string' },
      steps: { type: 'string' },
      batch: { type: 'string' },
      ci: { type: 'boolean', default: false },
      list: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  if (values.list) {
    for (const scenario of BENCH_SCENARIOS) process.stdout.write(`${JSON.stringify(scenario)}\n`);
    return 0;
  }
  const known = new Map(BENCH_SCENARIOS.map((scenario) => [scenario.name, scenario]));
  const scenarioNames = values.ci
    ? CI_SCENARIOS
    : (values.scenario ?? 'quickstart')
        .split(',')
        .map((name) => name.trim())
        .filter(Boolean);
  const scenarios = scenarioNames.map((name) => {
    const scenario = known.get(name);
    if (!scenario) throw new UsageError(`--scenario: unknown scenario '${name}': expected one of ${[...known.keys()].join(', ')}`);
    return scenario;
  });
  const backends = (values.ci ? 'wasm,cpu' : (values.backend ?? 'wasm,cpu'))
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  if (backends.length === 0) throw new UsageError('--backend: expected at least one backend name');
  let steps: number | undefined;
  if (values.steps !== undefined) {
    steps = Number(values.steps);
    if (!Number.isInteger(steps) || steps < 1) throw new UsageError(`--steps is '${values.steps}', expected a whole number >= 1`);
  }
  let batch: number | undefined;
  if (values.batch !== undefined) {
    batch = Number(values.batch);
    if (!Number.isInteger(batch) || batch < 1) throw new UsageError(`--batch is '${values.batch}', expected a whole number >= 1`);
  }
  for (const named of scenarios) {
    const scenario = batch === undefined ? named : { ...named, batch };
    const results: BenchResult[] = [];
    for (const backend of backends) {
      const result = await runScenario(scenario, backend, steps);
      results.push(result);
      process.stdout.write(`${JSON.stringify(result)}\n`);
      if (result.leakedTensors !== 0) {
        process.stderr.write(`sparkmim bench: ${scenario.name} on ${backend} leaked ${result.leakedTensors} tensors over ${result.steps} steps\n`);
        return 1;
      }
    }
    if (results.length >= 2) {
      const [first, second] = results;
      const ratio = Math.round((first.imagesPerSecond / second.imagesPerSecond) * 100) / 100;
      process.stdout.write(
        `${JSON.stringify({
          scenario: scenario.name,
          pair: [first.backend, second.backend],
          ratio,
          meaning: `${first.backend} images/s over ${second.backend} images/s`,
        })}\n`,
      );
    }
  }
  return 0;
}
