// One GPU session's measurements in one run, as JSON lines on stdout, each printed as soon as it is
// measured (see apps/pretrain/bench/README.md for every line's fields):
//   kernels          conv filter and input gradients on ResNet-50's shapes at batch 32: stock vs ours
//   spark-r50-b32    SparK ResNet-50 training step, 224x224, batch 32 (the official figure's setting): ours, stock
//   infer-r50-b32    dense ResNet-50 encoder inference, 224x224, batch 32: stock, ours
//   profile-r50-b32  per-kernel GPU time of one SparK ResNet-50 step (timestamp queries, quantization off)
//   spark-cnxt-b32   SparK ConvNeXt-T step, 224x224, batch 32: ours
//   spark-r50-b128, spark-cnxt-b128: the same at batch 128 (ours), then spark-r50-b128 with stock kernels
// "stock" is tfjs-backend-webgpu 4.22's own kernels, "ours" @sparkmim/webgpu-kernels' (useKernels below).
//
// usage: node gpu-run.mjs [--budget-s 480] [--only JOB,...] [--skip JOB,...] [--backend webgpu] [--smoke]
// Each job runs in a child process of its own (a device lost or an out-of-memory at batch 128 costs that job
// only); a job that would not fit in what is left of --budget-s is skipped with a line saying so, and one that
// overruns is stopped at the budget. --smoke shrinks every shape (for a check on SwiftShader).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { DAWN_PROFILING_OPTIONS, installNodeWebGpu, setupBackend } from '@sparkmim/runtime';
import { Lamb, SparkModel, paramGroupsFromVariables, sparkRecipe, trainStep } from '@sparkmim/trainer';
import * as webgpuKernels from '@sparkmim/webgpu-kernels';
import { RESNET50_CONV_SHAPES, SMOKE_CONV_SHAPES, convGradientCases, drainGpu, timeWindow } from '@sparkmim/webgpu-kernels/bench';
import type { BenchScenario } from '../src/commands/bench-scenarios';
import { profileScenario } from '../src/commands/bench';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'webgpu' },
    // 8 minutes: with run.sh's unpacking and Dawn's start, under 9 of the device's 10 per command.
    'budget-s': { type: 'string', default: '480' },
    only: { type: 'string', default: '' },
    skip: { type: 'string', default: '' },
    smoke: { type: 'boolean', default: false },
    // Set by the parent for a child: the job, its kernel arm, and the wall-clock time (ms since the epoch) it must end by.
    job: { type: 'string' },
    arm: { type: 'string' },
    deadline: { type: 'string' },
  },
});
const smoke = values.smoke!;
const backend = values.backend!;
const emit = (record: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(record)}\n`);
const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

// ---------------------------------------------------------------------------------------------------------
// THE SWITCH POINT between tfjs-backend-webgpu's own kernels ("stock") and @sparkmim/webgpu-kernels' ("ours").
// Its API: registerWebGpuTrainingKernels() swaps ours in, restoreStockWebGpuKernels() puts the stock ones
// back, WEBGPU_TRAINING_KERNELS lists ours. Read through an optional view, so that this file still builds
// against an earlier state of the package (then the "ours" arms say why they were skipped).
type Arm = 'stock' | 'ours';
const ourKernels = webgpuKernels as {
  registerWebGpuTrainingKernels?: () => void;
  restoreStockWebGpuKernels?: () => void;
  WEBGPU_TRAINING_KERNELS?: readonly tf.KernelConfig[];
};

/** Why "ours" cannot run here, or undefined when it can. */
function oursUnavailable(): string | undefined {
  if (backend !== 'webgpu') return `@sparkmim/webgpu-kernels is for webgpu, not ${backend}`;
  if (!ourKernels.registerWebGpuTrainingKernels || !ourKernels.restoreStockWebGpuKernels) {
    return '@sparkmim/webgpu-kernels in this build has no registerWebGpuTrainingKernels/restoreStockWebGpuKernels';
  }
  if (!ourKernels.WEBGPU_TRAINING_KERNELS?.length) return '@sparkmim/webgpu-kernels in this build registers no kernel';
  return undefined;
}

/** Makes `arm`'s kernels the registered ones (after setupBackend); returns the kernel names concerned. */
function useKernels(arm: Arm): string[] {
  const names = (ourKernels.WEBGPU_TRAINING_KERNELS ?? []).map((config) => config.kernelName);
  if (backend !== 'webgpu') return names;
  if (arm === 'ours') ourKernels.registerWebGpuTrainingKernels!();
  else ourKernels.restoreStockWebGpuKernels?.();
  return names;
}
// ---------------------------------------------------------------------------------------------------------

/** @sparkmim/webgpu-kernels' flag for the stride-1 input gradient's method ('conv' or 'gemm'). */
const INPUT_GRADIENT_FLAG = 'SPARKMIM_WEBGPU_INPUT_GRADIENT';

/** Sets a tfjs flag if some package registered it (tfjs throws on an unknown one); whether it did. */
function setFlagIfRegistered(name: string, value: string): boolean {
  if (!(name in (tf.env() as unknown as { flagRegistry: Record<string, unknown> }).flagRegistry)) return false;
  tf.env().set(name, value);
  return true;
}

function seededUniform(seed: number): () => number {
  let state = seed % 2147483647 || 1;
  return () => {
    state = (state * 16807) % 2147483647;
    return state / 2147483647;
  };
}

/** A batch of synthetic images (ImageNet-normalised range), filled on the host once per call. */
function syntheticImages(batch: number, size: number, seed: number): tf.Tensor4D {
  const random = seededUniform(seed);
  const values = new Float32Array(batch * size * size * 3);
  for (let i = 0; i < values.length; i++) values[i] = random() * 4 - 2;
  return tf.tensor4d(values, [batch, size, size, 3]);
}

// ---------------------------------------------------------------------------------------------------------
// Jobs (run in a child process each).

/** Per shape and gradient, stock and ours alternately in this one process, on the same tensors. */
async function kernelsJob(deadline: number): Promise<void> {
  const available = oursUnavailable();
  const arms: Arm[] = available ? ['stock'] : ['stock', 'ours'];
  if (available) emit({ type: 'note', job: 'kernels', message: `stock only: ${available}` });
  const batch = smoke ? 2 : 32;
  const maxReps = smoke ? 2 : 5;
  for (const shape of smoke ? SMOKE_CONV_SHAPES : RESNET50_CONV_SHAPES) {
    const inputs = convGradientCases(shape, batch);
    for (const [kernel, run] of inputs.cases) {
      // The variants timed: stock, ours, and for a stride-1 input gradient ours with its GEMM instead of the
      // forward-convolution rewrite (@sparkmim/webgpu-kernels' flag SPARKMIM_WEBGPU_INPUT_GRADIENT).
      const variants: { label: string; arm: Arm; inputGradient?: string }[] = arms.map((arm) => ({ label: arm, arm }));
      if (arms.includes('ours') && kernel === 'Conv2DBackpropInput' && shape.stride === 1) {
        variants.push({ label: 'ours-gemm', arm: 'ours', inputGradient: 'gemm' });
      }
      const outputs = new Map<string, tf.Tensor>();
      const ms = new Map<string, number>();
      for (const { label, arm, inputGradient } of variants) {
        if (Date.now() > deadline - 5000) {
          emit({ type: 'skip', job: 'kernels', shape: shape.name, kernel, arm: label, reason: 'budget' });
          continue;
        }
        useKernels(arm);
        const flagSet = inputGradient !== undefined && setFlagIfRegistered(INPUT_GRADIENT_FLAG, inputGradient);
        if (inputGradient !== undefined && !flagSet) continue;
        try {
          const first = run(); // compiles the shaders
          await drainGpu(first);
          outputs.set(label, first);
          // One call alone sizes the window: up to `reps` calls, about 1.5 s of them (a stock filter
          // gradient can take a second per call at batch 32).
          const probeMs = await timeWindow(run, 1);
          const reps = smoke ? maxReps : Math.max(1, Math.min(maxReps, Math.floor(1500 / probeMs)));
          // A window of `reps` calls queued back to back, then one read of one number.
          ms.set(label, await timeWindow(run, reps));
          emit({
            type: 'kernel',
            shape: shape.name,
            kernel,
            arm: label,
            batch,
            size: shape.size,
            inC: shape.inC,
            outC: shape.outC,
            k: shape.kernel,
            stride: shape.stride,
            ms: round(ms.get(label)!, 3),
            reps,
          });
        } catch (error) {
          emit({ type: 'kernel', shape: shape.name, kernel, arm: label, error: String((error as Error).message).slice(0, 300) });
        } finally {
          if (flagSet) tf.env().set(INPUT_GRADIENT_FLAG, 'conv');
        }
      }
      const stock = outputs.get('stock');
      for (const [label, output] of outputs) {
        if (!stock || label === 'stock') continue;
        // Same inputs, two implementations: how far apart (relative to the largest magnitude), and the speed-up.
        const [worst, scale] = await Promise.all([
          tf.tidy(() => tf.max(tf.abs(tf.sub(stock, output)))).data(),
          tf.tidy(() => tf.max(tf.abs(stock))).data(),
        ]);
        emit({
          type: 'kernel-pair',
          shape: shape.name,
          kernel,
          arm: label,
          speedup: ms.has('stock') && ms.has(label) ? round(ms.get('stock')! / ms.get(label)!, 2) : null,
          maxRelDiff: scale[0] > 0 ? worst[0] / scale[0] : worst[0],
        });
      }
      tf.dispose([...outputs.values()]);
    }
    inputs.dispose();
  }
  useKernels('stock');
}

interface StepJob {
  model: string;
  batch: number;
  size: number;
}

/** SparK pre-training steps as `sparkmim pretrain` runs them: trainStep with LAMB and the official recipe. */
async function sparkJob(job: string, arm: Arm, { model: name, batch, size }: StepJob, deadline: number): Promise<void> {
  const recipe = sparkRecipe(name);
  const backbone = smoke ? smokeBackbone(name) : {};
  const model = SparkModel.create(name, {
    backbone: { ...backbone, dropPathRate: recipe.dropPathRate },
    decoderWidth: smoke ? 32 : 768,
    densifyNorm: recipe.densifyNorm as 'bn' | 'ln',
    seed: 0,
  });
  const optimizer = new Lamb(paramGroupsFromVariables(model.namedParameters()), { betas: [0.9, recipe.beta2], maxGradNorm: recipe.clip });
  // Two batches filled once and alternated: the GPU keeps their buffers, so no step waits on data.
  const images = [syntheticImages(batch, size, 1), syntheticImages(batch, size, 2)];
  const random = seededUniform(7);
  const lrWd = { lr: (2e-4 * batch) / 256, weightDecay: 0.04 };
  const base = { type: 'spark', job, arm, model: name, batch, size };
  try {
    // Warm-up: the first step compiles every shader; the second shows whether anything is still compiling.
    const warmupMs: number[] = [];
    for (let i = 0; i < 2; i++) {
      const start = performance.now();
      await trainStep(model, optimizer, images[i % 2], { lrWd, random });
      warmupMs.push(round(performance.now() - start, 1));
      emit({ ...base, warmup: i, ms: warmupMs[i] });
    }
    // Timed steps: each is a whole trainStep (its loss and gradient-norm reads included, as the official
    // loop's loss.item()); as many as fit, up to 4, printed one by one.
    const stepMs: number[] = [];
    const maxSteps = smoke ? 2 : 4;
    let losses: number[] = [];
    while (stepMs.length < maxSteps) {
      const expected = stepMs.length ? Math.max(...stepMs) : warmupMs[1];
      if (stepMs.length > 0 && Date.now() + expected * 1.5 > deadline) break;
      const start = performance.now();
      const result = await trainStep(model, optimizer, images[stepMs.length % 2], { lrWd, random });
      stepMs.push(performance.now() - start);
      losses = [...losses, round(result.loss, 4)];
      emit({ ...base, step: stepMs.length, ms: round(stepMs[stepMs.length - 1], 1) });
    }
    const mean = stepMs.reduce((a, b) => a + b, 0) / stepMs.length;
    const sorted = [...stepMs].sort((a, b) => a - b);
    emit({
      ...base,
      steps: stepMs.length,
      msPerStep: round(mean, 1),
      medianMs: round(sorted[Math.floor(sorted.length / 2)], 1),
      imagesPerSecond: round((batch * 1000) / mean, 2),
      warmupMs,
      losses,
      numTensors: tf.memory().numTensors,
      gpuBytes: tf.memory().numBytes,
    });
  } finally {
    tf.dispose(images);
    optimizer.dispose();
    model.dispose();
  }
}

/** Dense encoder inference: windows of forward passes queued back to back, one tiny read per window. */
async function inferJob(job: string, arm: Arm, { model: name, batch, size }: StepJob, deadline: number): Promise<void> {
  const model = SparkModel.create(name, { backbone: smoke ? smokeBackbone(name) : {}, decoderWidth: smoke ? 32 : 768, seed: 0 });
  const images = syntheticImages(batch, size, 1);
  const base = { type: 'infer', job, arm, model: name, batch, size };
  model.train(false);
  const window = async (passes: number) => {
    const start = performance.now();
    let last: tf.Tensor[] = [];
    for (let i = 0; i < passes; i++) {
      tf.dispose(last);
      last = tf.tidy(() => model.backbone.forward(images));
    }
    await drainGpu(last[last.length - 1]);
    tf.dispose(last);
    return (performance.now() - start) / passes;
  };
  try {
    emit({ ...base, warmup: 0, ms: round(await window(1), 1) });
    const passes = smoke ? 2 : 10;
    const windows: number[] = [];
    for (let i = 0; i < 3 && (i === 0 || Date.now() + windows[0] * passes * 1.5 < deadline); i++) {
      windows.push(await window(passes));
      emit({ ...base, window: i + 1, passes, msPerBatch: round(windows[i], 2) });
    }
    const best = Math.min(...windows);
    const mean = windows.reduce((a, b) => a + b, 0) / windows.length;
    emit({
      ...base,
      windows: windows.length,
      msPerBatch: round(mean, 2),
      imagesPerSecond: round((batch * 1000) / mean, 1),
      bestImagesPerSecond: round((batch * 1000) / best, 1),
    });
  } finally {
    images.dispose();
    model.dispose();
  }
}

/** The per-kernel profile of one SparK step (LAMB), through `sparkmim bench`'s profile code. */
async function profileJob(job: string, arm: Arm, { model, batch, size }: StepJob): Promise<void> {
  const scenario: BenchScenario = {
    name: job,
    kind: 'profile',
    model,
    backbone: smoke ? smokeBackbone(model) : undefined,
    decoderWidth: smoke ? 32 : 768,
    inputSize: size,
    batch,
    steps: 1,
    description: `per-kernel time of one SparK ${model} step (${arm} kernels)`,
  };
  const { kernels, summary } = await profileScenario(scenario, backend, { afterSetup: () => useKernels(arm), optimizer: 'lamb' });
  for (const line of kernels) emit({ type: 'profile-kernel', job, arm, ...line });
  emit({ type: 'profile', job, arm, ...summary, gpuBusy: summary.plainStepMs > 0 ? round(summary.kernelMs / summary.plainStepMs, 3) : null });
}

function smokeBackbone(model: string): Record<string, unknown> {
  return model.startsWith('convnext')
    ? { dims: [8, 16, 32, 64], depths: [1, 1, 1, 1] }
    : { stemWidth: 8, channels: [8, 16, 32, 64], depths: [1, 1, 1, 1] };
}

// ---------------------------------------------------------------------------------------------------------
// The plan, most informative first, so that a run cut short still has the figures that matter most.

interface PlannedJob {
  job: string;
  kind: 'kernels' | 'spark' | 'infer' | 'profile';
  arm: Arm;
  shape?: StepJob;
  /** Seconds it needs at least (Dawn's start, shader compilation, one step); skipped when less is left. */
  minSeconds: number;
  /** Seconds after which it stops starting timed steps (the run's budget may stop it sooner). */
  capSeconds: number;
}

const r50 = (batch: number): StepJob => (smoke ? { model: 'resnet50', batch: 2, size: 64 } : { model: 'resnet50', batch, size: 224 });
const cnxt = (batch: number): StepJob => (smoke ? { model: 'convnext_tiny', batch: 2, size: 64 } : { model: 'convnext_tiny', batch, size: 224 });
const PLAN: PlannedJob[] = [
  { job: 'kernels', kind: 'kernels', arm: 'stock', minSeconds: 20, capSeconds: 60 },
  { job: 'spark-r50-b32', kind: 'spark', arm: 'ours', shape: r50(32), minSeconds: 30, capSeconds: 60 },
  { job: 'spark-r50-b32', kind: 'spark', arm: 'stock', shape: r50(32), minSeconds: 40, capSeconds: 60 },
  { job: 'infer-r50-b32', kind: 'infer', arm: 'stock', shape: r50(32), minSeconds: 10, capSeconds: 20 },
  { job: 'infer-r50-b32', kind: 'infer', arm: 'ours', shape: r50(32), minSeconds: 10, capSeconds: 20 },
  { job: 'profile-r50-b32', kind: 'profile', arm: 'ours', shape: r50(32), minSeconds: 30, capSeconds: 60 },
  { job: 'spark-cnxt-b32', kind: 'spark', arm: 'ours', shape: cnxt(32), minSeconds: 30, capSeconds: 60 },
  { job: 'spark-r50-b128', kind: 'spark', arm: 'ours', shape: r50(128), minSeconds: 60, capSeconds: 90 },
  { job: 'spark-cnxt-b128', kind: 'spark', arm: 'ours', shape: cnxt(128), minSeconds: 60, capSeconds: 90 },
  { job: 'spark-r50-b128', kind: 'spark', arm: 'stock', shape: r50(128), minSeconds: 90, capSeconds: 90 },
];

/**
 * Seconds a step job needs for its two warm-up steps, from the same model and arm at batch 32 when that
 * ran (a step scales about linearly with the batch), plus Dawn's start; undefined when unknown.
 */
function expectedSeconds(entry: PlannedJob, measured: ReadonlyMap<string, number>): number | undefined {
  if (entry.kind !== 'spark' || !entry.shape || entry.shape.batch <= 32) return undefined;
  const perStep = measured.get(`${entry.shape.model}/${entry.arm}`);
  return perStep === undefined ? undefined : (2 * perStep * (entry.shape.batch / 32)) / 1000 + 15;
}

async function runChild(job: string, arm: Arm, deadline: number): Promise<void> {
  const planned = PLAN.find((entry) => entry.job === job && entry.arm === arm);
  if (!planned)
    throw new Error(`gpu-run: unknown job ${job} (${arm}); expected one of ${PLAN.map((entry) => `${entry.job}/${entry.arm}`).join(', ')}`);
  if (planned.kind === 'profile' && backend === 'webgpu') await installNodeWebGpu({ dawnOptions: DAWN_PROFILING_OPTIONS });
  const info = await setupBackend(backend);
  const timestampQuery = (tf.backend() as { supportTimestampQuery?: boolean }).supportTimestampQuery;
  if (planned.kind !== 'kernels') {
    const unavailable = arm === 'ours' ? oursUnavailable() : undefined;
    if (unavailable) {
      emit({ type: 'skip', job, arm, reason: unavailable });
      return;
    }
    useKernels(arm);
  }
  emit({
    type: 'backend',
    job,
    arm,
    name: info.name,
    adapter: info.adapter,
    timestampQuery: timestampQuery ?? null,
    ourKernels: ourKernels.WEBGPU_TRAINING_KERNELS?.map((config) => config.kernelName) ?? [],
  });
  switch (planned.kind) {
    case 'kernels':
      return kernelsJob(deadline);
    case 'spark':
      return sparkJob(job, arm, planned.shape!, deadline);
    case 'infer':
      return inferJob(job, arm, planned.shape!, deadline);
    case 'profile':
      return profileJob(job, arm, planned.shape!);
  }
}

/**
 * Runs one planned job in a child process, passing its lines through as they come (and noting each step
 * job's ms per step in `measured`). The child stops starting timed steps at `softDeadline`; it is killed at
 * `hardDeadline`.
 */
function spawnJob(
  entry: PlannedJob,
  softDeadline: number,
  hardDeadline: number,
  measured: Map<string, number>,
): Promise<{ code: number | null; killed: boolean; seconds: number }> {
  const args = [process.argv[1], '--job', entry.job, '--arm', entry.arm, '--deadline', String(softDeadline), '--backend', backend];
  if (smoke) args.push('--smoke');
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let killed = false;
    const timer = setTimeout(
      () => {
        killed = true;
        child.kill('SIGKILL');
      },
      Math.max(1000, hardDeadline - Date.now()),
    );
    createInterface({ input: child.stdout! }).on('line', (line) => {
      process.stdout.write(`${line}\n`);
      try {
        const record = JSON.parse(line) as { type?: string; model?: string; batch?: number; warmup?: number; msPerStep?: number; ms?: number };
        // The second warm-up step stands for a step until the timed ones are in.
        const perStep = record.msPerStep ?? (record.warmup === 1 ? record.ms : undefined);
        if (record.type === 'spark' && record.batch === entry.shape?.batch && perStep !== undefined)
          measured.set(`${record.model}/${entry.arm}`, perStep);
      } catch {
        // not a JSON line: passed through as it is
      }
    });
    // Dawn's and tfjs's messages go to stderr; the last lines say why a job failed.
    const errors: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (line) => {
      if (/XDG_RUNTIME_DIR/.test(line)) return;
      errors.push(line);
      if (errors.length > 12) errors.shift();
      process.stderr.write(`[${entry.job}/${entry.arm}] ${line}\n`);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const seconds = round((performance.now() - started) / 1000, 1);
      if (code !== 0) emit({ type: 'job-failed', job: entry.job, arm: entry.arm, code, killed, seconds, stderrTail: errors.slice(-6) });
      resolve({ code, killed, seconds });
    });
  });
}

if (values.job) {
  try {
    await runChild(values.job, values.arm as Arm, Number(values.deadline));
  } catch (error) {
    // An out-of-memory, a lost device, a kernel that throws: one line, and this job ends here.
    emit({ type: 'error', job: values.job, arm: values.arm, message: String((error as Error).message ?? error).slice(0, 500) });
    process.exit(1);
  }
  process.exit(0); // Dawn keeps the event loop alive otherwise.
} else {
  const budgetSeconds = Number(values['budget-s']);
  if (!Number.isFinite(budgetSeconds) || budgetSeconds <= 0) throw new Error(`--budget-s is '${values['budget-s']}', expected seconds > 0`);
  const only = new Set(values.only!.split(',').filter(Boolean));
  const skip = new Set(values.skip!.split(',').filter(Boolean));
  const deadline = Date.now() + budgetSeconds * 1000;
  const measured = new Map<string, number>();
  emit({
    type: 'start',
    date: new Date().toISOString(),
    budgetSeconds,
    smoke,
    backend,
    node: process.version,
    plan: PLAN.map((entry) => `${entry.job}/${entry.arm}`),
  });
  for (const entry of PLAN) {
    if ((only.size && !only.has(entry.job)) || skip.has(entry.job)) continue;
    const unavailable = entry.arm === 'ours' && entry.kind !== 'kernels' ? oursUnavailable() : undefined;
    if (unavailable) {
      emit({ type: 'skip', job: entry.job, arm: entry.arm, reason: unavailable });
      continue;
    }
    const left = (deadline - Date.now()) / 1000;
    const needs = smoke ? 1 : Math.max(entry.minSeconds, expectedSeconds(entry, measured) ?? 0);
    if (left < needs) {
      emit({ type: 'skip', job: entry.job, arm: entry.arm, reason: `budget: ${round(left, 0)} s left, needs about ${round(needs, 0)} s` });
      continue;
    }
    const softDeadline = Math.min(deadline, Date.now() + entry.capSeconds * 1000);
    // Warm-up steps are not cut short, so a job may run past its cap; a hung one (a lost device) is
    // stopped 90 s after it, leaving the budget to the jobs after it (with --smoke, on SwiftShader, where
    // compiling the shaders alone takes minutes, only at the end of the budget).
    const hardDeadline = smoke ? deadline : Math.min(deadline, softDeadline + 90_000);
    const { seconds } = await spawnJob(entry, softDeadline, hardDeadline, measured);
    emit({ type: 'job-done', job: entry.job, arm: entry.arm, seconds });
  }
  emit({ type: 'done', seconds: round(budgetSeconds - (deadline - Date.now()) / 1000, 1) });
}
