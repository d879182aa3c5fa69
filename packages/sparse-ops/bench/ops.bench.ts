// Masked ops against their dense counterparts on the cpu backend (forward pass), one JSON line per op:
//   {op, shape, denseMs, maskedMs, ratio, noMaskMs, noMaskRatio, allActiveMs, allActiveRatio}
// `ratio` is the overhead of masking (masked / dense); with no mask, or an all-active ActiveSites, the op is
// the dense op, so those ratios are about 1. Shapes are small: tfjs's pure-JS cpu backend runs at roughly
// 0.2 GFLOP/s.
//
// Run: npm run bench (in packages/sparse-ops), or node scripts/run-ts.mjs packages/sparse-ops/bench/ops.bench.ts [minMsPerVariant]
import * as tf from '@tensorflow/tfjs-core';
// sparse-ops depends on no backend; the runtime package of this repository sets one up with gradients.
import { setupBackend } from '@sparkmim/runtime';
import { ActiveSites, sparseAvgPool2d, sparseBatchNorm, sparseConv2d, sparseLayerNorm, sparseMaxPool2d, type ActiveMask } from '../src/index';

const minMsPerVariant = Number(process.argv[2] ?? 400);
const batch = 2;
const size = 32;
const channels = 16;

interface BenchCase {
  op: string;
  shape: number[];
  dense: (x: tf.Tensor4D) => tf.Tensor;
  sparse: (x: tf.Tensor4D, active?: ActiveMask) => tf.Tensor;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Median wall time of each variant, run in rotation so that drift hits all alike. */
async function timeVariants(variants: (() => tf.Tensor)[]): Promise<number[]> {
  const runOnce = async (variant: () => tf.Tensor) => {
    const start = performance.now();
    const result = tf.tidy(variant);
    await result.data();
    const elapsed = performance.now() - start;
    result.dispose();
    return elapsed;
  };
  for (const variant of variants) await runOnce(variant); // warm-up
  const samples: number[][] = variants.map(() => []);
  const started = performance.now();
  while (samples[0].length < 5 || performance.now() - started < minMsPerVariant * variants.length) {
    for (let i = 0; i < variants.length; i++) samples[i].push(await runOnce(variants[i]));
  }
  return samples.map(median);
}

tf.env().set('PROD', true); // no tfjs banner or debug checks while timing
await setupBackend('cpu');

const x = tf.randomNormal([batch, size, size, channels], 0, 1, 'float32', 1) as tf.Tensor4D;
const filter3x3 = tf.randomNormal([3, 3, channels, channels], 0, 0.1, 'float32', 2) as tf.Tensor4D;
const depthwise7x7 = tf.randomNormal([7, 7, 1, channels], 0, 0.1, 'float32', 3) as tf.Tensor4D;
const bias = tf.randomNormal([channels], 0, 0.1, 'float32', 4) as tf.Tensor1D;
const explicit = (pad: number): tf.backend_util.ExplicitPadding => [
  [0, 0],
  [pad, pad],
  [pad, pad],
  [0, 0],
];

// About 40% of the sites active, as 1/8-resolution patches (SparK masks 60% of the patches).
const patches = size / 8;
const maskValues = Array.from({ length: batch * patches * patches }, (_, i) => ((i * 7) % 5 < 2 ? 1 : 0));
const masked = ActiveSites.fromArray(maskValues, [batch, patches, patches]);
const allActive = ActiveSites.fromArray(
  maskValues.map(() => 1),
  [batch, patches, patches],
);

const cases: BenchCase[] = [
  {
    op: 'conv2d 3x3 pad 1 + bias',
    shape: [batch, size, size, channels],
    dense: (input) => tf.add(tf.conv2d(input, filter3x3, 1, explicit(1)), bias),
    sparse: (input, active) => sparseConv2d(input, filter3x3, { pad: 1, bias, active }),
  },
  {
    op: 'depthwise conv 7x7 pad 3 + bias',
    shape: [batch, size, size, channels],
    dense: (input) => tf.add(tf.depthwiseConv2d(input, tf.reshape(depthwise7x7, [7, 7, channels, 1]) as tf.Tensor4D, 1, explicit(3)), bias),
    sparse: (input, active) => sparseConv2d(input, depthwise7x7, { pad: 3, groups: channels, bias, active }),
  },
  {
    op: 'maxPool 3x3 stride 2 pad 1',
    shape: [batch, size, size, channels],
    dense: (input) => tf.maxPool(input, 3, 2, explicit(1)),
    sparse: (input, active) => sparseMaxPool2d(input, { filterSize: 3, strides: 2, pad: 1, active }),
  },
  {
    op: 'avgPool 2x2',
    shape: [batch, size, size, channels],
    dense: (input) => tf.avgPool(input, 2, 2, 'valid'),
    sparse: (input, active) => sparseAvgPool2d(input, { filterSize: 2, active }),
  },
  {
    op: 'batchNorm (training statistics)',
    shape: [batch, size, size, channels],
    dense: (input) => {
      const { mean, variance } = tf.moments(input, [0, 1, 2]);
      return tf.batchNorm(input, mean, variance, undefined, undefined, 1e-5);
    },
    sparse: (input, active) => sparseBatchNorm(input, { active }),
  },
  {
    op: 'layerNorm (channels-last)',
    shape: [batch, size, size, channels],
    dense: (input) => {
      const { mean, variance } = tf.moments(input, 3, true);
      return tf.mul(tf.sub(input, mean), tf.rsqrt(tf.add(variance, 1e-6)));
    },
    sparse: (input, active) => sparseLayerNorm(input, { active }),
  },
];

const round = (value: number, digits = 3) => Number(value.toFixed(digits));
for (const benchCase of cases) {
  const [denseMs, maskedMs, noMaskMs, allActiveMs] = await timeVariants([
    () => benchCase.dense(x),
    () => benchCase.sparse(x, masked),
    () => benchCase.sparse(x),
    () => benchCase.sparse(x, allActive),
  ]);
  console.log(
    JSON.stringify({
      op: benchCase.op,
      shape: benchCase.shape,
      denseMs: round(denseMs),
      maskedMs: round(maskedMs),
      ratio: round(maskedMs / denseMs, 2),
      noMaskMs: round(noMaskMs),
      noMaskRatio: round(noMaskMs / denseMs, 2),
      allActiveMs: round(allActiveMs),
      allActiveRatio: round(allActiveMs / denseMs, 2),
    }),
  );
}
masked.dispose();
allActive.dispose();
tf.dispose([x, filter3x3, depthwise7x7, bias]);
