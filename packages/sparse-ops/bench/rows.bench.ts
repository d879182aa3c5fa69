// The row path against the masked-dense path: forward + backward of a stack of submanifold 3x3
// convolutions (conv -> ReLU, repeated) at SparK's mask ratio 0.6, one JSON line:
//   {bench, backend, batch, size, channels, layers, activeFraction, tableBuildMs, denseMs, rowsMs, ratio}
// `ratio` is masked-dense / rows (above 1: rows faster), the median over `repeats` interleaved pairs (and
// `cpuRatio` the same for the process's CPU time, steadier on a loaded machine). Both paths compute the same numbers (rows.test.ts);
// the dense one convolves every site and multiplies by the mask, the rows one gathers the visible sites'
// neighbours and runs one matmul per layer. `tableBuildMs` is the one-off cost of the neighbour table (once
// per mask and scale, shared by every layer at that scale), not included in `rowsMs`.
//
// Run (plain Node, not jest): node scripts/run-ts.mjs packages/sparse-ops/bench/rows.bench.ts \
//   [backend=cpu] [batch=8] [size=56] [channels=64] [layers=2] [repeats=2] [gather=stock|row-copy]
//   [scenario=stack|resnet18|convnext] [tables=cached|fresh] [denseLinear=tf|plain]
//
// `tables=fresh`: every rows step builds its RowSites (every layout and neighbour table) from the mask and
// frees it after the backward pass, inside the timing, as a training step with a new mask each time does
// (SparkModel's row path); `cached` (default) reuses one, so `rowsMs` is the ops alone.
//
// `resnet18`: a ResNet-18 encoder (timm's: 7x7 stem, max pool, basic blocks [2, 2, 2, 2], widths 64-512,
// training-mode batch norms) built from this package's layers, `size` the input size (a multiple of 32;
// `channels` and `layers` unused), its four stage outputs summed as the loss: `apply` with the mask
// against `applyRows`.
//
// `convnext`: a ConvNeXt-T encoder (SparK's sparse ConvNeXt: 4x4 stride-4 stem + layer norm, blocks [3, 3, 9,
// 3] of depthwise 7x7 conv, layer norm, Linear 4x, GELU, Linear, layer scale, residual; widths 96-768;
// layer norm + 2x2 stride-2 conv between stages; no drop path) from this package's layers, `size` as for
// `resnet18`. The masked path multiplies each block's branch by the mask after layer scale, as the
// official block (and @sparkmim/backbones' ConvNeXt) does; the rows path is backbones' convnext-rows.ts.
// At 224 a step takes seconds on wasm: measure at 128 (4x4 patches) or with batch 1 to stay near a minute.
// `denseLinear`: the masked path's pointwise layers as backbones' `Linear` runs them (`tf`, default: tf.matMul,
// whose gradient asks wasm for transposed operands, slow there) or with `rowLinear`'s plain-matmul gradients
// on the flattened map (`plain`), to separate what rows save from what the matmul layout costs.
//
// `gather` is kept for old command lines: `row-copy` used to swap, for this process, tfjs-backend-wasm's
// GatherV2 (about 170 ns per gathered element) for a loop copying whole rows over the wasm heap. That loop is
// now @sparkmim/wasm-kernels' GatherV2, registered by setupBackend('wasm'), so `row-copy` runs `stock`.
import { loadavg } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
// sparse-ops depends on no backend; the runtime package of this repository sets one up with gradients.
import { setupBackend } from '@sparkmim/runtime';
import {
  ActiveSites,
  RowSites,
  SparseBatchNorm2d,
  SparseConv2d,
  SparseLayerNorm,
  SparseMaxPool2d,
  activeAt,
  fromRows,
  rowConv2d,
  rowLinear,
  sparseConv2d,
  toRows,
  windowOutputSize,
} from '../src/index';

const [
  backend = 'cpu',
  batchArg = '8',
  sizeArg = '56',
  channelsArg = '64',
  layersArg = '2',
  repeatsArg = '2',
  gather = 'stock',
  scenario = 'stack',
  tables = 'cached',
  denseLinear = 'tf',
] = process.argv.slice(2);
if (tables !== 'cached' && tables !== 'fresh') throw new Error(`tables must be 'cached' or 'fresh', got '${tables}'`);
if (denseLinear !== 'tf' && denseLinear !== 'plain') throw new Error(`denseLinear must be 'tf' or 'plain', got '${denseLinear}'`);
if (!['stack', 'resnet18', 'convnext'].includes(scenario)) throw new Error(`scenario must be stack, resnet18 or convnext, got '${scenario}'`);
const isEncoder = scenario !== 'stack';
const batch = Number(batchArg);
const size = Number(sizeArg);
const channels = Number(channelsArg);
const layers = Number(layersArg);
const repeats = Number(repeatsArg);

