// The convolution gradients of this package against slow, obvious loops written here, on every test
// backend: on cpu the loops are checked against tfjs-cpu's kernels, on webgpu our kernels are checked
// against the loops and against tfjs-backend-webgpu's own kernels. Shapes cover padding (numbers, 'same',
// 'valid', explicit), strides, odd sizes, channel counts that are not multiples of the 64-wide tiles, and
// the split-K path of the filter gradient.
import * as tf from '@tensorflow/tfjs-core';
// test-utils is the workspace root's dev dependency, not this package's: @sparkmim/runtime depends on this
// package (it registers these kernels) and test-utils on the runtime, so declaring it here would make a
// cycle that turbo refuses to build.
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { registerWebGpuTrainingKernels, restoreStockWebGpuKernels, WEBGPU_TRAINING_KERNELS } from './index';
import { planFilterGradient } from './kernels/Conv2DBackpropFilter';
import { conv2DBackpropInputGemm, INPUT_GRADIENT_FLAG } from './kernels/Conv2DBackpropInput';
import type { WebGpuBackendLike } from './program';

type Pad = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;

interface ConvCase {
  name: string;
  x: [number, number, number, number];
  filter: [number, number, number, number];
  stride: number;
  pad: Pad;
  /** Also compared with tfjs-backend-webgpu's own kernels (a few cases: SwiftShader compiles each shader slowly). */
  againstStock?: boolean;
}

const explicit = (top: number, bottom: number, left: number, right: number): tf.backend_util.ExplicitPadding => [
  [0, 0],
  [top, bottom],
  [left, right],
  [0, 0],
];

const CASES: ConvCase[] = [
  { name: '1x1 stride 1', x: [2, 5, 5, 6], filter: [1, 1, 6, 5], stride: 1, pad: 'valid' },
  { name: '1x1 stride 2 (a downsample)', x: [2, 7, 7, 4], filter: [1, 1, 4, 8], stride: 2, pad: 'valid' },
  { name: '3x3 pad 1 stride 1', x: [2, 7, 6, 3], filter: [3, 3, 3, 4], stride: 1, pad: 1, againstStock: true },
  { name: '3x3 stride 2 pad 1, odd size', x: [2, 9, 7, 4], filter: [3, 3, 4, 5], stride: 2, pad: explicit(1, 1, 1, 1) },
  { name: '7x7 stride 2 pad 3 (a stem)', x: [1, 12, 10, 3], filter: [7, 7, 3, 4], stride: 2, pad: explicit(3, 3, 3, 3), againstStock: true },
  { name: "3x3 'same' stride 2 (padding only after)", x: [1, 8, 8, 3], filter: [3, 3, 3, 2], stride: 2, pad: 'same' },
  { name: "3x3 'valid' stride 1", x: [1, 6, 7, 2], filter: [3, 3, 2, 3], stride: 1, pad: 'valid' },
  { name: 'asymmetric explicit padding', x: [1, 6, 5, 2], filter: [3, 2, 2, 3], stride: 1, pad: explicit(2, 0, 0, 1) },
  { name: '1x1 pad 1 stride 1 (padding wider than the kernel)', x: [1, 4, 4, 2], filter: [1, 1, 2, 3], stride: 1, pad: 1 },
  { name: '1x1 pad 1 stride 2 (stride phases with no tap)', x: [1, 6, 5, 3], filter: [1, 1, 3, 4], stride: 2, pad: 1 },
  { name: 'channels beyond one 64-wide tile', x: [1, 5, 5, 70], filter: [3, 3, 70, 67], stride: 1, pad: 'same', againstStock: true },
  { name: 'K split across workgroups', x: [4, 12, 12, 5], filter: [3, 3, 5, 6], stride: 1, pad: 'same' },
];

function convInfo(c: ConvCase): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(c.x, c.filter, c.stride, 1, c.pad, undefined, false, 'channelsLast');
}

