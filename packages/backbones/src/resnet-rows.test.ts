import * as tf from '@tensorflow/tfjs-core';
import { RowSites } from '@sparkmim/sparse-ops';
import { describeBackends, expectClose, goldenFileNames, loadGolden, nchwToNhwc, type GoldenFile } from '@sparkmim/test-utils';
import { createResNet, type ResNet } from './resnet';
import { ENCODER_PREFIX, loadedGoldenBackbone, maskedGoldenInput } from './testing/golden-encoder';
import { expectRowGradientsMatchMasked } from './testing/row-gradients';

// The ResNet's row path (visible sites as rows) against the official SparK encoder's outputs and against
// the masked path of the same model, on the ResNet goldens (shared/goldens/README.md).
// As backbones.golden.test.ts: float32 against PyTorch's float32, measured errors far below.
const TOLERANCE: Record<string, number> = { cpu: 1e-4, wasm: 1e-4, webgpu: 5e-4 };

/** The input masked as SparK feeds the encoder, the mask, and its rows. */
function inputs(golden: GoldenFile): { masked: tf.Tensor4D; active: tf.Tensor4D; sites: RowSites } {
  const active = golden.get('active');
  const [batch, , maskH, maskW] = active.shape;
  return { ...maskedGoldenInput(golden), sites: RowSites.fromArray(active.data, [batch, maskH, maskW]) };
}

async function expectFeatures(golden: GoldenFile, features: tf.Tensor4D[], key: 'enc' | 'enc_eval', relative: number): Promise<void> {
  expect(features).toHaveLength(golden.keys(`${key}.`).length);
  for (let i = 0; i < features.length; i++) {
    const expected = nchwToNhwc(golden.get(`${key}.${i}`));
    await expectClose(features[i], expected, { relative, label: `${golden.name} rows ${key}.${i}` });
    expected.dispose();
  }
}

const resnetGoldens = goldenFileNames().filter((file) => file.startsWith('resnet'));

describeBackends('backbones: ResNet row path', ({ backend }) => {
  const relative = TOLERANCE[backend] ?? 5e-4;

  for (const file of resnetGoldens) {
    it(`${file}: rows give the official train-mode features and running statistics`, async () => {
      const golden = loadGolden(file);
      const model = loadedGoldenBackbone(golden) as ResNet;
      const { masked, active, sites } = inputs(golden);
      const features = model.train().forward(masked, { active, rows: sites });
      await expectFeatures(golden, features, 'enc', relative);
      for (const { name, variable } of model.namedBuffers(ENCODER_PREFIX)) {
        await expectClose(variable, golden.get(`after_fwd.${name}`).data, { relative, label: `${file} rows after_fwd.${name}` });
      }
      tf.dispose([features, masked, active]);
      sites.dispose();
      model.dispose();
    });
  }

  // Gradients on a tiny model (the goldens' 128x128 would take minutes on cpu): bottleneck blocks (1x1, 3x3
  // strided, 1x1 shortcuts; basic blocks are checked in sparse-ops' rows.test.ts), drop path drawing from a
  // stream, against the masked path. Eval mode uses rowBatchNorm with running statistics, checked there too.
  for (const block of ['bottleneck'] as const) {
    it(`${block} blocks: rows give the masked path's features, parameter gradients and running statistics`, async () => {
      const config = { depths: [1, 1, 1, 1], block, stemWidth: 4, channels: [4, 4, 8, 8], dropPathRate: 0.3, seed: 3 };
      const viaMask = createResNet(config);
      const viaRows = createResNet(config);
      const batch = 2;
      const maskValues = [1, 0, 0, 1, 0, 1, 1, 1];
      const maskTensor = tf.tensor4d(maskValues, [batch, 2, 2, 1]);
      const sites = RowSites.fromArray(maskValues, [batch, 2, 2]);
      const image = tf.tidy(() => {
        const pixels = tf.sin(tf.range(0, batch * 64 * 64 * 3).reshape([batch, 64, 64, 3]));
        const visible = tf.reshape(tf.tile(tf.reshape(maskTensor, [batch, 2, 1, 2, 1, 1]), [1, 1, 32, 1, 32, 1]), [batch, 64, 64, 1]);
        return tf.mul(pixels, visible) as tf.Tensor4D;
      });
      const stream = () => {
        let state = 7;
        return () => {
          state = (state * 48271) % 2147483647;
          return state / 2147483647;
        };
      };
      await expectRowGradientsMatchMasked(viaMask, viaRows, (model, onRows) =>
        model.forward(image, { active: maskTensor, rows: onRows ? sites : undefined, random: stream() }),
      );
      const maskBuffers = viaMask.namedBuffers();
      const rowBuffers = viaRows.namedBuffers();
      for (let i = 0; i < maskBuffers.length; i++) {
        await expectClose(rowBuffers[i].variable, maskBuffers[i].variable, { relative: 1e-5, label: rowBuffers[i].name });
      }
      tf.dispose([image, maskTensor]);
      sites.dispose();
      viaMask.dispose();
      viaRows.dispose();
    });
  }
});