tf.env().set('PROD', true);
await setupBackend(backend);
if (gather === 'row-copy') {
  // The loop this option used to swap in is @sparkmim/wasm-kernels' GatherV2 now, which setupBackend registers.
  console.error('gather=row-copy: copying whole rows is now the standard wasm GatherV2 (@sparkmim/wasm-kernels); running stock');
} else if (gather !== 'stock') {
  throw new Error(`gather must be 'stock' (or the former 'row-copy', the same now), got '${gather}'`);
}

// SparK's masks: 32-pixel patches at 224, i.e. a 7x7 grid at every scale, 60% of the patches hidden.
const grid = isEncoder ? size / 32 : 7;
const patchCount = grid * grid;
const keep = Math.round(patchCount * 0.4);
const maskValues: number[] = [];
let state = 12345;
for (let b = 0; b < batch; b++) {
  const order = Array.from({ length: patchCount }, (_, i) => i);
  for (let i = patchCount - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) % 2147483648;
    const j = state % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const item = new Array<number>(patchCount).fill(0);
  for (const patch of order.slice(0, keep)) item[patch] = 1;
  maskValues.push(...item);
}

const x = tf.randomNormal([batch, size, size, isEncoder ? 3 : channels], 0, 1, 'float32', 1) as tf.Tensor4D;
const filters = Array.from({ length: layers }, (_, i) => tf.variable(tf.randomNormal([3, 3, channels, channels], 0, 0.05, 'float32', 2 + i)));
const activeSites = ActiveSites.fromArray(maskValues, [batch, grid, grid]);
const maskedX = tf.mul(x, activeSites.at(size, size)) as tf.Tensor4D;

const tableStart = performance.now();
let rowSites = RowSites.fromArray(maskValues, [batch, grid, grid]);
rowSites.neighbours([size, size], { windowSize: 3, pad: 1 });
const tableBuildMs = performance.now() - tableStart;
const activeFraction = rowSites.rowCountAt(size, size) / (batch * size * size);

/** A timm ResNet-18 from this package's layers (enough to time it; backbones has the real one). */
class ResNet18 {
  readonly stem = new SparseConv2d({ inChannels: 3, outChannels: 64, kernelSize: 7, strides: 2, pad: 3, bias: false });
  readonly stemNorm = new SparseBatchNorm2d({ channels: 64 });
  readonly pool = new SparseMaxPool2d({ filterSize: 3, strides: 2, pad: 1 });
  readonly blocks: {
    conv1: SparseConv2d;
    bn1: SparseBatchNorm2d;
    conv2: SparseConv2d;
    bn2: SparseBatchNorm2d;
    down?: [SparseConv2d, SparseBatchNorm2d];
    last: boolean;
  }[] = [];

  constructor() {
    let inChannels = 64;
    [64, 128, 256, 512].forEach((width, stage) => {
      for (let i = 0; i < 2; i++) {
        const strides = stage > 0 && i === 0 ? 2 : 1;
        this.blocks.push({
          conv1: new SparseConv2d({ inChannels, outChannels: width, kernelSize: 3, strides, pad: 1, bias: false }),
          bn1: new SparseBatchNorm2d({ channels: width }),
          conv2: new SparseConv2d({ inChannels: width, outChannels: width, kernelSize: 3, pad: 1, bias: false }),
          bn2: new SparseBatchNorm2d({ channels: width }),
          down:
            strides > 1 || inChannels !== width
              ? [
                  new SparseConv2d({ inChannels, outChannels: width, kernelSize: 1, strides, bias: false }),
                  new SparseBatchNorm2d({ channels: width }),
                ]
              : undefined,
          last: i === 1,
        });
        inChannels = width;
      }
    });
  }