/** dW[i, j, c, o] = sum over b, y, x of x[b, y*s + i - top, x*s + j - left, c] * dy[b, y, x, o], as loops. */
function referenceFilterGradient(c: ConvCase, x: Float32Array, dy: Float32Array): Float32Array {
  const info = convInfo(c);
  const [batch, height, width, inC] = c.x;
  const [kernelH, kernelW, , outC] = c.filter;
  const dw = new Float32Array(kernelH * kernelW * inC * outC);
  for (let i = 0; i < kernelH; i++)
    for (let j = 0; j < kernelW; j++)
      for (let ci = 0; ci < inC; ci++)
        for (let o = 0; o < outC; o++) {
          let sum = 0;
          for (let b = 0; b < batch; b++)
            for (let y = 0; y < info.outHeight; y++)
              for (let xx = 0; xx < info.outWidth; xx++) {
                const row = y * info.strideHeight + i - info.padInfo.top;
                const col = xx * info.strideWidth + j - info.padInfo.left;
                if (row < 0 || row >= height || col < 0 || col >= width) continue;
                sum += x[((b * height + row) * width + col) * inC + ci] * dy[((b * info.outHeight + y) * info.outWidth + xx) * outC + o];
              }
          dw[((i * kernelW + j) * inC + ci) * outC + o] = sum;
        }
  return dw;
}

/** dx[b, r, q, c] = sum of w[i, j, c, o] * dy[b, y, x, o] over the outputs (y, x) whose window covers (r, q). */
function referenceInputGradient(c: ConvCase, w: Float32Array, dy: Float32Array): Float32Array {
  const info = convInfo(c);
  const [batch, height, width, inC] = c.x;
  const [kernelH, kernelW, , outC] = c.filter;
  const dx = new Float32Array(batch * height * width * inC);
  for (let b = 0; b < batch; b++)
    for (let y = 0; y < info.outHeight; y++)
      for (let xx = 0; xx < info.outWidth; xx++)
        for (let i = 0; i < kernelH; i++)
          for (let j = 0; j < kernelW; j++) {
            const row = y * info.strideHeight + i - info.padInfo.top;
            const col = xx * info.strideWidth + j - info.padInfo.left;
            if (row < 0 || row >= height || col < 0 || col >= width) continue;
            for (let ci = 0; ci < inC; ci++) {
              let sum = 0;
              for (let o = 0; o < outC; o++)
                sum += w[((i * kernelW + j) * inC + ci) * outC + o] * dy[((b * info.outHeight + y) * info.outWidth + xx) * outC + o];
              dx[((b * height + row) * width + col) * inC + ci] += sum;
            }
          }
  return dx;
}

