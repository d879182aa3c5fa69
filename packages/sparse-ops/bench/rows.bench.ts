// The row path against the masked-dense path: forward + backward of a stack of submanifold 3x3
// convolutions (conv -> ReLU, repeated) at SparK's mask ratio 0.6, one JSON line:
//   {bench, backend, batch, size, channels, layers, activeFraction, tableBuildMs, denseMs, rowsMs, ratio}
// `ratio` is masked-dense / rows (above 1: rows faster). Both paths compute the same numbers (rows.test.ts);
// the dense one convolves every site and multiplies by the mask, the rows one gathers the visible sites'
// neighbours and runs one matmul per layer. `tableBuildMs` is the one-off cost of the neighbour table (once
// per mask and scale, shared by every layer at that scale), not included in `rowsMs`.
//
// Run (plain Node, not jest): node scripts/run-ts.mjs packages/sparse-ops/bench/rows.bench.ts \
//   [backend=cpu] [batch=8] [size=56] [channels=64] [layers=2] [repeats=2] [gather=stock|row-copy]
//
// `row-copy` (wasm only) swaps, for this process, tfjs-backend-wasm's GatherV2 for a JS loop that copies
// whole rows over the wasm heap: the stock kernel costs about 170 ns per gathered element (22k rows of 64
// channels: 233 ms), which alone makes the row path slower than masked-dense there. The row copy shows what
// a gather kernel that copies rows gives; it is not part of the library.
import * as tf from '@tensorflow/tfjs-core';
// sparse-ops depends on no backend; the runtime package of this repository sets one up with gradients.
import { setupBackend } from '@sparkmim/runtime';
import { ActiveSites, RowSites, fromRows, rowConv2d, sparseConv2d, toRows } from '../src/index';

const [backend = 'cpu', batchArg = '8', sizeArg = '56', channelsArg = '64', layersArg = '2', repeatsArg = '2', gather = 'stock'] =
  process.argv.slice(2);
const batch = Number(batchArg);
const size = Number(sizeArg);
const channels = Number(channelsArg);
const layers = Number(layersArg);
const repeats = Number(repeatsArg);

tf.env().set('PROD', true);
await setupBackend(backend);
if (gather === 'row-copy') useRowCopyGather();

/** Replaces wasm's GatherV2 for 1-D indices on axis 0 (what the row path runs) by a row-copy loop. */
function useRowCopyGather(): void {
  if (tf.getBackend() !== 'wasm') throw new Error(`gather=row-copy needs the wasm backend, got ${tf.getBackend()}`);
  const stock = tf.getKernel('GatherV2', 'wasm');
  if (!stock) throw new Error('the wasm backend has no GatherV2 kernel');
  type Heap = tf.KernelBackend & {
    makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
    typedArrayFromHeap(info: tf.TensorInfo): tf.backend_util.TypedArray;
  };
  const kernelFunc: tf.KernelFunc = (args) => {
    const { x, indices } = args.inputs as Record<string, tf.TensorInfo>;
    const { axis, batchDims } = args.attrs as unknown as tf.GatherV2Attrs;
    if (axis !== 0 || batchDims || indices.shape.length !== 1) return stock.kernelFunc(args);
    const heap = args.backend as Heap;
    const rowSize = x.shape.slice(1).reduce((a, b) => a * b, 1);
    const out = heap.makeOutput([indices.shape[0], ...x.shape.slice(1)], x.dtype);
    const source = heap.typedArrayFromHeap(x);
    const target = heap.typedArrayFromHeap(out);
    const index = heap.typedArrayFromHeap(indices);
    for (let i = 0; i < index.length; i++) {
      const row = index[i];
      if (row < 0 || row >= x.shape[0]) throw new Error(`GatherV2 (row copy): index ${row} is not in [0, ${x.shape[0] - 1}]`);
      target.set(source.subarray(row * rowSize, (row + 1) * rowSize), i * rowSize);
    }
    return out;
  };
  tf.unregisterKernel('GatherV2', 'wasm');
  tf.registerKernel({ ...stock, kernelFunc });
}