  masked(input: tf.Tensor4D, active: ActiveSites): tf.Scalar {
    let y = tf.relu(this.stemNorm.apply(this.stem.apply(input, { active }), { active }));
    y = this.pool.apply(y, { active });
    const outputs: tf.Tensor[] = [];
    for (const block of this.blocks) {
      const branch = block.bn2.apply(block.conv2.apply(tf.relu(block.bn1.apply(block.conv1.apply(y, { active }), { active })), { active }), {
        active,
      });
      const shortcut = block.down ? block.down[1].apply(block.down[0].apply(y, { active }), { active }) : y;
      y = tf.relu(tf.add(branch, shortcut)) as tf.Tensor4D;
      if (block.last) outputs.push(tf.sum(y));
    }
    return tf.addN(outputs) as tf.Scalar;
  }

  rows(input: tf.Tensor4D, sites: RowSites): tf.Scalar {
    let sizeNow: [number, number] = [input.shape[1], input.shape[2]];
    const conv = (layer: SparseConv2d, rows: tf.Tensor2D) => {
      const out = layer.applyRows(rows, { sites, inputSize: sizeNow, inputGradient: layer !== this.stem });
      return { out, size: windowOutputSize(sizeNow, { windowSize: layer.config.kernelSize, strides: layer.config.strides, pad: layer.config.pad }) };
    };
    const step = conv(this.stem, toRows(input, sites));
    sizeNow = step.size;
    let y = tf.relu(this.stemNorm.applyRows(step.out));
    y = this.pool.applyRows(y, { sites, inputSize: sizeNow });
    sizeNow = windowOutputSize(sizeNow, { windowSize: 3, strides: 2, pad: 1 });
    const outputs: tf.Tensor[] = [];
    for (const block of this.blocks) {
      const first = conv(block.conv1, y);
      const inputSize = sizeNow;
      sizeNow = first.size;
      const branch = block.bn2.applyRows(conv(block.conv2, tf.relu(block.bn1.applyRows(first.out))).out);
      const shortcut = block.down ? block.down[1].applyRows(block.down[0].applyRows(y, { sites, inputSize })) : y;
      y = tf.relu(tf.add(branch, shortcut)) as tf.Tensor2D;
      if (block.last) outputs.push(tf.sum(fromRows(y, sites, sizeNow)));
    }
    return tf.addN(outputs) as tf.Scalar;
  }
}

/** PyTorch's exact GELU (backbones' `gelu`): `0.5 x (1 + erf(x / sqrt 2))`. */
function gelu(x: tf.Tensor2D): tf.Tensor2D {
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))) as tf.Tensor2D;
}

/** A SparK ConvNeXt-T from this package's layers (enough to time it; backbones has the real one). */
class ConvNeXtT {
  readonly stem = new SparseConv2d({ inChannels: 3, outChannels: 96, kernelSize: 4, strides: 4 });
  readonly stemNorm = new SparseLayerNorm({ channels: 96 });
  readonly downsamples: { norm: SparseLayerNorm; conv: SparseConv2d }[] = [];
  readonly stages: {
    dwconv: SparseConv2d;
    norm: SparseLayerNorm;
    w1: tf.Variable;
    b1: tf.Variable;
    w2: tf.Variable;
    b2: tf.Variable;
    gamma: tf.Variable;
  }[][] = [];

  constructor() {
    const dims = [96, 192, 384, 768];
    [3, 3, 9, 3].forEach((depth, stage) => {
      const dim = dims[stage];
      if (stage > 0) {
        this.downsamples.push({
          norm: new SparseLayerNorm({ channels: dims[stage - 1] }),
          conv: new SparseConv2d({ inChannels: dims[stage - 1], outChannels: dim, kernelSize: 2, strides: 2 }),
        });
      }
      this.stages.push(
        Array.from({ length: depth }, (_, i) => ({
          dwconv: new SparseConv2d({ inChannels: dim, outChannels: dim, kernelSize: 7, pad: 3, groups: dim }),
          norm: new SparseLayerNorm({ channels: dim }),
          w1: tf.variable(tf.randomNormal([dim, 4 * dim], 0, 0.02, 'float32', 100 * stage + i)),
          b1: tf.variable(tf.zeros([4 * dim])),
          w2: tf.variable(tf.randomNormal([4 * dim, dim], 0, 0.02, 'float32', 100 * stage + i + 50)),
          b2: tf.variable(tf.zeros([dim])),
          gamma: tf.variable(tf.fill([dim], 1e-6)),
        })),
      );
    });
  }

