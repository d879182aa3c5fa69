import * as tf from '@tensorflow/tfjs-core';
import { loadTorchState, type TorchTensorData } from '@sparkmim/sparse-ops';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { ConvTranspose2d, Identity } from './index';

/** Deterministic, distinct float32 test values. */
function ramp(count: number, scale: number, offset: number): Float32Array {
  return Float32Array.from({ length: count }, (_, i) => Math.fround(offset + scale * ((i * 7) % 19)));
}

/**
 * PyTorch's ConvTranspose2d by its definition: input pixel (iy, ix) scatters weight[i, o, ky, kx] to output
 * pixel (iy * s - pad + ky, ix * s - pad + kx), dropped when outside. x NHWC, weight (in, out, kH, kW).
 */
function convTransposeReference(
  x: Float32Array,
  [batch, height, width, inC]: number[],
  weight: Float32Array,
  bias: Float32Array,
  outC: number,
  kernel: number,
  stride: number,
  pad: number,
): { values: Float32Array; shape: number[] } {
  const outH = (height - 1) * stride - 2 * pad + kernel;
  const outW = (width - 1) * stride - 2 * pad + kernel;
  const values = new Float32Array(batch * outH * outW * outC);
  for (let b = 0; b < batch; b++)
    for (let oy = 0; oy < outH; oy++)
      for (let ox = 0; ox < outW; ox++) for (let o = 0; o < outC; o++) values[((b * outH + oy) * outW + ox) * outC + o] = bias[o];
  for (let b = 0; b < batch; b++)
    for (let iy = 0; iy < height; iy++)
      for (let ix = 0; ix < width; ix++)
        for (let i = 0; i < inC; i++)
          for (let o = 0; o < outC; o++)
            for (let ky = 0; ky < kernel; ky++)
              for (let kx = 0; kx < kernel; kx++) {
                const oy = iy * stride - pad + ky;
                const ox = ix * stride - pad + kx;
                if (oy < 0 || oy >= outH || ox < 0 || ox >= outW) continue;
                values[((b * outH + oy) * outW + ox) * outC + o] +=
                  x[((b * height + iy) * width + ix) * inC + i] * weight[((i * outC + o) * kernel + ky) * kernel + kx];
              }
  return { values, shape: [batch, outH, outW, outC] };
}

describeBackends('ConvTranspose2d', () => {
  // Non-square input, in != out channels and batch 2 catch swapped axes in the (in, out, kH, kW) layout.
  const [batch, height, width, inC, outC] = [2, 3, 2, 3, 2];
  const xValues = ramp(batch * height * width * inC, 0.11, -1);
  const weightValues = ramp(inC * outC * 16, 0.07, -0.6);
  const biasValues = Float32Array.from([0.25, -0.5]);

  function loadedLayer(): ConvTranspose2d {
    const layer = new ConvTranspose2d({ inChannels: inC, outChannels: outC, kernelSize: 4, strides: 2, pad: 1 });
    const state = new Map<string, TorchTensorData>([
      ['weight', { shape: [inC, outC, 4, 4], data: weightValues }],
      ['bias', { shape: [outC], data: biasValues }],
    ]);
    loadTorchState(layer, state);
    return layer;
  }

  it('is PyTorch ConvTranspose2d(k=4, s=2, padding=1) with a (in, out, kH, kW) weight: doubles H and W', async () => {
    const layer = loadedLayer();
    const x = tf.tensor4d(xValues, [batch, height, width, inC]);
    const y = layer.apply(x);
    const expected = convTransposeReference(xValues, [batch, height, width, inC], weightValues, biasValues, outC, 4, 2, 1);
    expect(y.shape).toEqual([batch, 2 * height, 2 * width, outC]);
    expect(expected.shape).toEqual(y.shape);
    await expectClose(y, expected.values, { relative: 1e-6 });
    tf.dispose([x, y]);
    layer.dispose();
  });

  it('differentiates w.r.t. its weight, bias and input', async () => {
    const layer = loadedLayer();
    const x = tf.tensor4d(xValues, [batch, height, width, inC]);
    const outSize = batch * 2 * height * 2 * width * outC;
    const upstreamValues = ramp(outSize, 0.05, -0.4);
    const upstream = tf.tensor4d(upstreamValues, [batch, 2 * height, 2 * width, outC]);
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(x), upstream)) as tf.Scalar, [layer.filter, layer.bias!]);
    const inputGrad = tf.grad((input) => tf.sum(tf.mul(layer.apply(input as tf.Tensor4D), upstream)))(x);
    // y is linear in each argument: d/dweight[i, o, ky, kx] = sum of x[b, iy, ix, i] * g[b, oy, ox, o] over
    // the pairs the definition links; d/dbias[o] = sum of g[..., o]; d/dx likewise.
    const expectedWeightGrad = new Float32Array(inC * outC * 16);
    const expectedInputGrad = new Float32Array(xValues.length);
    const [outH, outW] = [2 * height, 2 * width];
    for (let b = 0; b < batch; b++)
      for (let iy = 0; iy < height; iy++)
        for (let ix = 0; ix < width; ix++)
          for (let i = 0; i < inC; i++)
            for (let o = 0; o < outC; o++)
              for (let ky = 0; ky < 4; ky++)
                for (let kx = 0; kx < 4; kx++) {
                  const oy = iy * 2 - 1 + ky;
                  const ox = ix * 2 - 1 + kx;
                  if (oy < 0 || oy >= outH || ox < 0 || ox >= outW) continue;
                  const g = upstreamValues[((b * outH + oy) * outW + ox) * outC + o];
                  const xIndex = ((b * height + iy) * width + ix) * inC + i;
                  const wIndex = ((i * outC + o) * 4 + ky) * 4 + kx;
                  expectedWeightGrad[wIndex] += xValues[xIndex] * g;
                  expectedInputGrad[xIndex] += weightValues[wIndex] * g;
                }
    const expectedBiasGrad = [0, 1].map((o) => upstreamValues.filter((_, index) => index % outC === o).reduce((a, v) => a + v, 0));
    const weightGradTorch = tf.transpose(grads[layer.filter.name], [3, 2, 0, 1]); // [kH, kW, O, I] → (I, O, kH, kW)
    await expectClose(weightGradTorch, expectedWeightGrad, { relative: 1e-5, label: 'weight grad' });
    await expectClose(grads[layer.bias!.name], expectedBiasGrad, { relative: 1e-5, label: 'bias grad' });
    await expectClose(inputGrad, expectedInputGrad, { relative: 1e-5, label: 'input grad' });
    tf.dispose([x, upstream, value, inputGrad, weightGradTorch, ...Object.values(grads)]);
    layer.dispose();
  });

  it('names the expected input shape', () => {
    const layer = new ConvTranspose2d({ inChannels: 4, outChannels: 4, kernelSize: 4, strides: 2, pad: 1 });
    const x = tf.zeros([1, 2, 2, 3]) as tf.Tensor4D;
    expect(() => layer.apply(x)).toThrow('ConvTranspose2d: x must have shape [B, H, W, 4], got [1, 2, 2, 3]');
    x.dispose();
    layer.dispose();
  });
});

describeBackends('Identity', () => {
  it('returns its input and has no state', () => {
    const x = tf.ones([1, 2, 2, 1]);
    const identity = new Identity();
    expect(identity.apply(x)).toBe(x);
    expect(identity.stateEntries()).toEqual([]);
    x.dispose();
  });
});
