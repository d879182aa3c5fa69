// `sparkmim bench`: named scenarios (bench-scenarios.ts), one JSON line each, and a ratio line per
// scenario when run on two backends in the same process. Figures only: it fails on errors, never on time.
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { DAWN_PROFILING_OPTIONS, installNodeWebGpu, setupBackend } from '@sparkmim/runtime';
import { AdamW, Lamb, SparkModel, defaultBetas, paramGroupsFromVariables, variableGradsReleasing } from '@sparkmim/trainer';
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
  --input-size N    input side in pixels instead of the scenario's (a multiple of 32)
  --ci              the CI-sized scenarios on wasm and cpu (${CI_SCENARIOS.join(', ')}): a check that every
                    path runs, in well under 2 minutes; fails only on errors
  --list            the scenarios, one JSON line each

Profile scenarios (profile, resnet18-profile-224, resnet50-profile-224, convnext-t-profile-224, ci-profile) run two plain
steps (the second timed: plainStepMs), then one step under tf.profile, and print a line per kernel name, slowest first: total ms, calls,
share of all kernel time, and the part spent in the optimiser; then a summary line (kind "profile"). On
webgpu the times are GPU timestamp queries (Dawn started with timestamp_quantization off; "timing":
"gpu-timestamp"), each kernel in its own compute pass, so the profiled step runs slower than a plain one;
on cpu and wasm they are each kernel's wall time ("timing": "wall").
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
    const { value, grads } = variableGradsReleasing(() => model.forward(images, { random }), variables);
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

/** One kernel name's share of a profiled step, as `sparkmim bench` prints it. */
export interface KernelTime {
  scenario: string;
  backend: string;
  kernel: string;
  /** Total time of its calls, ms (GPU time on webgpu with timestamp queries, else wall time). */
  ms: number;
  count: number;
  /** ms over the step's total kernel time. */
  share: number;
  /** The part of `ms` spent in the optimiser's update. */
  optimiserMs: number;
  /** webgpu: the shader programs behind the kernel, ms each (from the backend's per-program timestamps). */
  programs?: Record<string, number>;
}

/** What tf.profile records per kernel call, as far as the aggregation reads it. */
export interface ProfiledKernel {
  name: string;
  kernelTimeMs: number | { error: string } | Promise<number | { error: string }>;
  extraInfo?: string | Promise<string>;
}

const roundMs = (value: number) => Math.round(value * 1000) / 1000;

/**
 * Sums tf.profile's kernel records by kernel name, slowest first. `phases` names each list (the
 * optimiser's is counted in `optimiserMs` too). A time that is not a number (a backend error) counts as 0.
 * On webgpu `extraInfo` reads `Program1: 0.12, Program2: 0.3`; those are summed per program name.
 * Records that `isKernel` rejects are left out: tf.profile also records scopes (a custom gradient's
 * forward, "unnamed scope") whose time is that of the kernels inside them, recorded on their own.
 *
 * @example
 * const lines = aggregateKernelTimes({ model: fwdBwd.kernels, optimiser: update.kernels }, 'profile', 'cpu');
 */