  masked(input: tf.Tensor4D, active: ActiveSites): tf.Scalar {
    let y = this.stemNorm.apply(this.stem.apply(input, { active }), { active });
    const outputs: tf.Tensor[] = [];
    this.stages.forEach((blocks, stage) => {
      if (stage > 0) y = this.downsamples[stage - 1].conv.apply(this.downsamples[stage - 1].norm.apply(y, { active }), { active });
      for (const block of blocks) {
        const spatial = block.norm.apply(block.dwconv.apply(y, { active }), { active });
        const [b, h, w, c] = spatial.shape;
        // As backbones' Linear: matmuls over the flattened map, masked once after layer scale.
        const flat = tf.reshape(spatial, [b * h * w, c]) as tf.Tensor2D;
        const linear = (rows: tf.Tensor2D, weight: tf.Variable, bias: tf.Variable) =>
          denseLinear === 'plain'
            ? rowLinear(rows, weight as tf.Tensor2D, bias as tf.Tensor1D)
            : (tf.add(tf.matMul(rows, weight as tf.Tensor2D), bias) as tf.Tensor2D);
        const hidden = gelu(linear(flat, block.w1, block.b1));
        const branch = tf.reshape(tf.mul(linear(hidden, block.w2, block.b2), block.gamma), [b, h, w, c]);
        y = tf.add(y, tf.mul(branch, activeAt(active, branch))) as tf.Tensor4D;
      }
      outputs.push(tf.sum(y));
    });
    return tf.addN(outputs) as tf.Scalar;
  }

  rows(input: tf.Tensor4D, sites: RowSites): tf.Scalar {
    let sizeNow: [number, number] = [input.shape[1], input.shape[2]];
    const down = (layer: SparseConv2d, rows: tf.Tensor2D, inputGradient = true) => {
      const out = layer.applyRows(rows, { sites, inputSize: sizeNow, inputGradient });
      sizeNow = windowOutputSize(sizeNow, { windowSize: layer.config.kernelSize, strides: layer.config.strides });
      return out;
    };
    let y = this.stemNorm.applyRows(down(this.stem, toRows(input, sites), false));
    const outputs: tf.Tensor[] = [];
    this.stages.forEach((blocks, stage) => {
      if (stage > 0) y = down(this.downsamples[stage - 1].conv, this.downsamples[stage - 1].norm.applyRows(y));
      for (const block of blocks) {
        const spatial = block.norm.applyRows(block.dwconv.applyRows(y, { sites, inputSize: sizeNow }));
        const hidden = gelu(rowLinear(spatial, block.w1 as tf.Tensor2D, block.b1 as tf.Tensor1D));
        y = tf.add(y, tf.mul(rowLinear(hidden, block.w2 as tf.Tensor2D, block.b2 as tf.Tensor1D), block.gamma)) as tf.Tensor2D;
      }
      outputs.push(tf.sum(fromRows(y, sites, sizeNow)));
    });
    return tf.addN(outputs) as tf.Scalar;
  }
}

const encoder = scenario === 'resnet18' ? new ResNet18() : scenario === 'convnext' ? new ConvNeXtT() : undefined;
if (encoder) {
  // Every scale's tables up front, so that rowsMs is the steady state (tableBuildMs reports the cost).
  const buildStart = performance.now();
  tf.tidy(() => encoder.rows(maskedX, rowSites));
  console.log(JSON.stringify({ encoderTablesAndFirstStepMs: Math.round(performance.now() - buildStart) }));
}

function denseLoss(): tf.Scalar {
  if (encoder) return encoder.masked(maskedX, activeSites);
  let h = maskedX;
  for (const filter of filters) h = tf.relu(sparseConv2d(h, filter as unknown as tf.Tensor4D, { pad: 1, active: activeSites }));
  return tf.sum(h);
}

function rowsLoss(): tf.Scalar {
  if (encoder) return encoder.rows(maskedX, rowSites);
  let rows = toRows(maskedX, rowSites);
  for (const filter of filters) {
    rows = tf.relu(rowConv2d(rows, filter as unknown as tf.Tensor4D, { sites: rowSites, inputSize: [size, size], pad: 1 }));
  }
  return tf.sum(fromRows(rows, rowSites, [size, size]));
}

