import * as tf from '@tensorflow/tfjs-core';
import { loadTorchState, type TorchTensorData } from '@sparkmim/sparse-ops';
import {
  describeBackends,
  goldenErrorReport,
  goldenFileNames,
  loadGolden,
  maxAbs,
  nchwToNhwc,
  nchwValues,
  type GoldenFile,
} from '@sparkmim/test-utils';
import { createDensifyLayers, densifyConfigFromState, LightDecoder, lightDecoderConfigFromState } from './index';

/** Worst relative error per label, printed when SPARKMIM_REPORT_ERRORS is set. */
const { expectGoldenClose } = goldenErrorReport();

/** The file's `param.*` entries under their official names: the model's initial state dict. */
function initialState(golden: GoldenFile): Map<string, TorchTensorData> {
  const state = new Map<string, TorchTensorData>();
  for (const key of golden.keys('param.')) state.set(key.slice('param.'.length), golden.get(key));
  return state;
}

/** The running statistics of `after_fwd.<prefix>*` against a module's state (`<prefix>` stripped there). */
async function expectRunningStats(
  golden: GoldenFile,
  entries: { name: string; variable: tf.Variable }[],
  prefix: string,
  relative: number,
  backend: string,
): Promise<number> {
  let checked = 0;
  for (const key of golden.keys(`after_fwd.${prefix}`)) {
    const name = key.slice(`after_fwd.${prefix}`.length);
    const entry = entries.find((candidate) => candidate.name === name);
    if (!entry) throw new Error(`no state entry '${name}' for ${key}`);
    await expectGoldenClose(entry.variable, golden.get(key).data, relative, `${backend} ${golden.name} ${key}`);
    checked++;
  }
  return checked;
}

// Tolerances, relative to the largest magnitude of each expected tensor. cpu: the brief's 1e-4 (measured
// worst: 1.6e-6 for rec, 1.3e-6 for dec_in). webgpu (Dawn; SwiftShader here): the same 1e-4. Its convs
// sum in a different (tiled) order than PyTorch's CPU kernels; measured worst is 1.5e-6 on SwiftShader, so
// 1e-4 leaves ~60x room for hardware GPUs' own summation order and fused multiply-adds, while a layout or
// semantic error (a flipped kernel, a shifted padding, a wrong variance) shows up above 1e-2.
const TOLERANCE: Record<string, number> = { cpu: 1e-4, wasm: 1e-4, webgpu: 1e-4 };

describeBackends('LightDecoder on the goldens', ({ backend }) => {
  for (const fileName of goldenFileNames()) {
    it(`${fileName}: dec_in.* → rec in training mode, and the running statistics after it`, async () => {
      const golden = loadGolden(fileName);
      const state = initialState(golden);
      const decoder = new LightDecoder({ ...lightDecoderConfigFromState(state, 'dense_decoder.'), seed: 0 });
      loadTorchState(decoder, state, { prefix: 'dense_decoder.' });
      const inputs = golden.keys('dec_in.').map((key) => nchwToNhwc(golden.get(key)));
      const rec = decoder.apply(inputs);
      const expected = golden.get('rec');
      expect([rec.shape[0], rec.shape[3], rec.shape[1], rec.shape[2]]).toEqual(expected.shape);
      const relative = TOLERANCE[backend];
      await expectGoldenClose(await nchwValues(rec), expected.data, relative, `${backend} ${fileName} rec`);
      const stats = await expectRunningStats(golden, decoder.stateEntries(), 'dense_decoder.', relative, backend);
      expect(stats).toBe(6 * decoder.blocks.length);
      tf.dispose([rec, ...inputs]);
      decoder.dispose();
    });

    it(`${fileName}: enc.* (+ active) → dec_in.* in training mode`, async () => {
      const golden = loadGolden(fileName);
      const state = initialState(golden);
      const config = densifyConfigFromState(state);
      const layers = createDensifyLayers({ ...config, seed: 0 });
      loadTorchState(layers.norms, state, { prefix: 'densify_norms.' });
      loadTorchState(layers.projs, state, { prefix: 'densify_projs.' });
      loadTorchState(layers.maskTokens, state, { prefix: 'mask_tokens.' });
      // enc.* run largest map first, as the encoder returns them; densify takes the smallest first.
      const features = golden
        .keys('enc.')
        .map((key) => nchwToNhwc(golden.get(key)))
        .reverse();
      const active = nchwToNhwc(golden.get('active'));
      const dense = layers.apply(features, active);
      const relative = TOLERANCE[backend];
      for (const [i, level] of dense.entries()) {
        const expected = golden.get(`dec_in.${i}`);
        await expectGoldenClose(await nchwValues(level), expected.data, relative, `${backend} ${fileName} dec_in.${i}`);
      }
      const normEntries = layers.norms.stateEntries();
      const stats = await expectRunningStats(golden, normEntries, 'densify_norms.', relative, backend);
      expect(stats).toBe(config.norm === 'bn' ? 3 * layers.levels : 0);
      tf.dispose([...dense, ...features, active]);
      layers.dispose();
    });

    it(`${fileName}: derives the architecture the file was made with`, () => {
      const golden = loadGolden(fileName);
      const state = initialState(golden);
      const decoder = new LightDecoder({ ...lightDecoderConfigFromState(state, 'dense_decoder.'), seed: 0 });
      const layers = createDensifyLayers({ ...densifyConfigFromState(state), seed: 0 });
      const names = [
        ...decoder.stateEntries('dense_decoder.'),
        ...layers.norms.stateEntries('densify_norms.'),
        ...layers.projs.stateEntries('densify_projs.'),
        ...layers.maskTokens.stateEntries('mask_tokens.'),
      ].map((entry) => entry.name);
      const official = [...state.keys()].filter((key) => !key.startsWith('sparse_encoder.'));
      expect([...names].sort()).toEqual(official.sort());
      // Nothing in these goldens is so small that the relative bound would be vacuous.
      expect(maxAbs(golden.get('rec').data)).toBeGreaterThan(0.1);
      decoder.dispose();
      layers.dispose();
    });
  }
});
