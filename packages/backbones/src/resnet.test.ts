import * as tf from '@tensorflow/tfjs-core';
import { ActiveSites, SeededRandom, torchState, type TorchTensorData } from '@sparkmim/sparse-ops';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { Bottleneck, resnet101, resnet152, resnet18, resnet200, resnet34, resnet50, type ResNet } from './index';

/** A feature map as plain data, NHWC. */
interface Map4 {
  data: Float32Array;
  shape: number[];
}

/** Naive NHWC convolution with a PyTorch `(O, I, kH, kW)` weight and symmetric zero padding. */
function convReference(x: Float32Array, [batch, height, width, inChannels]: number[], weight: TorchTensorData, stride: number, pad: number): Map4 {
  const [outChannels, , kernel] = weight.shape;
  const outH = Math.floor((height + 2 * pad - kernel) / stride) + 1;
  const outW = Math.floor((width + 2 * pad - kernel) / stride) + 1;
  const out = new Float32Array(batch * outH * outW * outChannels);
  for (let b = 0; b < batch; b++) {
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++) {
        for (let o = 0; o < outChannels; o++) {
          let sum = 0;
          for (let ky = 0; ky < kernel; ky++) {
            for (let kx = 0; kx < kernel; kx++) {
              const iy = oy * stride + ky - pad;
              const ix = ox * stride + kx - pad;
              if (iy < 0 || iy >= height || ix < 0 || ix >= width) continue;
              for (let i = 0; i < inChannels; i++) {
                sum += x[((b * height + iy) * width + ix) * inChannels + i] * weight.data[((o * inChannels + i) * kernel + ky) * kernel + kx];
              }
            }
          }
          out[((b * outH + oy) * outW + ox) * outChannels + o] = sum;
        }
      }
    }
  }
  return { data: out, shape: [batch, outH, outW, outChannels] };
}

/** Evaluation-mode batch norm with PyTorch's formula and eps 1e-5. */
function batchNormReference(x: Map4, state: Map<string, TorchTensorData>, prefix: string): Map4 {
  const channels = x.shape[3];
  const [weight, bias, mean, variance] = ['weight', 'bias', 'running_mean', 'running_var'].map((name) => state.get(prefix + name)!.data);
  const data = x.data.map((value, i) => {
    const c = i % channels;
    return ((value - mean[c]) / Math.sqrt(variance[c] + 1e-5)) * weight[c] + bias[c];
  });
  return { data, shape: x.shape };
}

/** Zeroes the sites whose nearest mask cell (mask `[B, mh, mw]`) is 0; identity without a mask. */
function maskReference(x: Map4, mask: Map4 | undefined): Map4 {
  if (!mask) return x;
  const [, height, width, channels] = x.shape;
  const [, maskH, maskW] = mask.shape;
  const data = x.data.map((value, i) => {
    const site = Math.floor(i / channels);
    const b = Math.floor(site / (height * width));
    const y = Math.floor(site / width) % height;
    const xi = site % width;
    return value * mask.data[(b * maskH + Math.floor((y * maskH) / height)) * maskW + Math.floor((xi * maskW) / width)];
  });
  return { data, shape: x.shape };
}

const relu = (x: Map4): Map4 => ({ data: x.data.map((value) => Math.max(value, 0)), shape: x.shape });

/** timm's Bottleneck.forward in evaluation mode, written out op by op (masked after each conv and BN as SparK does). */
function bottleneckReference(x: Map4, state: Map<string, TorchTensorData>, stride: number, mask?: Map4): Map4 {
  const convBn = (input: Map4, name: string, bn: string, convStride: number, pad: number): Map4 => {
    const conv = maskReference(convReference(input.data, input.shape, state.get(`${name}.weight`)!, convStride, pad), mask);
    return maskReference(batchNormReference(conv, state, `${bn}.`), mask);
  };
  let branch = relu(convBn(x, 'conv1', 'bn1', 1, 0));
  branch = relu(convBn(branch, 'conv2', 'bn2', stride, 1)); // the stride is on the 3x3 conv
  branch = convBn(branch, 'conv3', 'bn3', 1, 0);
  const shortcut = state.has('downsample.0.weight') ? convBn(x, 'downsample.0', 'downsample.1', stride, 0) : x;
  return relu({ data: branch.data.map((value, i) => value + shortcut.data[i]), shape: branch.shape });
}

