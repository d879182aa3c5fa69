// Per-kernel timing on webgpu, tfjs-backend-webgpu 4.22's own kernels ("stock") against this package's
// ("ours"), on the same tensors, one JSON line per kernel and shape:
//   {kernel, shape, batch, stockMs, oursMs, speedup, maxRelDiff[, oursGemmMs]}
// `ms` is the mean of `reps` calls queued back to back after one warm-up call (which compiles the shaders),
// timed to the read of one number of the last result; maxRelDiff is max|stock - ours| / max|stock|.
//
// Run: node scripts/run-ts.mjs packages/webgpu-kernels/bench/kernels.bench.ts [--shapes tiny|resnet50] [--batch N] [--reps N]
// `tiny` (the default) is for SwiftShader, whose timings say nothing about a GPU; `resnet50` is ResNet-50's
// convolutions (and SparK's decoder's widest) at batch 32, the shapes of apps/pretrain/bench/gpu-run.ts.
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
// The runtime by path: it depends on this package, so declaring it back would make a dependency cycle.
import { setupBackend } from '../../runtime/src/index';
import { registerWebGpuTrainingKernels, restoreStockWebGpuKernels } from '../src/index';

interface ConvShape {
  name: string;
  size: number;
  inC: number;
  outC: number;
  kernel: number;
  stride: number;
  /** The stem's input gradient is never needed (its input is the image). */
  inputGradient: boolean;
}

const SHAPES: Record<string, { batch: number; reps: number; shapes: ConvShape[] }> = {
  tiny: {
    batch: 2,
    reps: 3,
    shapes: [
      { name: 'stem 7x7 s2', size: 32, inC: 3, outC: 16, kernel: 7, stride: 2, inputGradient: false },
      { name: '1x1 16>16', size: 16, inC: 16, outC: 16, kernel: 1, stride: 1, inputGradient: true },
      { name: '3x3 16', size: 16, inC: 16, outC: 16, kernel: 3, stride: 1, inputGradient: true },
      { name: '1x1 16>64', size: 16, inC: 16, outC: 64, kernel: 1, stride: 1, inputGradient: true },
      { name: '3x3 32 s2', size: 16, inC: 32, outC: 32, kernel: 3, stride: 2, inputGradient: true },
    ],
  },
  resnet50: {
    batch: 32,
    reps: 5,
    shapes: [
      { name: 'stem 7x7 s2', size: 224, inC: 3, outC: 64, kernel: 7, stride: 2, inputGradient: false },
      { name: 'layer1 1x1 64>64', size: 56, inC: 64, outC: 64, kernel: 1, stride: 1, inputGradient: true },
      { name: 'layer1 3x3 64', size: 56, inC: 64, outC: 64, kernel: 3, stride: 1, inputGradient: true },
      { name: 'layer1 1x1 64>256', size: 56, inC: 64, outC: 256, kernel: 1, stride: 1, inputGradient: true },
      { name: 'layer2 3x3 128 s2', size: 56, inC: 128, outC: 128, kernel: 3, stride: 2, inputGradient: true },
      { name: 'layer2 1x1 128>512', size: 28, inC: 128, outC: 512, kernel: 1, stride: 1, inputGradient: true },
      { name: 'layer3 3x3 256', size: 14, inC: 256, outC: 256, kernel: 3, stride: 1, inputGradient: true },
      { name: 'layer4 3x3 512', size: 7, inC: 512, outC: 512, kernel: 3, stride: 1, inputGradient: true },
      { name: 'decoder 3x3 96 at 112', size: 112, inC: 96, outC: 96, kernel: 3, stride: 1, inputGradient: true },
    ],
  },
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

/** Waits for the GPU to finish what is queued by reading one number of `tensor`. */
async function drain(tensor: tf.Tensor): Promise<void> {
  const one = tf.tidy(() => tf.slice(tf.reshape(tensor, [-1]), 0, 1));
  await one.data();
  one.dispose();
}

/** The first result (kept, for the comparison) and the mean time of `reps` further calls. */
async function time(run: () => tf.Tensor): Promise<{ result: tf.Tensor; ms: number }> {
  const result = run();
  await drain(result);
  const start = performance.now();
  let last: tf.Tensor | undefined;
  for (let i = 0; i < reps; i++) {
    last?.dispose();
    last = run();
  }
  await drain(last!);
  last!.dispose();
  return { result, ms: (performance.now() - start) / reps };
}

const info = await setupBackend('webgpu');
console.error(`webgpu adapter: ${info.adapter?.vendor} ${info.adapter?.architecture} ${info.adapter?.description}`.trim());
for (const shape of preset.shapes) {
  const pad = (shape.kernel - 1) >> 1;
  const outSize = Math.floor((shape.size + 2 * pad - shape.kernel) / shape.stride) + 1;
  const x = tf.randomNormal([batch, shape.size, shape.size, shape.inC], 0, 1, 'float32', 1) as tf.Tensor4D;
  const filter = tf.randomNormal([shape.kernel, shape.kernel, shape.inC, shape.outC], 0, 0.05, 'float32', 2) as tf.Tensor4D;
  const dy = tf.randomNormal([batch, outSize, outSize, shape.outC], 0, 1, 'float32', 3) as tf.Tensor4D;
  const common = { strides: [shape.stride, shape.stride], pad, dataFormat: 'NHWC' };
  const kernels: [string, () => tf.Tensor][] = [
    ['Conv2DBackpropFilter', () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...common, filterShape: filter.shape }) as tf.Tensor],
  ];
  if (shape.inputGradient) {
    kernels.push([
      'Conv2DBackpropInput',
      () => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter }, { ...common, inputShape: x.shape }) as tf.Tensor,
    ]);
  }
  for (const [kernel, run] of kernels) {
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
  tf.dispose([x, filter, dy]);
}
