// Per-kernel timing on webgpu, tfjs-backend-webgpu 4.22's own kernels ("stock") against this package's
// ("ours"), on the same tensors, one JSON line per kernel and shape:
//   {kernel, shape, batch, stockMs, oursMs, speedup, maxRelDiff[, oursGemmMs]}
// `ms` is the mean of `reps` calls queued back to back after one warm-up call (which compiles the shaders),
// timed to the read of one number of the last result; maxRelDiff is max|stock - ours| / max|stock|.
//
// Run: node scripts/run-ts.mjs packages/webgpu-kernels/bench/kernels.bench.ts [--shapes tiny|resnet50] [--batch N] [--reps N]
// `tiny` (the default) is for SwiftShader, whose timings say nothing about a GPU; `resnet50` is ResNet-50's
// convolutions (and SparK's decoder's widest) at batch 32, the shapes of apps/pretrain/bench/gpu-run.ts (both from ./conv-cases.ts).
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
// The runtime from the workspace root's dev dependencies: it depends on this package, so declaring it here
// would make a dependency cycle.
import { setupBackend } from '@sparkmim/runtime';
import { registerWebGpuTrainingKernels, restoreStockWebGpuKernels } from '../src/index';
import { type ConvShape, RESNET50_CONV_SHAPES, TINY_CONV_SHAPES, convGradientCases, drainGpu, timeWindow } from './conv-cases';

const SHAPES: Record<string, { batch: number; reps: number; shapes: readonly ConvShape[] }> = {
  tiny: { batch: 2, reps: 3, shapes: TINY_CONV_SHAPES },
  resnet50: { batch: 32, reps: 5, shapes: RESNET50_CONV_SHAPES },
};

const { values } = parseArgs({ options: { shapes: { type: 'string', default: 'tiny' }, batch: { type: 'string' }, reps: { type: 'string' } } });
const preset = SHAPES[values.shapes!];
if (!preset) {
  console.error(`kernels.bench: expected --shapes ${Object.keys(SHAPES).join(' or ')}, got ${values.shapes}`);
  process.exit(2);
}
const batch = values.batch ? Number(values.batch) : preset.batch;
const reps = values.reps ? Number(values.reps) : preset.reps;
const round = (value: number, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;

/** The first result (kept, for the comparison) and the mean time of `reps` further calls. */
async function time(run: () => tf.Tensor): Promise<{ result: tf.Tensor; ms: number }> {
  const result = run();
  await drainGpu(result);
  return { result, ms: await timeWindow(run, reps) };
}

const info = await setupBackend('webgpu');
console.error(`webgpu adapter: ${info.adapter?.vendor} ${info.adapter?.architecture} ${info.adapter?.description}`.trim());
for (const shape of preset.shapes) {
  const inputs = convGradientCases(shape, batch);
  for (const [kernel, run] of inputs.cases) {
    restoreStockWebGpuKernels();
    const stock = await time(run);
    registerWebGpuTrainingKernels();
    const ours = await time(run);
    // At stride 1 the input gradient has two methods of ours (the tfjs flag SPARKMIM_WEBGPU_INPUT_GRADIENT):
    // `ours` is the default ('conv'), `oursGemmMs` the other.
    let gemmMs: number | undefined;
    if (kernel === 'Conv2DBackpropInput' && shape.stride === 1) {
      tf.env().set('SPARKMIM_WEBGPU_INPUT_GRADIENT', 'gemm');
      const gemm = await time(run);
      tf.env().set('SPARKMIM_WEBGPU_INPUT_GRADIENT', 'conv');
      gemm.result.dispose();
      gemmMs = gemm.ms;
    }
    const [worst, scale] = await Promise.all([
      tf.tidy(() => tf.max(tf.abs(tf.sub(stock.result, ours.result)))).data(),
      tf.tidy(() => tf.max(tf.abs(stock.result))).data(),
    ]);
    tf.dispose([stock.result, ours.result]);
    const line = {
      kernel,
      shape: shape.name,
      batch,
      stockMs: round(stock.ms),
      oursMs: round(ours.ms),
      speedup: round(stock.ms / ours.ms, 2),
      ...(gemmMs !== undefined && { oursGemmMs: round(gemmMs) }),
      maxRelDiff: Number((scale[0] > 0 ? worst[0] / scale[0] : worst[0]).toExponential(2)),
    };
    console.log(JSON.stringify(line));
  }
  inputs.dispose();
}
