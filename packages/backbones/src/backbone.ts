import type * as tf from '@tensorflow/tfjs-core';
import { ActiveSites, type ActiveMask, type Module } from '@sparkmim/sparse-ops';

/**
 * The family a backbone belongs to. The SparK model picks its densify norm from it: batch norm for
 * ResNets (and custom convnets), layer norm for ConvNeXts, as the official code does.
 */
export type BackboneKind = 'resnet' | 'convnext' | 'custom';

/** What a backbone's forward pass sees besides the image. */
export interface BackboneForwardOptions {
  /**
   * `[B, h, w, 1]` (or an {@link ActiveSites}), 1 = visible. With a mask every conv, pooling and norm is the
   * masked op (sparse pre-training); without one they are the ordinary ops (dense use, no extra cost).
   * The image must already be zero at masked pixels, as SparK masks it before the encoder.
   */
  active?: ActiveMask;
  /**
   * Uniform numbers in [0, 1) for the training-time draws (drop path: one per sample and block with a rate
   * above 0, in forward order). Default: the backbone's own seeded stream. The trainer passes the run's
   * stream, whose position checkpoints save, so a resumed run drops the same paths as one never stopped.
   */
  random?: () => number;
}

/**
 * What SparK needs from a convnet (the official `get_downsample_ratio`, `get_feature_map_channels` and
 * `forward(x, hierarchical=True)`): four feature maps, from the largest (stride 4) to the smallest
 * (stride `downsampleRatio`, 32), in dense or sparse mode with the same weights. Parameters and buffers
 * carry the official PyTorch names (what follows `sparse_encoder.sp_cnn.` in a SparK checkpoint), so
 * `loadTorchState` / `torchState` exchange weights with PyTorch.
 *
 * Implement it by extending sparse-ops' `Module` and building from its sparse layers (see
 * `createTinyConvNet` for a complete example).
 *
 * @example
 * const backbone: Backbone = resnet50();
 * const [stride4, stride8, stride16, stride32] = backbone.forward(images, { active });
 * backbone.featureChannels; // [256, 512, 1024, 2048]
 */
export interface Backbone extends Module {
  /** Which family: decides SparK's densify norm (batch norm unless 'convnext'). */
  readonly kind: BackboneKind;
  /** Total stride of the last feature map (32 for every model here). */
  readonly downsampleRatio: number;
  /** Channels of the four feature maps, largest map first. */
  readonly featureChannels: readonly number[];
  /**
   * `x: [B, H, W, 3]` with H and W multiples of `downsampleRatio` → four maps `[B, H/4, W/4, C0]` …
   * `[B, H/32, W/32, C3]`; zero at masked sites when `active` is given. The caller owns the results.
   */
  forward(x: tf.Tensor4D, options?: BackboneForwardOptions): tf.Tensor4D[];
}

/**
 * Throws a clear error unless `x` is `[B, H, W, channels]` with H and W multiples of `downsampleRatio`,
 * and, when a mask is given, unless it is `[B, h, w, 1]` with h and w dividing the coarsest map
 * (`H / downsampleRatio` x `W / downsampleRatio`): SparK masks whole patches of the last feature map.
 *
 * @example
 * checkBackboneInput(images, 32, 'resnet50.forward'); // images [2, 224, 200, 3] → error naming width 200
 * checkBackboneInput(images, 32, 'resnet50.forward', { active }); // also checks the mask
 */
export function checkBackboneInput(
  x: tf.Tensor,
  downsampleRatio: number,
  caller: string,
  { channels = 3, active }: { channels?: number; active?: ActiveMask } = {},
): void {
  if (x.rank !== 4) throw new Error(`${caller}: expected an image batch [B, H, W, ${channels}], got [${x.shape.join(', ')}]`);
  const [batch, height, width, inChannels] = x.shape;
  if (inChannels !== channels) {
    throw new Error(`${caller}: expected ${channels} input channels, got [${x.shape.join(', ')}] with ${inChannels}`);
  }
  for (const [axis, size] of [
    ['height', height],
    ['width', width],
  ] as const) {
    if (size > 0 && size % downsampleRatio === 0) continue;
    const lower = Math.floor(size / downsampleRatio) * downsampleRatio;
    const upper = lower + downsampleRatio;
    const suggestion = lower > 0 ? `${lower} or ${upper}` : `${upper}`;
    throw new Error(
      `${caller}: input [${x.shape.join(', ')}] has ${axis} ${size}, which is not a multiple of the downsample ratio ${downsampleRatio} (use ${suggestion})`,
    );
  }
  if (!active) return;
  const mask = active instanceof ActiveSites ? active.base : active;
  const [coarsestH, coarsestW] = [height / downsampleRatio, width / downsampleRatio];
  const fits =
    mask.rank === 4 && mask.shape[0] === batch && mask.shape[3] === 1 && coarsestH % mask.shape[1] === 0 && coarsestW % mask.shape[2] === 0;
  if (!fits) {
    throw new Error(
      `${caller}: active mask [${mask.shape.join(', ')}] does not fit input [${x.shape.join(', ')}]: expected [${batch}, h, w, 1] ` +
        `with h dividing ${coarsestH} and w dividing ${coarsestW} (the ${coarsestH}x${coarsestW} map at stride ${downsampleRatio})`,
    );
  }
}

/**
 * Runs `fn` with the mask as {@link ActiveSites}, so that every layer reuses the mask derived once per
 * resolution. A plain tensor is wrapped for the call and its derived masks freed afterwards; this is safe
 * under a gradient tape, which keeps its own references to what the backward pass needs.
 *
 * @example
 * const stem = withActiveSites(active, (sites) =>
 *   tf.tidy(() => tf.relu(bn.apply(conv.apply(x, { active: sites }), { active: sites }))),
 * );
 */
export function withActiveSites<T>(active: ActiveMask | undefined, fn: (sites: ActiveSites | undefined) => T): T {
  if (!active || active instanceof ActiveSites) return fn(active);
  const sites = new ActiveSites(active);
  try {
    return fn(sites);
  } finally {
    sites.dispose();
  }
}

/**
 * The `depths` option of a named backbone (`createBackbone('resnet18', { depths: [1, 1, 1, 1] })`): the
 * variant's own when absent, else checked to be four block counts, one per stage.
 */
export function depthsOption(
  caller: string,
  name: string,
  depths: readonly number[] | undefined,
  variantDepths: readonly number[],
): readonly number[] {
  if (depths === undefined) return variantDepths;
  if (!Array.isArray(depths) || depths.length !== 4 || !depths.every((depth) => Number.isInteger(depth) && depth >= 1)) {
    const given = Array.isArray(depths) ? `[${depths.join(', ')}]` : JSON.stringify(depths);
    throw new Error(
      `${caller}: depths of '${name}' must be four whole numbers >= 1 (blocks per stage; ${name} has [${variantDepths.join(', ')}]), got ${given}`,
    );
  }
  return depths;
}
