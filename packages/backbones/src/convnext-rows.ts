// The ConvNeXt on rows: the same layers and weights as the masked path, computed on the visible sites only
// (`[N, C]` rows, see @sparkmim/sparse-ops's row path). Same numbers as the masked path, golden-checked.
import * as tf from '@tensorflow/tfjs-core';
import { fromRows, rowLinear, toRows, windowOutputSize, type RowSites, type SeededRandom, type SparseConv2d } from '@sparkmim/sparse-ops';
import type { ConvNeXt, ConvNeXtBlock } from './convnext';
import { gelu, type Linear } from './layers';
import { dropPathRows, type RowFeatures } from './resnet-rows';

/** A conv layer on rows: `rows` at `size` → the active sites at the conv's output size. */
function convRows(conv: SparseConv2d, { rows, size }: RowFeatures, sites: RowSites, inputGradient = true): RowFeatures {
  const { kernelSize, strides, pad, dilations } = conv.config;
  return {
    rows: conv.applyRows(rows, { sites, inputSize: size, inputGradient }),
    size: windowOutputSize(size, { windowSize: kernelSize, strides, pad, dilations }),
  };
}

/** `Linear.apply` on rows `[N, in]` → `[N, out]` (rowLinear: plain-matmul gradients, faster on wasm). */
function linearRows(linear: Linear, rows: tf.Tensor2D): tf.Tensor2D {
  return rowLinear(rows, linear.weight as tf.Tensor2D, linear.bias as tf.Tensor1D | undefined);
}

/**
 * `ConvNeXtBlock.apply` on rows (call inside a tidy): depthwise 7x7 conv over the visible neighbours, layer
 * norm, Linear 4x, GELU, Linear, layer scale, drop path, residual. The masked path multiplies the branch by
 * the mask after layer scale (pwconv2's bias makes masked sites non-zero); rows have no masked sites, so
 * nothing is masked here.
 *
 * @example
 * const y = tf.tidy(() => convnextBlockRows(block, { rows, size: [56, 56] }, sites, new SeededRandom(0)).rows);
 */
export function convnextBlockRows(block: ConvNeXtBlock, x: RowFeatures, sites: RowSites, random: SeededRandom | (() => number)): RowFeatures {
  const spatial = convRows(block.dwconv, x, sites);
  let branch = block.norm.applyRows(spatial.rows);
  branch = linearRows(block.pwconv2, gelu(linearRows(block.pwconv1, branch)));
  if (block.gamma) branch = tf.mul(branch, block.gamma);
  const dropped = dropPathRows({ rows: branch, size: x.size }, block.dropPathRate, block.training, sites, random);
  return { rows: tf.add(x.rows, dropped.rows), size: x.size };
}

/**
 * `ConvNeXt.forward` on rows: the image's visible pixels become rows, the stem (4x4 stride-4 conv, layer
 * norm) maps them to the visible sites at stride 4, each downsample layer (layer norm, 2x2 stride-2 conv)
 * to those at the next scale, every block runs on rows, and each stage's output is scattered back to a map
 * (zeros at masked sites), as the masked path returns it. Drop path draws the same numbers in the same
 * order as the masked path (one per sample per block with a non-zero rate, in training).
 *
 * @param x `[B, H, W, 3]`, zero at masked pixels
 * @returns the outputs of the four stages, `[B, H/4, W/4, d0]` … `[B, H/32, W/32, d3]`
 *
 * @example
 * const sites = await RowSites.fromMask(active);
 * const features = convnextForwardRows(model, masked, sites); // as model.forward(masked, { active })
 */
export function convnextForwardRows(model: ConvNeXt, x: tf.Tensor4D, sites: RowSites, random?: () => number): tf.Tensor4D[] {
  const [batch, height, width] = x.shape;
  if (batch !== sites.batchSize) {
    throw new Error(`${model.name}.forward: rows mask has batch ${sites.batchSize} but x [${x.shape.join(', ')}] has batch ${batch}`);
  }
  return tf.tidy(() => {
    let y: RowFeatures = { rows: toRows(x, sites), size: [height, width] };
    const features: tf.Tensor4D[] = [];
    model.stages.items.forEach((stage, i) => {
      const downsample = model.downsampleLayers.items[i];
      if (i === 0) {
        // The image is a constant: skip its gradient (the stem's input rows have 3 channels).
        y = convRows(downsample.conv, y, sites, false);
        y = { rows: downsample.norm.applyRows(y.rows), size: y.size };
      } else {
        y = convRows(downsample.conv, { rows: downsample.norm.applyRows(y.rows), size: y.size }, sites);
      }
      for (const block of stage.items) y = block.applyRows(y, sites, random);
      features.push(fromRows(y.rows, sites, y.size));
    });
    return features;
  });
}