// SparK's masks: 32-pixel patches at 224, i.e. a 7x7 grid at every scale, 60% of the patches hidden.
const grid = 7;
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

const x = tf.randomNormal([batch, size, size, channels], 0, 1, 'float32', 1) as tf.Tensor4D;
const filters = Array.from({ length: layers }, (_, i) => tf.variable(tf.randomNormal([3, 3, channels, channels], 0, 0.05, 'float32', 2 + i)));
const activeSites = ActiveSites.fromArray(maskValues, [batch, grid, grid]);
const maskedX = tf.mul(x, activeSites.at(size, size)) as tf.Tensor4D;

const tableStart = performance.now();
const rowSites = RowSites.fromArray(maskValues, [batch, grid, grid]);
rowSites.neighbours([size, size], { windowSize: 3, pad: 1 });
const tableBuildMs = performance.now() - tableStart;
const activeFraction = rowSites.rowCountAt(size, size) / (batch * size * size);

function denseLoss(): tf.Scalar {
  let h = maskedX;
  for (const filter of filters) h = tf.relu(sparseConv2d(h, filter as unknown as tf.Tensor4D, { pad: 1, active: activeSites }));
  return tf.sum(h);
}

function rowsLoss(): tf.Scalar {
  let rows = toRows(maskedX, rowSites);
  for (const filter of filters) {
    rows = tf.relu(rowConv2d(rows, filter as unknown as tf.Tensor4D, { sites: rowSites, inputSize: [size, size], pad: 1 }));
  }
  return tf.sum(fromRows(rows, rowSites, [size, size]));
}

async function timeStep(loss: () => tf.Scalar): Promise<number> {
  const start = performance.now();
  const { value, grads } = tf.variableGrads(loss);
  await value.data();
  await Promise.all(Object.values(grads).map((gradient) => gradient.data()));
  const elapsed = performance.now() - start;
  value.dispose();
  tf.dispose(grads);
  return elapsed;
}

if (process.env.ROWS_BENCH_PROFILE) {
  // Kernel times of one step of each path (after a warm-up), to see where the time goes.
  for (const [name, loss] of [['dense', denseLoss], ['rows', rowsLoss]] as const) {
    tf.dispose(tf.variableGrads(loss).grads);
    const info = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(loss);
      return [value, ...Object.values(grads)];
    });
    const byKernel = new Map<string, number>();
    for (const kernel of info.kernels) {
      if (kernel.name !== 'unnamed scope') byKernel.set(kernel.name, (byKernel.get(kernel.name) ?? 0) + (kernel.kernelTimeMs as number));
    }
    const top = [...byKernel.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8);
    console.log(name, top.map(([kernel, ms]) => `${kernel} ${ms.toFixed(0)}`).join(', '));
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const denseTimes: number[] = [];
const rowsTimes: number[] = [];
// One warm-up each, then alternate so that drift hits both alike.
await timeStep(rowsLoss);
await timeStep(denseLoss);
for (let i = 0; i < repeats; i++) {
  rowsTimes.push(await timeStep(rowsLoss));
  denseTimes.push(await timeStep(denseLoss));
}
const denseMs = median(denseTimes);
const rowsMs = median(rowsTimes);
console.log(
  JSON.stringify({
    bench: 'submanifold conv3x3 stack, forward + backward',
    backend: tf.getBackend(),
    gather,
    batch,
    size,
    channels,
    layers,
    activeFraction: Number(activeFraction.toFixed(3)),
    tableBuildMs: Math.round(tableBuildMs),
    denseMs: Math.round(denseMs),
    rowsMs: Math.round(rowsMs),
    ratio: Number((denseMs / rowsMs).toFixed(2)),
  }),
);
tf.dispose([x, maskedX, ...filters]);
activeSites.dispose();
rowSites.dispose();