describeBackends('ResNet', () => {
  it("has timm's parameter counts at full width (ResNet-18 11,176,512; ResNet-50 23,508,032 without the classifier)", () => {
    const counts: Record<string, number> = {};
    for (const factory of [resnet18, resnet50]) {
      const model = factory({ seed: 0 });
      counts[model.name] = model.namedParameters().reduce((sum, entry) => sum + entry.variable.size, 0);
      expect(model.featureChannels).toEqual(factory === resnet18 ? [64, 128, 256, 512] : [256, 512, 1024, 2048]);
      model.dispose();
    }
    expect(counts).toEqual({ resnet18: 11_176_512, resnet50: 23_508_032 });
  });

  it('names every model by its depth (blocks per stage), with timm state names', () => {
    const factories = { resnet18, resnet34, resnet50, resnet101, resnet152, resnet200 };
    const depths: Record<string, number[]> = {};
    for (const [name, factory] of Object.entries(factories)) {
      const model: ResNet = factory({ stemWidth: 2, channels: [1, 1, 1, 1] });
      expect(model.name).toBe(name);
      depths[name] = model.layers.map((layer) => layer.length);
      if (name === 'resnet50') {
        const names = model.stateEntries().map((entry) => entry.name);
        expect(names.slice(0, 6)).toEqual([
          'conv1.weight',
          'bn1.weight',
          'bn1.bias',
          'bn1.running_mean',
          'bn1.running_var',
          'bn1.num_batches_tracked',
        ]);
        // Every stage's first block projects its shortcut (layer1: 64 → 256 channels at stride 1).
        expect(names.filter((key) => key.endsWith('downsample.0.weight'))).toEqual(
          [1, 2, 3, 4].map((stage) => `layer${stage}.0.downsample.0.weight`),
        );
        expect(names).toContain('layer4.2.conv3.weight');
      }
      model.dispose();
    }
    expect(depths).toEqual({
      resnet18: [2, 2, 2, 2],
      resnet34: [3, 4, 6, 3],
      resnet50: [3, 4, 6, 3],
      resnet101: [3, 4, 23, 3],
      resnet152: [3, 8, 36, 3],
      resnet200: [3, 24, 36, 3],
    });
  });

  it("starts every residual branch's last BN at weight 0 (timm's zero_init_last), unless asked not to", async () => {
    const model = resnet50({ stemWidth: 4, channels: [2, 2, 2, 2], seed: 0 });
    const lastNorms = model.layers.flatMap((layer) => layer.items.map((block) => (block as Bottleneck).bn3.gamma));
    for (const gamma of lastNorms) expect(Array.from(await gamma.data())).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    const firstNorm = (model.layers[0].items[0] as Bottleneck).bn1.gamma;
    expect(Array.from(await firstNorm.data())).toEqual([1, 1]);
    model.dispose();
    const plain = resnet50({ stemWidth: 4, channels: [2, 2, 2, 2], seed: 0, zeroInitLast: false });
    expect(Array.from(await (plain.layers[0].items[0] as Bottleneck).bn3.gamma.data())).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    plain.dispose();
  });

  for (const sparse of [false, true]) {
    it(`Bottleneck with stride 2 matches timm's block op by op (${sparse ? 'masked' : 'dense'}, evaluation mode)`, async () => {
      const random = new SeededRandom(21);
      const block = new Bottleneck(8, 4, { stride: 2, zeroInitLast: false, random }).eval();
      // Random BN affine parameters and running statistics, so that no normalisation is a no-op.
      for (const bn of [block.bn1, block.bn2, block.bn3, block.downsample!.bn]) {
        const channels = bn.gamma.shape[0];
        const values = (offset: number, scale: number) => tf.tensor1d(Array.from({ length: channels }, () => offset + scale * random.next()));
        for (const [variable, value] of [
          [bn.gamma, values(0.5, 1)],
          [bn.beta, values(-0.2, 0.4)],
          [bn.runningMean, values(-0.2, 0.4)],
          [bn.runningVar, values(0.5, 1)],
        ] as const) {
          variable.assign(value);
          value.dispose();
        }
      }
      const shape = [2, 8, 8, 8];
      const maskValues = { data: Float32Array.from([1, 0, 1, 1, 0, 0, 1, 0]), shape: [2, 2, 2] };
      const mask = sparse ? maskValues : undefined;
      const input = maskReference({ data: Float32Array.from({ length: 2 * 8 * 8 * 8 }, (_, i) => Math.sin(i * 0.37) * 2), shape }, mask);
      const state = await torchState(block);
      const expected = bottleneckReference(input, state, 2, mask);

      const x = tf.tensor4d(input.data, shape as [number, number, number, number]);
      // Through ActiveSites, as ResNet.forward hands the mask to its blocks.
      const sites = sparse ? ActiveSites.fromArray(maskValues.data, [2, 2, 2]) : undefined;
      const y = block.apply(x, sites);
      expect(y.shape).toEqual(expected.shape);
      await expectClose(y, expected.data, { relative: 1e-5, label: 'bottleneck' });
      sites?.dispose();
      tf.dispose([x, y]);
      block.dispose();
    });
  }
});
