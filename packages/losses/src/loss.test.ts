import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose, goldenFileNames, loadGolden, nchwToNhwc } from '@sparkmim/test-utils';
import { reconstructionComposite, sparkLoss } from './index';
import { sparkLossReference } from './reference-for-tests';

/** Deterministic values with varied magnitudes, already float32 so the reference sees what the tensor holds. */
function wave(count: number, phase: number, scale = 1): number[] {
  return Array.from({ length: count }, (_, index) => Math.fround(scale * Math.sin(index * 1.7 + phase) + 0.3 * Math.cos(index * 0.31)));
}

// Batch 2, images 4x6 with 2 channels, a 2x3 grid of 2x2 patches: distinct sizes for every axis.
const SHAPE: [number, number, number, number] = [2, 4, 6, 2];
const ELEMENTS = SHAPE.reduce((product, size) => product * size, 1);
const ACTIVE = [1, 0, 0, 1, 1, 0, /* sample 2 */ 0, 0, 1, 1, 0, 1];
const ACTIVE_SHAPE: [number, number, number, number] = [2, 2, 3, 1];

/**
 * Tolerances against the goldens. cpu: tfjs's cpu kernels accumulate each reduction in float64 and round
 * once, so results sit within float32 rounding of torch (measured: loss 1.2e-7 relative, vis 5e-9 of the
 * largest magnitude), and the brief's 1e-6 / 1e-5 hold with margin. webgpu: float32 reductions in a tree
 * order chosen per GPU, and WGSL lets division be off by 2.5 ulp and sqrt by a few ulp, over 3072 values per
 * patch and 32 patches; SwiftShader measured the same as cpu, but a real GPU may differ by several ulp per
 * step, so webgpu gets 1e-5 relative (about 80 float32 ulp of a loss near 1).
 */
function tolerance(backend: string, cpu: number): number {
  return backend === 'webgpu' ? Math.max(cpu, 1e-5) : cpu;
}

describeBackends('sparkLoss', ({ backend }) => {
  it('matches the loop reference, normalised and raw', async () => {
    const recValues = wave(ELEMENTS, 0.5);
    const imageValues = wave(ELEMENTS, 2.0, 3);
    const reconstruction = tf.tensor4d(recValues, SHAPE);
    const images = tf.tensor4d(imageValues, SHAPE);
    const active = tf.tensor4d(ACTIVE, ACTIVE_SHAPE);
    const normalised = sparkLoss(reconstruction, images, active);
    const raw = sparkLoss(reconstruction, images, active, { normalizeTarget: false });
    expect(normalised.shape).toEqual([]);
    await expectClose(normalised, [sparkLossReference(recValues, imageValues, ACTIVE, SHAPE, 2).loss], { relative: 1e-5 });
    await expectClose(raw, [sparkLossReference(recValues, imageValues, ACTIVE, SHAPE, 2, false).loss], { relative: 1e-5 });
    tf.dispose([reconstruction, images, active, normalised, raw]);
  });

  it('has the hand-derived gradient with respect to the reconstruction', async () => {
    const recValues = wave(ELEMENTS, 0.5);
    const imageValues = wave(ELEMENTS, 2.0, 3);
    const reconstruction = tf.tensor4d(recValues, SHAPE);
    const images = tf.tensor4d(imageValues, SHAPE);
    const active = tf.tensor4d(ACTIVE, ACTIVE_SHAPE);
    for (const normalizeTarget of [true, false]) {
      const gradient = tf.grad((rec: tf.Tensor) => sparkLoss(rec, images, active, { normalizeTarget }))(reconstruction);
      const expected = sparkLossReference(recValues, imageValues, ACTIVE, SHAPE, 2, normalizeTarget).gradient;
      await expectClose(gradient, expected, { relative: 1e-5, label: `gradient (normalizeTarget ${normalizeTarget})` });
      gradient.dispose();
    }
    tf.dispose([reconstruction, images, active]);
  });

  it('is 0, not NaN, when no patch is masked', async () => {
    const reconstruction = tf.ones(SHAPE);
    const images = tf.zeros(SHAPE);
    const active = tf.ones(ACTIVE_SHAPE);
    const loss = sparkLoss(reconstruction, images, active);
    expect(Array.from(await loss.data())).toEqual([0]);
    tf.dispose([reconstruction, images, active, loss]);
  });

  it('names both shapes for bad inputs', () => {
    const images = tf.zeros([2, 8, 8, 3]);
    const other = tf.zeros([2, 8, 4, 3]);
    const threeMasks = tf.zeros([3, 2, 2, 1]);
    const badGrid = tf.zeros([2, 3, 3, 1]);
    const oblong = tf.zeros([2, 2, 4, 1]);
    const tiny = tf.zeros([1, 2, 2, 1]);
    const tinyMask = tf.zeros([1, 2, 2, 1]);
    expect(() => sparkLoss(images, images, threeMasks)).toThrow(
      'sparkLoss: images [2, 8, 8, 3] and active mask [3, 2, 2, 1] have different batch sizes (2 vs 3)',
    );
    expect(() => sparkLoss(images, images, badGrid)).toThrow(
      'sparkLoss: active mask [2, 3, 3, 1] does not divide images [2, 8, 8, 3] (height 8 is not a multiple of 3, width 8 is not a multiple of 3)',
    );
    expect(() => sparkLoss(images, images, oblong)).toThrow(
      "sparkLoss: active mask [2, 2, 4, 1] cuts images [2, 8, 8, 3] into 4x2 patches; SparK's patches are square",
    );
    expect(() => sparkLoss(other, images, badGrid)).toThrow(
      'sparkLoss: reconstruction [2, 8, 4, 3] and images [2, 8, 8, 3] must have the same shape',
    );
    expect(() => sparkLoss(tiny, tiny, tinyMask)).toThrow(
      'sparkLoss: normalizeTarget needs at least 2 values per patch for an unbiased variance, got 1 (images [1, 2, 2, 1])',
    );
    expect(() => reconstructionComposite(images, images, threeMasks)).toThrow(
      'reconstructionComposite: images [2, 8, 8, 3] and active mask [3, 2, 2, 1] have different batch sizes (2 vs 3)',
    );
    tf.dispose([images, other, threeMasks, badGrid, oblong, tiny, tinyMask]);
  });

  for (const fileName of goldenFileNames()) {
    it(`reproduces the official loss from rec, input and active (${fileName})`, async () => {
      const golden = loadGolden(fileName);
      const expectedLoss = golden.get('loss').data[0];
      const loss = tf.tidy(() => sparkLoss(nchwToNhwc(golden.get('rec')), nchwToNhwc(golden.get('input')), nchwToNhwc(golden.get('active'))));
      await expectClose(loss, [expectedLoss], { relative: tolerance(backend, 1e-6), label: `${fileName} loss` });
      loss.dispose();
    });
  }
});