function filterGradient(c: ConvCase, x: tf.Tensor, dy: tf.Tensor): tf.Tensor {
  const attrs = { strides: c.stride, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined, filterShape: c.filter };
  return tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

function inputGradient(c: ConvCase, w: tf.Tensor, dy: tf.Tensor): tf.Tensor {
  const attrs = { inputShape: c.x, strides: c.stride, pad: c.pad, dataFormat: 'NHWC', dimRoundingMode: undefined };
  return tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

function gradients(c: ConvCase, x: tf.Tensor, w: tf.Tensor, dy: tf.Tensor): { dw: tf.Tensor; dx: tf.Tensor } {
  return { dw: filterGradient(c, x, dy), dx: inputGradient(c, w, dy) };
}

/** The input gradient with the tfjs flag choosing its stride-1 method set to `method` for the call. */
function inputGradientBy(method: string, c: ConvCase, w: tf.Tensor, dy: tf.Tensor): tf.Tensor {
  const before = tf.env().get(INPUT_GRADIENT_FLAG);
  tf.env().set(INPUT_GRADIENT_FLAG, method);
  try {
    return inputGradient(c, w, dy);
  } finally {
    tf.env().set(INPUT_GRADIENT_FLAG, before);
  }
}

describeBackends('webgpu-kernels: conv2d gradients', ({ backend }) => {
  beforeAll(() => {
    if (backend === 'webgpu') registerWebGpuTrainingKernels();
  });

  it('the K-split case really splits K, and the others do not', () => {
    const plan = (c: ConvCase) => {
      const info = convInfo(c);
      return planFilterGradient(c.filter[0] * c.filter[1] * c.x[3], c.filter[3], c.x[0] * info.outHeight * info.outWidth).slices;
    };
    expect(CASES.map((c) => [c.name, plan(c) > 1])).toEqual(CASES.map((c) => [c.name, c.name === 'K split across workgroups']));
  });

  for (const c of CASES) {
    it(`${c.name}: filter and input gradients match loops${backend === 'webgpu' && c.againstStock ? ' and the stock webgpu kernels' : ''}`, async () => {
      const info = convInfo(c);
      const x = tf.randomUniform(c.x, -1, 1, 'float32', 1);
      const w = tf.randomUniform(c.filter, -1, 1, 'float32', 2);
      const dy = tf.randomUniform([c.x[0], info.outHeight, info.outWidth, c.filter[3]], -1, 1, 'float32', 3);
      const [xValues, wValues, dyValues] = [(await x.data()) as Float32Array, (await w.data()) as Float32Array, (await dy.data()) as Float32Array];
      // Backend buffers, not only tensors: the kernels' intermediates (partial sums, the flipped filter).
      const buffersBefore = tf.engine().backend.numDataIds();
      const ours = gradients(c, x, w, dy);
      try {
        expect(ours.dw.shape).toEqual(c.filter);
        expect(ours.dx.shape).toEqual(c.x);
        await expectClose(ours.dw, referenceFilterGradient(c, xValues, dyValues), { relative: 1e-5, label: `${c.name} dW` });
        await expectClose(ours.dx, referenceInputGradient(c, wValues, dyValues), { relative: 1e-5, label: `${c.name} dx` });
        if (backend === 'webgpu' && c.stride === 1) {
          // Stride 1 takes the forward-convolution rewrite by default; the GEMM (what strided ones take) too.
          const byGemm = inputGradientBy('gemm', c, w, dy);
          await expectClose(byGemm, referenceInputGradient(c, wValues, dyValues), { relative: 1e-5, label: `${c.name} dx by gemm` });
          byGemm.dispose();
        }
        if (backend === 'webgpu' && c.againstStock) {
          restoreStockWebGpuKernels();
          const stock = gradients(c, x, w, dy);
          registerWebGpuTrainingKernels();
          await expectClose(ours.dw, stock.dw, { relative: 1e-5, label: `${c.name} dW vs stock` });
          await expectClose(ours.dx, stock.dx, { relative: 1e-5, label: `${c.name} dx vs stock` });
          tf.dispose([stock.dw, stock.dx]);
        }
        tf.dispose([ours.dw, ours.dx]);
        // webgpu frees a buffer still in the command queue at the next submit, which a read makes.
        const probe = tf.sum(x);
        await probe.data();
        probe.dispose();
        expect({ buffers: tf.engine().backend.numDataIds() }).toEqual({ buffers: buffersBefore });
      } finally {
        tf.dispose([x, w, dy, ours.dw, ours.dx]);
      }
    });
  }

  it('the input-gradient GEMM folds row tiles into x when they exceed a dispatch dimension', async () => {
    if (backend !== 'webgpu') return; // a webgpu program
    // WebGPU's 65535 workgroups per dimension, lowered to 2 and 3: 8 row tiles (or 3 per stride phase) fold.
    const folded: [ConvCase, number][] = [
      [{ name: 'stride 1, 8 row tiles, 2 column tiles', x: [2, 16, 16, 70], filter: [3, 3, 70, 3], stride: 1, pad: 1 }, 3],
      [{ name: 'stride 2, 3 row tiles per phase', x: [2, 17, 16, 5], filter: [3, 3, 5, 4], stride: 2, pad: 1 }, 2],
    ];
    for (const [c, maxPerDimension] of folded) {
      const info = convInfo(c);
      const w = tf.randomUniform(c.filter, -1, 1, 'float32', 6);
      const dy = tf.randomUniform([c.x[0], info.outHeight, info.outWidth, c.filter[3]], -1, 1, 'float32', 7);
      const dx = tf.engine().makeTensorFromTensorInfo(conv2DBackpropInputGemm(tf.backend() as WebGpuBackendLike, dy, w, info, maxPerDimension));
      await expectClose(dx, referenceInputGradient(c, (await w.data()) as Float32Array, (await dy.data()) as Float32Array), {
        relative: 1e-5,
        label: c.name,
      });
      tf.dispose([w, dy, dx]);
    }
  });

  it('trains through tf.grads of conv2d (ours on webgpu) like the loops', async () => {
    const c = CASES[3];
    const x = tf.randomUniform(c.x, -1, 1, 'float32', 4);
    const w = tf.randomUniform(c.filter, -1, 1, 'float32', 5);
    const [dx, dw] = tf.grads((input: tf.Tensor, filter: tf.Tensor) =>
      tf.conv2d(input as tf.Tensor4D, filter as tf.Tensor4D, c.stride, c.pad as tf.backend_util.ExplicitPadding).sum(),
    )([x, w]);
    const info = convInfo(c);
    const ones = new Float32Array(c.x[0] * info.outHeight * info.outWidth * c.filter[3]).fill(1);
    await expectClose(dw, referenceFilterGradient(c, (await x.data()) as Float32Array, ones), { relative: 1e-5, label: 'dW' });
    await expectClose(dx, referenceInputGradient(c, (await w.data()) as Float32Array, ones), { relative: 1e-5, label: 'dx' });
    tf.dispose([x, w, dx, dw]);
  });

  it('a dy of the wrong shape is named in the error', () => {
    const x = tf.zeros([1, 6, 6, 2]);
    const dy = tf.zeros([1, 5, 6, 3]);
    expect(() =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
        strides: 1,
        pad: 'same',
        dataFormat: 'NHWC',
        dimRoundingMode: undefined,
        filterShape: [3, 3, 2, 3],
      } as unknown as tf.NamedAttrMap),
    ).toThrow(backend === 'webgpu' ? 'Conv2DBackpropFilter (@sparkmim/webgpu-kernels): expected dy of shape [1,6,6,3], got [1,5,6,3]' : /./);
    tf.dispose([x, dy]);
  });
});

