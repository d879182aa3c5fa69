// Test support for the specs that check a backbone against the official SparK encoder's outputs
// (shared/goldens/README.md); not a spec itself.
import type * as tf from '@tensorflow/tfjs-core';
import { loadTorchState, type TorchTensorData } from '@sparkmim/sparse-ops';
import { nchwToNhwc, type GoldenFile } from '@sparkmim/test-utils';
import type { Backbone } from '../backbone';
import { backboneConfigFromState, createBackboneFromConfig } from '../registry';

/** Where the encoder's keys sit in a SparK state dict. */
export const ENCODER_PREFIX = 'sparse_encoder.sp_cnn.';

/**
 * The golden backbone: its architecture read off the file's `param.*` shapes (so a new golden is checked
 * without code changes), loaded with that initial state.
 */
export function loadedGoldenBackbone(golden: GoldenFile): Backbone {
  const state = new Map<string, TorchTensorData>();
  for (const key of golden.keys('param.')) state.set(key.slice('param.'.length), golden.get(key));
  const backbone = createBackboneFromConfig(backboneConfigFromState(state, { prefix: ENCODER_PREFIX }));
  loadTorchState(backbone, state, { prefix: ENCODER_PREFIX });
  return backbone;
}

/**
 * `input * upsampled active` as SparK feeds the encoder, NHWC, and the mask `[B, f, f, 1]`; the upsampling
 * is written out as loops here so the tests do not rely on the code under test.
 */
export function maskedGoldenInput(golden: GoldenFile): { masked: tf.Tensor4D; active: tf.Tensor4D } {
  const input = golden.get('input');
  const active = golden.get('active');
  const [batch, channels, height, width] = input.shape;
  const [, , maskH, maskW] = active.shape;
  const masked = new Float32Array(input.data.length);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const keep = active.data[(b * maskH + Math.floor((y * maskH) / height)) * maskW + Math.floor((x * maskW) / width)];
          const index = ((b * channels + c) * height + y) * width + x;
          masked[index] = input.data[index] * keep;
        }
      }
    }
  }
  return {
    masked: nchwToNhwc({ shape: input.shape, data: masked }),
    active: nchwToNhwc(active),
  };
}
