import * as tf from '@tensorflow/tfjs-core';
import { RowSites } from '@sparkmim/sparse-ops';
import { describeBackends, expectClose, loadGolden, nchwToNhwc } from '@sparkmim/test-utils';
import { createConvNeXt, type ConvNeXt, type ConvNeXtConfig } from './convnext';
import { loadedGoldenBackbone, maskedGoldenInput } from './testing/golden-encoder';
import { expectRowGradientsMatchMasked } from './testing/row-gradients';

// The ConvNeXt's row path (visible sites as rows) against the official SparK encoder's outputs
// (convnext_narrow, shared/goldens/README.md) and against the masked path of the same model.
// As backbones.golden.test.ts: float32 against PyTorch's float32, measured errors far below.
const TOLERANCE: Record<string, number> = { cpu: 1e-4, wasm: 1e-4, webgpu: 5e-4 };

/** A 0/1 mask `[B, g, g]` from a fixed LCG, each sample with at least one visible and one hidden patch. */
function randomMask(batch: number, grid: number, seed: number): number[] {
  let state = seed;
  const values: number[] = [];
  for (let b = 0; b < batch; b++) {
    const item = Array.from({ length: grid * grid }, () => {
      state = (state * 48271) % 2147483647;
      return state / 2147483647 < 0.4 ? 1 : 0;
    });
    item[b % item.length] = 1;
    item[(b + 1) % item.length] = 0;
    values.push(...item);
  }
  return values;
}

/** A stream of uniform numbers in [0, 1) (Lehmer), fresh from `seed` on each call. */
function stream(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 48271) % 2147483647;
    return state / 2147483647;
  };
}

/** Two identical tiny ConvNeXts whose every parameter (biases, layer scale too) is moved off its init. */
function twins(config: ConvNeXtConfig): [ConvNeXt, ConvNeXt] {
  const models = [createConvNeXt(config), createConvNeXt(config)] as [ConvNeXt, ConvNeXt];
  for (const model of models) {
    // Zero biases and 1e-6 layer scales would hide a missing mask (pwconv2's bias) or a dropped branch.
    model.namedParameters().forEach(({ variable }, i) => {
      tf.tidy(() => variable.assign(tf.add(variable, tf.mul(0.2, tf.sin(tf.add(tf.range(0, variable.size), i).reshape(variable.shape))))));
    });
  }
  return models;
}

/** The masked image `[B, S, S, 3]` and the mask `[B, g, g, 1]` for mask values `[B, g, g]`. */
function maskedImage(maskValues: number[], batch: number, grid: number, size: number): { image: tf.Tensor4D; mask: tf.Tensor4D } {
  const mask = tf.tensor4d(maskValues, [batch, grid, grid, 1]);
  const patch = size / grid;
  const image = tf.tidy(() => {
    const pixels = tf.sin(tf.range(0, batch * size * size * 3).reshape([batch, size, size, 3]));
    const visible = tf.reshape(tf.tile(tf.reshape(mask, [batch, grid, 1, grid, 1, 1]), [1, 1, patch, 1, patch, 1]), [batch, size, size, 1]);
    return tf.mul(pixels, visible) as tf.Tensor4D;
  });
  return { image, mask };
}

describeBackends('backbones: ConvNeXt row path', ({ backend }) => {
  it('convnext_narrow: rows give the official train-mode features (enc.0..3)', async () => {
    const golden = loadGolden('convnext_narrow.safetensors');
    const model = loadedGoldenBackbone(golden) as ConvNeXt;
    const { masked, active } = maskedGoldenInput(golden);
    const sites = await RowSites.fromMask(active);
    const features = model.train().forward(masked, { active, rows: sites });
    expect(features).toHaveLength(golden.keys('enc.').length);
    for (let i = 0; i < features.length; i++) {
      const expected = nchwToNhwc(golden.get(`enc.${i}`));
      await expectClose(features[i], expected, { relative: TOLERANCE[backend] ?? 5e-4, label: `convnext_narrow rows enc.${i}` });
      expected.dispose();
    }
    tf.dispose([features, masked, active]);
    sites.dispose();
    model.dispose();
  });

  it("a tiny ConvNeXt: rows give the masked path's features and parameter gradients (drop path from a stream)", async () => {
    const [viaMask, viaRows] = twins({ depths: [1, 1, 2, 1], dims: [4, 8, 8, 8], dropPathRate: 0.4, seed: 5 });
    const batch = 2;
    const grid = 3;
    const maskValues = randomMask(batch, grid, 11);
    const { image, mask } = maskedImage(maskValues, batch, grid, 96);
    const sites = RowSites.fromArray(maskValues, [batch, grid, grid]);
    // Features first (the loss weighs them, but a wrong masked site would hide in a sum).
    const [maskFeatures, rowFeatures] = [
      viaMask.forward(image, { active: mask, random: stream(7) }),
      viaRows.forward(image, { rows: sites, random: stream(7) }),
    ];
    for (let i = 0; i < maskFeatures.length; i++) {
      await expectClose(rowFeatures[i], maskFeatures[i], { relative: 1e-5, label: `features ${i}` });
    }
    await expectRowGradientsMatchMasked(viaMask, viaRows, (model, onRows) =>
      model.forward(image, { active: mask, rows: onRows ? sites : undefined, random: stream(7) }),
    );
    tf.dispose([maskFeatures, rowFeatures, image, mask]);
    sites.dispose();
    viaMask.dispose();
    viaRows.dispose();
  });

  it("drop path on rows draws from the model's seeded stream as the masked path does, pass after pass", async () => {
    const [viaMask, viaRows] = twins({ depths: [1, 1, 1, 1], dims: [4, 4, 4, 4], dropPathRate: 0.6, seed: 9 });
    const batch = 4;
    const grid = 2;
    const maskValues = randomMask(batch, grid, 3);
    const { image, mask } = maskedImage(maskValues, batch, grid, 64);
    const sites = RowSites.fromArray(maskValues, [batch, grid, grid]);
    const undropped = viaMask.eval().forward(image, { active: mask });
    viaMask.train();
    let differs = false;
    // Two passes: each block's stream (the model's SeededRandom) must advance alike on both paths.
    for (let pass = 0; pass < 2; pass++) {
      const expected = viaMask.forward(image, { active: mask });
      const actual = viaRows.forward(image, { rows: sites });
      for (let i = 0; i < expected.length; i++) {
        await expectClose(actual[i], expected[i], { relative: 1e-5, label: `pass ${pass} features ${i}` });
        const gap = tf.tidy(() => tf.max(tf.abs(tf.sub(expected[i], undropped[i]))));
        if ((await gap.data())[0] > 1e-3) differs = true;
        gap.dispose();
      }
      tf.dispose([expected, actual]);
    }
    // The seed drops some branch: otherwise this would not test the draws.
    expect(differs).toBe(true);
    tf.dispose([undropped, image, mask]);
    sites.dispose();
    viaMask.dispose();
    viaRows.dispose();
  });
});