export function aggregateKernelTimes(
  phases: Record<string, readonly ProfiledKernel[]>,
  scenario: string,
  backend: string,
  isKernel: (name: string) => boolean = () => true,
): KernelTime[] {
  const byName = new Map<string, { ms: number; count: number; optimiserMs: number; programs: Map<string, number> }>();
  let total = 0;
  for (const [phase, kernels] of Object.entries(phases)) {
    for (const kernel of kernels) {
      if (!isKernel(kernel.name)) continue;
      const ms = typeof kernel.kernelTimeMs === 'number' && Number.isFinite(kernel.kernelTimeMs) ? kernel.kernelTimeMs : 0;
      const entry = byName.get(kernel.name) ?? { ms: 0, count: 0, optimiserMs: 0, programs: new Map<string, number>() };
      entry.ms += ms;
      entry.count += 1;
      if (phase === 'optimiser') entry.optimiserMs += ms;
      if (typeof kernel.extraInfo === 'string') {
        for (const part of kernel.extraInfo.split(', ')) {
          const match = /^(\w+): ([\d.e+-]+)$/.exec(part);
          if (match) entry.programs.set(match[1], (entry.programs.get(match[1]) ?? 0) + Number(match[2]));
        }
      }
      byName.set(kernel.name, entry);
      total += ms;
    }
  }
  return [...byName]
    .map(([kernel, entry]) => {
      const line: KernelTime = {
        scenario,
        backend,
        kernel,
        ms: roundMs(entry.ms),
        count: entry.count,
        share: total > 0 ? Math.round((entry.ms / total) * 10000) / 10000 : 0,
        optimiserMs: roundMs(entry.optimiserMs),
      };
      if (entry.programs.size > 0) line.programs = Object.fromEntries([...entry.programs].map(([name, ms]) => [name, roundMs(ms)]));
      return line;
    })
    .sort((a, b) => b.ms - a.ms || b.count - a.count || a.kernel.localeCompare(b.kernel));
}

/** The summary line of a profiled step. */
export interface ProfileSummary {
  scenario: string;
  backend: string;
  kind: 'profile';
  model: string;
  batch: number;
  inputSize: number;
  /** `gpu-timestamp`: webgpu timestamp queries; `wall`: each kernel's wall time; `none`: no timer (all 0). */
  timing: 'gpu-timestamp' | 'wall' | 'none';
  /** Distinct kernel names, and kernel calls in the step (scopes left out, see aggregateKernelTimes). */
  kernels: number;
  calls: number;
  /** Sum of all kernel times, ms; of which in the optimiser. */
  kernelMs: number;
  optimiserKernelMs: number;
  /** Wall time of the profiled step (longer than a plain step: profiling waits on every kernel). */
  wallMs: number;
  /** Wall time of a plain step (the second warm-up step). */
  plainStepMs: number;
  /**
   * Of it, the optimiser's part (from the loss read to the end): next to `optimiserKernelMs` it tells
   * whether the update waits on the GPU or on the JavaScript that encodes its many small kernels.
   */
  plainOptimiserMs: number;
  leakedTensors: number;
}

function timingOf(backend: string): ProfileSummary['timing'] {
  if (backend !== 'webgpu') return 'wall';
  return (tf.backend() as { supportTimestampQuery?: boolean }).supportTimestampQuery ? 'gpu-timestamp' : 'none';
}

/**
 * One SparK step (forward + backward through `variableGradsReleasing`, as trainStep, then AdamW, or LAMB when asked) after a
 * plain warm-up step, under `tf.profile`: the lines of {@link aggregateKernelTimes} and a summary.
 * `afterSetup` runs once the backend is set up (e.g. to choose between kernel implementations).
 */