/** Wall and CPU milliseconds of one forward + backward step (CPU: this process, all threads). */
async function timeStep(loss: () => tf.Scalar): Promise<{ wall: number; cpu: number }> {
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  const fresh = tables === 'fresh' && loss === rowsLoss;
  const cachedSites = rowSites;
  if (fresh) rowSites = RowSites.fromArray(maskValues, [batch, grid, grid]);
  const { value, grads } = tf.variableGrads(loss);
  await value.data();
  await Promise.all(Object.values(grads).map((gradient) => gradient.data()));
  if (fresh) {
    rowSites.dispose();
    rowSites = cachedSites;
  }
  const cpu = process.cpuUsage(cpuStart);
  const elapsed = performance.now() - start;
  value.dispose();
  tf.dispose(grads);
  return { wall: elapsed, cpu: (cpu.user + cpu.system) / 1000 };
}

if (process.env.ROWS_BENCH_PROFILE) {
  // Kernel times of one step of each path (after a warm-up), to see where the time goes.
  for (const [name, loss] of [
    ['dense', denseLoss],
    ['rows', rowsLoss],
  ] as const) {
    tf.dispose(tf.variableGrads(loss).grads);
    const info = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(loss);
      return [value, ...Object.values(grads)];
    });
    // ROWS_BENCH_PROFILE=shapes: by kernel and input shapes, the 25 largest, one per line.
    const byShapes = process.env.ROWS_BENCH_PROFILE === 'shapes';
    const byKernel = new Map<string, number>();
    for (const kernel of info.kernels) {
      if (kernel.name === 'unnamed scope') continue;
      const key = byShapes ? `${kernel.name} ${kernel.inputShapes.map((shape) => `[${shape}]`).join(' ')}` : kernel.name;
      byKernel.set(key, (byKernel.get(key) ?? 0) + (kernel.kernelTimeMs as number));
    }
    const top = [...byKernel.entries()].sort((a, b) => b[1] - a[1]).slice(0, byShapes ? 25 : 12);
    const total = [...byKernel.values()].reduce((sum, ms) => sum + ms, 0);
    console.log(`${name} (kernels ${total.toFixed(0)} ms)`, top.map(([kernel, ms]) => `${kernel} ${ms.toFixed(0)}`).join(byShapes ? '\n  ' : ', '));
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const denseTimes: { wall: number; cpu: number }[] = [];
const rowsTimes: { wall: number; cpu: number }[] = [];
// One warm-up each, then interleaved pairs so that the load of other processes hits both alike; the ratio
// is the median of the pairs' ratios (wall clock, and CPU time, which other processes disturb less).
await timeStep(rowsLoss);
await timeStep(denseLoss);
for (let i = 0; i < repeats; i++) {
  rowsTimes.push(await timeStep(rowsLoss));
  denseTimes.push(await timeStep(denseLoss));
}
const pairRatios = denseTimes.map((dense, i) => dense.wall / rowsTimes[i].wall);
const cpuRatios = denseTimes.map((dense, i) => dense.cpu / rowsTimes[i].cpu);
console.log(
  JSON.stringify({
    bench: encoder
      ? `${scenario === 'convnext' ? 'ConvNeXt-T' : 'ResNet-18'} encoder, forward + backward`
      : 'submanifold conv3x3 stack, forward + backward',
    backend: tf.getBackend(),
    gather,
    tables,
    ...(scenario === 'convnext' ? { denseLinear } : {}),
    batch,
    size,
    channels,
    layers,
    activeFraction: Number(activeFraction.toFixed(3)),
    tableBuildMs: Math.round(tableBuildMs),
    pairs: repeats,
    denseMs: Math.round(median(denseTimes.map((t) => t.wall))),
    rowsMs: Math.round(median(rowsTimes.map((t) => t.wall))),
    ratio: Number(median(pairRatios).toFixed(2)),
    pairRatios: pairRatios.map((r) => Number(r.toFixed(2))),
    denseCpuMs: Math.round(median(denseTimes.map((t) => t.cpu))),
    rowsCpuMs: Math.round(median(rowsTimes.map((t) => t.cpu))),
    cpuRatio: Number(median(cpuRatios).toFixed(2)),
    loadAverage: Number(loadavg()[0].toFixed(1)),
  }),
);
tf.dispose([x, maskedX, ...filters]);
activeSites.dispose();
rowSites.dispose();