describeBackends('reconstructionComposite', ({ backend }) => {
  it('matches the loop reference', async () => {
    const recValues = wave(ELEMENTS, 0.5);
    const imageValues = wave(ELEMENTS, 2.0, 3);
    const reconstruction = tf.tensor4d(recValues, SHAPE);
    const images = tf.tensor4d(imageValues, SHAPE);
    const active = tf.tensor4d(ACTIVE, ACTIVE_SHAPE);
    // Each pixel's patch: (b, row / 2, column / 2) in the 2x3 grid.
    const visibleAt = (index: number): number => {
      const pixel = Math.floor(index / SHAPE[3]);
      const column = pixel % SHAPE[2];
      const row = Math.floor(pixel / SHAPE[2]) % SHAPE[1];
      const b = Math.floor(pixel / (SHAPE[1] * SHAPE[2]));
      return ACTIVE[(b * 2 + Math.floor(row / 2)) * 3 + Math.floor(column / 2)];
    };
    for (const normalizeTarget of [true, false]) {
      const result = reconstructionComposite(reconstruction, images, active, { normalizeTarget });
      const pixels = sparkLossReference(recValues, imageValues, ACTIVE, SHAPE, 2, normalizeTarget).pixels;
      const label = `normalizeTarget ${normalizeTarget}`;
      await expectClose(result.input, imageValues, { relative: 0, label: `input, ${label}` });
      await expectClose(
        result.masked,
        imageValues.map((value, index) => value * visibleAt(index)),
        { relative: 0, label: `masked, ${label}` },
      );
      await expectClose(result.reconstruction, pixels, { relative: 1e-6, label: `reconstruction, ${label}` });
      await expectClose(
        result.recOrInput,
        imageValues.map((value, index) => (visibleAt(index) ? value : pixels[index])),
        { relative: 1e-6, label: `recOrInput, ${label}` },
      );
      expect(result.recOrInput.shape).toEqual(SHAPE);
      tf.dispose(Object.values(result));
    }
    tf.dispose([reconstruction, images, active]);
  });

  for (const fileName of goldenFileNames()) {
    it(`reproduces the official vis pictures (${fileName})`, async () => {
      const golden = loadGolden(fileName);
      const [rec, input, active] = ['rec', 'input', 'active'].map((key) => nchwToNhwc(golden.get(key)));
      const result = reconstructionComposite(rec, input, active);
      const expected = ['vis.inp', 'vis.masked', 'vis.rec_or_inp'].map((key) => nchwToNhwc(golden.get(key)));
      await expectClose(result.input, expected[0], { relative: 0, label: `${fileName} vis.inp` });
      await expectClose(result.masked, expected[1], { relative: 0, label: `${fileName} vis.masked` });
      const relative = tolerance(backend, 1e-5);
      await expectClose(result.recOrInput, expected[2], { relative, label: `${fileName} vis.rec_or_inp` });
      // A mask of only ones would make the rec_or_inp comparison trivial (it would equal the input).
      expect(Array.from(golden.get('active').data)).toContain(0);
      tf.dispose([rec, input, active, ...expected, ...Object.values(result)]);
    });
  }
});