describeBackends('webgpu-kernels: the stride-1 input gradient method flag', ({ backend }) => {
  it('rejects an unknown method, naming the flag and the choices', () => {
    if (backend !== 'webgpu') return; // the flag is registered with our kernels, for webgpu only
    registerWebGpuTrainingKernels();
    const c = CASES[2];
    const w = tf.zeros(c.filter);
    const dy = tf.zeros([c.x[0], c.x[1], c.x[2], c.filter[3]]);
    expect(() => inputGradientBy('winograd', c, w, dy)).toThrow("SPARKMIM_WEBGPU_INPUT_GRADIENT: expected conv or gemm, got 'winograd'");
    tf.dispose([w, dy]);
  });
});

describeBackends('webgpu-kernels: registration', ({ backend }) => {
  it('registers on request, again does nothing, and the stock kernels can be put back', () => {
    if (backend !== 'webgpu') {
      // Nothing of ours is registered for another backend.
      for (const config of WEBGPU_TRAINING_KERNELS) expect(tf.getKernel(config.kernelName, backend)?.kernelFunc).not.toBe(config.kernelFunc);
      return;
    }
    const current = () => WEBGPU_TRAINING_KERNELS.map((config) => tf.getKernel(config.kernelName, 'webgpu')?.kernelFunc === config.kernelFunc);
    registerWebGpuTrainingKernels();
    registerWebGpuTrainingKernels();
    expect(current()).toEqual([true, true, true, true]);
    restoreStockWebGpuKernels();
    expect(current()).toEqual([false, false, false, false]);
    // SparkActiveMoments and SparkChannelSums are sparkmim's own kernels: no stock ones come back in their place.
    const ours = ['SparkActiveMoments', 'SparkChannelSums'];
    const withStock = WEBGPU_TRAINING_KERNELS.filter((config) => !ours.includes(config.kernelName));
    expect(withStock.every((config) => tf.getKernel(config.kernelName, 'webgpu') !== undefined)).toBe(true);
    expect(ours.map((name) => tf.getKernel(name, 'webgpu'))).toEqual([undefined, undefined]);
    registerWebGpuTrainingKernels();
    expect(current()).toEqual([true, true, true, true]);
  });
});