export async function profileScenario(
  scenario: BenchScenario,
  backend: string,
  { afterSetup, optimizer: optimizerName = 'adamw' }: { afterSetup?: () => void; optimizer?: 'adamw' | 'lamb' } = {},
): Promise<{ kernels: KernelTime[]; summary: ProfileSummary }> {
  await setupBackend(backend);
  afterSetup?.();
  const model = SparkModel.create(scenario.model, { backbone: scenario.backbone, decoderWidth: scenario.decoderWidth, seed: 0 });
  const images = tf.randomNormal([scenario.batch, scenario.inputSize, scenario.inputSize, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  const groups = paramGroupsFromVariables(model.namedParameters());
  const optimizerOptions = { betas: defaultBetas(scenario.model), maxGradNorm: 5 };
  const optimizer = optimizerName === 'lamb' ? new Lamb(groups, optimizerOptions) : new AdamW(groups, optimizerOptions);
  const variables = model.namedParameters().map(({ variable }) => variable);
  const names = new Map(model.namedParameters().map(({ name, variable }) => [variable.name, name]));
  const random = seededUniform(1);
  model.train(true);
  const gradients = async () => {
    const result = variableGradsReleasing(() => model.forward(images, { random }), variables);
    await settle([result.value]);
    return result;
  };
  const update = async ({ value, grads }: { value: tf.Scalar; grads: tf.NamedTensorMap }) => {
    const named = new Map(Object.entries(grads).map(([variableName, grad]) => [names.get(variableName)!, grad]));
    await optimizer.step(named);
    await settle(variables.slice(0, 1));
    value.dispose();
    tf.dispose(Object.values(grads));
  };
  try {
    // The first plain step compiles the shaders (webgpu) and creates the optimiser's slots, so neither is
    // profiled; the second is the plain step's time.
    await update(await gradients());
    let start = performance.now();
    const plainGradients = await gradients();
    const plainModelMs = performance.now() - start;
    await update(plainGradients);
    const plainStepMs = performance.now() - start;
    const tensorsBefore = tf.memory().numTensors;
    start = performance.now();
    let result: Awaited<ReturnType<typeof gradients>> | undefined;
    // tf.profile hands back the engine's one profile object, refilled by the next call: keep the list.
    const modelKernels = [
      ...(
        await tf.profile(async () => {
          result = await gradients();
        })
      ).kernels,
    ];
    const optimiserKernels = [...(await tf.profile(() => update(result!))).kernels];
    const wallMs = performance.now() - start;
    const registered = (name: string) => tf.getKernel(name, tf.getBackend()) !== undefined;
    const kernels = aggregateKernelTimes({ model: modelKernels, optimiser: optimiserKernels }, scenario.name, backend, registered);
    const sum = (lines: KernelTime[], key: 'ms' | 'optimiserMs') => roundMs(lines.reduce((total, line) => total + line[key], 0));
    const summary: ProfileSummary = {
      scenario: scenario.name,
      backend,
      kind: 'profile',
      model: scenario.model,
      batch: scenario.batch,
      inputSize: scenario.inputSize,
      timing: timingOf(backend),
      kernels: kernels.length,
      calls: kernels.reduce((total, line) => total + line.count, 0),
      kernelMs: sum(kernels, 'ms'),
      optimiserKernelMs: sum(kernels, 'optimiserMs'),
      wallMs: Math.round(wallMs * 10) / 10,
      plainStepMs: Math.round(plainStepMs * 10) / 10,
      plainOptimiserMs: Math.round((plainStepMs - plainModelMs) * 10) / 10,
      leakedTensors: tf.memory().numTensors - tensorsBefore,
    };
    return { kernels, summary };
  } finally {
    images.dispose();
    optimizer.dispose();
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
      'input-size': { type: 'string' },
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
  let inputSize: number | undefined;
  if (values['input-size'] !== undefined) {
    inputSize = Number(values['input-size']);
    if (!Number.isInteger(inputSize) || inputSize < 32 || inputSize % 32 !== 0) {
      throw new UsageError(`--input-size is '${values['input-size']}', expected a whole multiple of 32`);
    }
  }
  if (backends.includes('webgpu') && scenarios.some((scenario) => scenario.kind === 'profile')) {
    // Before the backend exists: Dawn's options are read when its GPU object is created.
    await installNodeWebGpu({ dawnOptions: DAWN_PROFILING_OPTIONS });
  }
  for (const named of scenarios) {
    const scenario = { ...named, batch: batch ?? named.batch, inputSize: inputSize ?? named.inputSize };
    if (scenario.kind === 'profile') {
      for (const backend of backends) {
        const { kernels, summary } = await profileScenario(scenario, backend);
        for (const line of kernels) process.stdout.write(`${JSON.stringify(line)}\n`);
        process.stdout.write(`${JSON.stringify(summary)}\n`);
        if (summary.leakedTensors !== 0) {
          process.stderr.write(`sparkmim bench: ${scenario.name} on ${backend} leaked ${summary.leakedTensors} tensors in the profiled step\n`);
          return 1;
        }
      }
      continue;
    }
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
