// Masked batch norm in training (SparseBatchNorm2d.apply: active-site statistics, running-statistics update,
// normalisation) forward + backward to x, gamma and beta, per backend, one JSON line each:
//   {backend, shape, activeFraction, kernels: {forward: {all, fullSize}, step: {all, fullSize}}, ms, cpuMs}
// `kernels` counts the kernels tfjs dispatches (one GPU dispatch each on webgpu), so it tells what a GPU
// pays in launches and memory passes even where only a CPU is at hand (`step` is forward + a weighted sum +
// backward); `ms` is the median wall time of a step and `cpuMs` this process's CPU time per step (steadier
// than wall time on a shared machine; cpu and wasm run on one thread).
//
// Run: node scripts/run-ts.mjs packages/sparse-ops/bench/norm.bench.ts [backends=cpu,wasm] [B,H,W,C=8,28,28,64] [minMs=1500]
import * as tf from '@tensorflow/tfjs-core';
// sparse-ops depends on no backend; the runtime package of this repository sets one up with gradients.
import { setupBackend } from '@sparkmim/runtime';
import { ActiveSites, SparseBatchNorm2d } from '../src/index';

const backends = (process.argv[2] ?? 'cpu,wasm').split(',');
const shape = (process.argv[3] ?? '8,28,28,64').split(',').map(Number) as [number, number, number, number];
const minMs = Number(process.argv[4] ?? 1500);
const [batch, , , channels] = shape;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * Kernels that move data (Identity and Reshape only relabel it), and among them those that read or write a
 * whole feature map: each of those is a pass over memory, what a masked batch norm costs on a GPU.
 */
function countKernels(kernels: { name: string; inputShapes: (number[] | null)[]; outputShapes: number[][] }[], featureShape: number[]) {
  const featureSize = featureShape.reduce((product, size) => product * size, 1);
  const size = (dims: number[] | null) => (dims ?? []).reduce((product, dim) => product * dim, 1);
  // A tf.customGrad op appears as a scope entry besides the kernels it runs: not counted either.
  const moving = kernels.filter((kernel) => !['Identity', 'Reshape', 'unnamed scope'].includes(kernel.name));
  const fullSize = moving.filter((kernel) => [...kernel.inputShapes, ...kernel.outputShapes].some((dims) => size(dims) >= featureSize));
  return { all: moving.length, fullSize: fullSize.length };
}

tf.env().set('PROD', true);
for (const backend of backends) {
  await setupBackend(backend);
  const layer = new SparseBatchNorm2d({ channels });
  const x = tf.randomNormal(shape, 0, 1, 'float32', 1) as tf.Tensor4D;
  const upstream = tf.randomNormal(shape, 0, 1, 'float32', 2) as tf.Tensor4D;
  // About 40% of the sites active, in patches of 1/7 of the side (SparK keeps 40% of its 32x32 patches).
  const patches = 7;
  const maskValues = Array.from({ length: batch * patches * patches }, (_, i) => ((i * 7) % 5 < 2 ? 1 : 0));
  const active = ActiveSites.fromArray(maskValues, [batch, patches, patches]);
  const xVariable = tf.variable(x, true, 'norm-bench-x');
  const step = () => {
    const { value, grads } = tf.variableGrads(
      () => tf.sum(tf.mul(layer.apply(xVariable, { active }), upstream)) as tf.Scalar,
      [xVariable, layer.gamma, layer.beta],
    );
    return [value, ...Object.values(grads)];
  };
  // tf.profile reuses one record, so each count is taken before the next profile.
  const forwardProfile = await tf.profile(() => tf.tidy(() => layer.apply(xVariable, { active })));
  tf.dispose(forwardProfile.result as tf.Tensor);
  const forward = countKernels(forwardProfile.kernels, shape);
  const stepProfile = await tf.profile(() => step());
  tf.dispose(stepProfile.result as tf.Tensor[]);
  const total = countKernels(stepProfile.kernels, shape);
  const samples: number[] = [];
  const cpuSamples: number[] = [];
  const started = performance.now();
  while (samples.length < 5 || performance.now() - started < minMs) {
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    const outputs = step();
    await Promise.all(outputs.map((output) => output.data()));
    const cpu = process.cpuUsage(cpuStart);
    samples.push(performance.now() - start);
    cpuSamples.push((cpu.user + cpu.system) / 1000);
    tf.dispose(outputs);
  }
  console.log(
    JSON.stringify({
      backend,
      shape,
      activeFraction: maskValues.reduce((sum: number, value) => sum + value, 0) / maskValues.length,
      kernels: { forward, step: total },
      ms: Number(median(samples.slice(1)).toFixed(2)),
      cpuMs: Number(median(cpuSamples.slice(1)).toFixed(2)),
      steps: samples.length,
    }),
  );
  tf.dispose([x, upstream, xVariable]);
  active.dispose();
  layer.dispose();
}
