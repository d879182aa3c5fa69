import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, goldenErrorReport, goldenFileNames, loadGolden, nchwToNhwc, type GoldenFile } from '@sparkmim/test-utils';
import { ENCODER_PREFIX, loadedGoldenBackbone, maskedGoldenInput } from './testing/golden-encoder';

// The official SparK encoder's outputs (see shared/goldens/README.md). The architecture of every case is
// read off its `param.*` keys and shapes, so a new golden file is checked without code changes.

// Tolerances relative to each tensor's largest magnitude. cpu: float32 throughout, the same math as
// PyTorch up to summation order: 1e-4 (measured: at most 4.3e-6). webgpu: 5e-4. SwiftShader (CI) measured
// at most 4.2e-6 like cpu, but hardware GPUs tile and accumulate convolutions and reductions in other
// orders and WGSL lets exp / inverseSqrt / division be a few ULP off, errors that compound over the
// network's depth; 5e-4 leaves room for that and still fails on any wrong op, layout or mask (O(1e-1)).
const TOLERANCE: Record<string, number> = { cpu: 1e-4, wasm: 1e-4, webgpu: 5e-4 };

/** Worst relative error per label, printed when SPARKMIM_REPORT_ERRORS is set. */
const { expectGoldenClose } = goldenErrorReport();

async function expectFeatures(
  golden: GoldenFile,
  features: tf.Tensor4D[],
  key: 'enc' | 'enc_eval',
  relative: number,
  backend: string,
): Promise<void> {
  expect(features).toHaveLength(golden.keys(`${key}.`).length);
  for (let i = 0; i < features.length; i++) {
    const expected = nchwToNhwc(golden.get(`${key}.${i}`));
    expect(features[i].shape).toEqual(expected.shape);
    await expectGoldenClose(features[i], await expected.data(), relative, `${backend} ${golden.name} ${key}.${i}`);
    expected.dispose();
  }
}

describeBackends('backbones: official SparK encoder goldens', ({ backend }) => {
  const relative = TOLERANCE[backend] ?? 5e-4;

  for (const file of goldenFileNames()) {
    it(`${file}: train-mode sparse features match enc.0..3 and BN running statistics match after_fwd.*`, async () => {
      const golden = loadGolden(file);
      const backbone = loadedGoldenBackbone(golden);
      const { masked, active } = maskedGoldenInput(golden);
      const features = backbone.train().forward(masked, { active });
      await expectFeatures(golden, features, 'enc', relative, backend);

      // Every encoder buffer is in after_fwd (ConvNeXt has none: layer norms keep no statistics).
      const buffers = backbone.namedBuffers(ENCODER_PREFIX);
      const goldenKeys = golden.keys(`after_fwd.${ENCODER_PREFIX}`).map((key) => key.slice('after_fwd.'.length));
      expect(buffers.map((entry) => entry.name).sort()).toEqual(goldenKeys);
      for (const { name, variable } of buffers) {
        await expectGoldenClose(variable, golden.get(`after_fwd.${name}`).data, relative, `${backend} ${file} after_fwd (running stats)`);
      }
      tf.dispose([features, masked, active]);
      backbone.dispose();
    });

    it(`${file}: eval-mode sparse features (running statistics) match enc_eval.0..3`, async () => {
      const golden = loadGolden(file);
      const backbone = loadedGoldenBackbone(golden);
      const { masked, active } = maskedGoldenInput(golden);
      const features = backbone.eval().forward(masked, { active });
      await expectFeatures(golden, features, 'enc_eval', relative, backend);
      tf.dispose([features, masked, active]);
      backbone.dispose();
    });
  }
});
