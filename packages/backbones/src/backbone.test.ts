import * as tf from '@tensorflow/tfjs-core';
import { ActiveSites } from '@sparkmim/sparse-ops';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { checkBackboneInput, createConvNeXt, createResNet, createTinyConvNet, type Backbone } from './index';

// The Backbone contract, checked the same way for every family (and for the custom-convnet example).
// Small widths and 64x64 images keep these fast on the cpu and SwiftShader backends.
interface Case {
  label: string;
  kind: Backbone['kind'];
  build: (options: { seed: number; dropPathRate?: number }) => Backbone;
}

const CASES: Case[] = [
  {
    label: 'ResNet (basic blocks)',
    kind: 'resnet',
    // zeroInitLast off: with it every residual branch starts as a no-op, which would hide drop path.
    build: ({ seed, dropPathRate }) =>
      createResNet({ depths: [1, 2, 1, 1], block: 'basic', stemWidth: 8, channels: [8, 8, 16, 16], zeroInitLast: false, seed, dropPathRate }),
  },
  {
    label: 'ResNet (bottleneck blocks)',
    kind: 'resnet',
    build: ({ seed, dropPathRate }) =>
      createResNet({ depths: [1, 1, 2, 1], block: 'bottleneck', stemWidth: 8, channels: [2, 4, 4, 8], zeroInitLast: false, seed, dropPathRate }),
  },
  {
    label: 'ConvNeXt',
    kind: 'convnext',
    // Layer scale 0.5 rather than 1e-6, so that the blocks' branches matter.
    build: ({ seed, dropPathRate }) => createConvNeXt({ depths: [1, 1, 2, 1], dims: [4, 8, 8, 16], layerScaleInit: 0.5, seed, dropPathRate }),
  },
  {
    label: 'TinyConvNet (custom example)',
    kind: 'custom',
    build: ({ seed }) => createTinyConvNet({ channels: [4, 8, 8, 16], seed }),
  },
];

const BATCH = 2;
const SIZE = 64;

function images(seed: number): tf.Tensor4D {
  return tf.randomNormal([BATCH, SIZE, SIZE, 3], 0, 1, 'float32', seed) as tf.Tensor4D;
}

/** `[2, 2, 2, 1]` at stride 32: sample 0 keeps sites 0 and 3, sample 1 keeps site 1. */
function patchMask(): tf.Tensor4D {
  return tf.tensor4d([1, 0, 0, 1, 0, 1, 0, 0], [BATCH, 2, 2, 1]);
}

/** SparK's masked input: pixels of masked patches set to zero. */
function maskImages(x: tf.Tensor4D, active: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [batch, height, width] = x.shape;
    const repeat = tf.ones([1, 1, height / active.shape[1], 1, width / active.shape[2], 1]);
    const upsampled = tf.reshape(tf.mul(tf.reshape(active, [batch, active.shape[1], 1, active.shape[2], 1, 1]), repeat), [batch, height, width, 1]);
    return tf.mul(x, upsampled);
  });
}

async function expectAllClose(actual: tf.Tensor[], expected: tf.Tensor[], relative: number, label: string): Promise<void> {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < actual.length; i++) await expectClose(actual[i], expected[i], { relative, label: `${label} ${i}` });
}

describeBackends('Backbone contract', () => {
  for (const { label, kind, build } of CASES) {
    describe(label, () => {
      it('returns four maps at strides 4, 8, 16, 32 with featureChannels channels, zero at masked sites', async () => {
        const backbone = build({ seed: 1 });
        expect(backbone.kind).toBe(kind);
        expect(backbone.downsampleRatio).toBe(32);
        const active = patchMask();
        const x = images(2);
        const masked = maskImages(x, active);
        const features = backbone.forward(masked, { active });
        expect(features.map((map) => map.shape)).toEqual(
          [4, 8, 16, 32].map((stride, i) => [BATCH, SIZE / stride, SIZE / stride, backbone.featureChannels[i]]),
        );
        for (const map of features) {
          const [, height, width, channels] = map.shape;
          const values = await map.data();
          const maskValues = await active.data();
          const cell = height / 2;
          let maskedNonZero = 0;
          let activeNonZero = 0;
          for (let b = 0; b < BATCH; b++) {
            for (let y = 0; y < height; y++) {
              for (let xi = 0; xi < width; xi++) {
                const visible = maskValues[(b * 2 + Math.floor(y / cell)) * 2 + Math.floor(xi / cell)] === 1;
                for (let c = 0; c < channels; c++) {
                  // -0 counts as zero (a GPU may multiply a negative value by the mask's 0).
                  const nonZero = values[((b * height + y) * width + xi) * channels + c] !== 0;
                  if (nonZero && visible) activeNonZero++;
                  if (nonZero && !visible) maskedNonZero++;
                }
              }
            }
          }
          expect({ map: map.shape, maskedNonZero }).toEqual({ map: map.shape, maskedNonZero: 0 });
          expect(activeNonZero).toBeGreaterThan(0);
        }
        tf.dispose([active, x, masked, features]);
        backbone.dispose();
      });

      it('gives the same features with an all-ones mask as with no mask (dense), in training and in evaluation', async () => {
        const sparse = build({ seed: 3 });
        const dense = build({ seed: 3 });
        const x = images(4);
        const allOnes = tf.ones([BATCH, 2, 2, 1]) as tf.Tensor4D;
        const sparseFeatures = sparse.train().forward(x, { active: allOnes });
        const denseFeatures = dense.train().forward(x);
        await expectAllClose(sparseFeatures, denseFeatures, 1e-5, 'train-mode features');
        // The batch statistics that went into the running averages agree as well.
        const denseBuffers = dense.namedBuffers();
        const sparseBuffers = sparse.namedBuffers();
        await expectAllClose(
          sparseBuffers.map((entry) => entry.variable),
          denseBuffers.map((entry) => entry.variable),
          1e-5,
          'buffers',
        );
        // Also through ActiveSites, the form a caller passes to reuse the derived masks.
        const sites = new ActiveSites(allOnes);
        const sparseEval = sparse.eval().forward(x, { active: sites });
        const denseEval = dense.eval().forward(x);
        await expectAllClose(sparseEval, denseEval, 1e-5, 'eval-mode features');
        sites.dispose();
        tf.dispose([x, allOnes, sparseFeatures, denseFeatures, sparseEval, denseEval]);
        sparse.dispose();
        dense.dispose();
      });

      it('is reproducible from a seed', async () => {
        const first = build({ seed: 5 });
        const second = build({ seed: 5 });
        const other = build({ seed: 6 });
        const [a, b, c] = [first, second, other].map((model) => model.namedParameters());
        expect(a.length).toBeGreaterThan(0);
        for (let i = 0; i < a.length; i++) {
          expect(Array.from(await a[i].variable.data())).toEqual(Array.from(await b[i].variable.data()));
        }
        const stem = a.find((entry) => entry.variable.rank === 4)!;
        const otherStem = c.find((entry) => entry.name === stem.name)!;
        expect(Array.from(await stem.variable.data())).not.toEqual(Array.from(await otherStem.variable.data()));
        first.dispose();
        second.dispose();
        other.dispose();
      });

      it('trains: every parameter gets a finite gradient through the masked forward', async () => {
        const backbone = build({ seed: 7 });
        const active = patchMask();
        const x = images(8);
        const masked = maskImages(x, active);
        const parameters = backbone.namedParameters();
        const { value, grads } = tf.variableGrads(
          () => tf.tidy(() => tf.addN(backbone.forward(masked, { active }).map((map) => tf.mean(tf.square(map))))) as tf.Scalar,
          parameters.map((entry) => entry.variable),
        );
        expect(Number.isFinite((await value.data())[0])).toBe(true);
        const norms = tf.tidy(() => tf.stack(parameters.map((entry) => tf.norm(grads[entry.variable.name]))));
        const normValues = await norms.data();
        normValues.forEach((norm, i) =>
          expect({ name: parameters[i].name, finite: Number.isFinite(norm) }).toEqual({ name: parameters[i].name, finite: true }),
        );
        expect(normValues[0]).toBeGreaterThan(0); // the stem conv
        tf.dispose([active, x, masked, value, norms, grads]);
        backbone.dispose();
      });

      it('rejects an image whose size is not a multiple of the downsample ratio (naming both), and a mask that does not fit', () => {
        const backbone = build({ seed: 9 });
        const bad = tf.zeros([1, 100, 64, 3]) as tf.Tensor4D;
        expect(() => backbone.forward(bad)).toThrow(
          /input \[1, 100, 64, 3\] has height 100, which is not a multiple of the downsample ratio 32 \(use 96 or 128\)/,
        );
        const narrow = tf.zeros([1, 64, 48, 3]) as tf.Tensor4D;
        expect(() => backbone.forward(narrow)).toThrow(/has width 48, which is not a multiple of the downsample ratio 32 \(use 32 or 64\)/);
        const gray = tf.zeros([1, 64, 64, 1]) as tf.Tensor4D;
        expect(() => backbone.forward(gray)).toThrow(/expected 3 input channels, got \[1, 64, 64, 1\] with 1/);
        const x = tf.zeros([2, 64, 64, 3]) as tf.Tensor4D;
        const finerMask = tf.ones([2, 4, 4, 1]) as tf.Tensor4D;
        expect(() => backbone.forward(x, { active: finerMask })).toThrow(
          /active mask \[2, 4, 4, 1\] does not fit input \[2, 64, 64, 3\]: expected \[2, h, w, 1\] with h dividing 2 and w dividing 2 \(the 2x2 map at stride 32\)/,
        );
        const otherBatch = tf.ones([1, 2, 2, 1]) as tf.Tensor4D;
        expect(() => backbone.forward(x, { active: otherBatch })).toThrow(/active mask \[1, 2, 2, 1\] does not fit input \[2, 64, 64, 3\]/);
        tf.dispose([bad, narrow, gray, x, finerMask, otherBatch]);
        backbone.dispose();
      });
    });
  }

  describe('drop path', () => {
    for (const { label, build } of CASES.filter((entry) => entry.kind !== 'custom')) {
      it(`${label}: only acts in training, per sample, reproducibly from the seed`, async () => {
        const plain = build({ seed: 11 });
        const dropping = build({ seed: 11, dropPathRate: 0.5 });
        const droppingAgain = build({ seed: 11, dropPathRate: 0.5 });
        const x = images(12);
        // Evaluation: identity, so the same weights give the same features.
        const plainEval = plain.eval().forward(x);
        const droppingEval = dropping.eval().forward(x);
        await expectAllClose(droppingEval, plainEval, 1e-6, 'eval with drop path');
        // Training: the same seed drops the same samples, and something is dropped at rate 0.5.
        const trainA = dropping.train().forward(x);
        const trainB = droppingAgain.train().forward(x);
        const trainPlain = plain.train().forward(x);
        await expectAllClose(trainA, trainB, 0, 'seeded drop path');
        const last = trainA.length - 1;
        const difference = tf.tidy(() => tf.max(tf.abs(tf.sub(trainA[last], trainPlain[last]))));
        expect((await difference.data())[0]).toBeGreaterThan(1e-3);
        tf.dispose([x, plainEval, droppingEval, trainA, trainB, trainPlain, difference]);
        plain.dispose();
        dropping.dispose();
        droppingAgain.dispose();
      });
    }
  });

  it('checkBackboneInput rejects a non-batch tensor', () => {
    const image = tf.zeros([64, 64, 3]);
    expect(() => checkBackboneInput(image, 32, 'myNet.forward')).toThrow('myNet.forward: expected an image batch [B, H, W, 3], got [64, 64, 3]');
    const tiny = tf.zeros([1, 16, 32, 3]);
    expect(() => checkBackboneInput(tiny, 32, 'myNet.forward')).toThrow('has height 16, which is not a multiple of the downsample ratio 32 (use 32)');
    tf.dispose([image, tiny]);
  });
});
