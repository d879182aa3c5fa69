// The ResNet on rows: the same layers and weights as the masked path, computed on the visible sites only
// (`[N, C]` rows, see @sparkmim/sparse-ops's row path). Same numbers as the masked path, golden-checked.
import * as tf from '@tensorflow/tfjs-core';
import { fromRows, toRows, windowOutputSize, type RowSites, type SparseConv2d } from '@sparkmim/sparse-ops';
import type { SeededRandom } from '@sparkmim/sparse-ops';
import type { BasicBlock, Bottleneck, ResNet } from './resnet';

/** Rows of a feature map: `rows` `[N, C]` are the active sites of a `size` = `[H, W]` map. */
export type RowFeatures = { rows: tf.Tensor2D; size: [number, number] };

/** The output size of a conv layer on a `size` map. */
function convOutputSize(conv: SparseConv2d, size: [number, number]): [number, number] {
  const { kernelSize, strides, pad, dilations } = conv.config;
  return windowOutputSize(size, { windowSize: kernelSize, strides, pad, dilations });
}

function convRows(conv: SparseConv2d, { rows, size }: RowFeatures, sites: RowSites, inputGradient = true): RowFeatures {
  return { rows: conv.applyRows(rows, { sites, inputSize: size, inputGradient }), size: convOutputSize(conv, size) };
}

/**
 * Drop path on rows: the same per-sample draws, in the same order, as `dropPath` on a map (one number
 * per sample), each row scaled by its sample's keep factor. Shared by the ResNet and ConvNeXt row paths.
 *
 * @example
 * const branch = dropPathRows({ rows, size: [56, 56] }, 0.1, true, sites, new SeededRandom(0));
 */
export function dropPathRows(
  features: RowFeatures,
  rate: number,
  training: boolean,
  sites: RowSites,
  random: SeededRandom | (() => number),
): RowFeatures {
  if (!(rate >= 0 && rate < 1)) throw new Error(`dropPath: rate must be in [0, 1), got ${rate}`);
  if (!training || rate === 0) return features;
  const next = typeof random === 'function' ? random : random.next;
  const keep = 1 - rate;
  const layout = sites.layoutAt(features.size[0], features.size[1], 'dropPath');
  const sampleScale = new Float32Array(layout.batchSize);
  for (let i = 0; i < layout.batchSize; i++) sampleScale[i] = next() < keep ? 1 / keep : 0;
  const sitesPerSample = layout.height * layout.width;
  const rowScale = new Float32Array(layout.rowCount);
  for (let row = 0; row < layout.rowCount; row++) rowScale[row] = sampleScale[Math.floor(layout.siteOfRow[row] / sitesPerSample)];
  return { rows: tf.mul(features.rows, tf.tensor2d(rowScale, [layout.rowCount, 1])), size: features.size };
}

function residual(branch: RowFeatures, shortcut: RowFeatures): RowFeatures {
  return { rows: tf.relu(tf.add(branch.rows, shortcut.rows)) as tf.Tensor2D, size: branch.size };
}

/** `BasicBlock.apply` on rows (call inside a tidy). */
export function basicBlockRows(block: BasicBlock, x: RowFeatures, sites: RowSites, random: SeededRandom | (() => number)): RowFeatures {
  let branch = convRows(block.conv1, x, sites);
  branch = { rows: tf.relu(block.bn1.applyRows(branch.rows)), size: branch.size };
  branch = convRows(block.conv2, branch, sites);
  branch = { rows: block.bn2.applyRows(branch.rows), size: branch.size };
  branch = dropPathRows(branch, block.dropPathRate, block.training, sites, random);
  const shortcut = block.downsample ? convRows(block.downsample.conv, x, sites) : x;
  return residual(branch, block.downsample ? { rows: block.downsample.bn.applyRows(shortcut.rows), size: shortcut.size } : shortcut);
}

/** `Bottleneck.apply` on rows (call inside a tidy). */
export function bottleneckRows(block: Bottleneck, x: RowFeatures, sites: RowSites, random: SeededRandom | (() => number)): RowFeatures {
  let branch = convRows(block.conv1, x, sites);
  branch = { rows: tf.relu(block.bn1.applyRows(branch.rows)), size: branch.size };
  branch = convRows(block.conv2, branch, sites);
  branch = { rows: tf.relu(block.bn2.applyRows(branch.rows)), size: branch.size };
  branch = convRows(block.conv3, branch, sites);
  branch = { rows: block.bn3.applyRows(branch.rows), size: branch.size };
  branch = dropPathRows(branch, block.dropPathRate, block.training, sites, random);
  const shortcut = block.downsample ? convRows(block.downsample.conv, x, sites) : x;
  return residual(branch, block.downsample ? { rows: block.downsample.bn.applyRows(shortcut.rows), size: shortcut.size } : shortcut);
}

/**
 * `ResNet.forward` on rows: the image's visible pixels become rows, every conv, BN and the max pool run on
 * rows, and each stage's output is scattered back to a map (zeros at masked sites), as the masked path
 * returns it.
 *
 * @param x `[B, H, W, 3]`, zero at masked pixels
 * @returns the outputs of `layer1` … `layer4`, `[B, H/4, W/4, C0]` … `[B, H/32, W/32, C3]`
 */
export function resnetForwardRows(model: ResNet, x: tf.Tensor4D, sites: RowSites, random?: () => number): tf.Tensor4D[] {
  const [batch, height, width] = x.shape;
  if (batch !== sites.batchSize) {
    throw new Error(`${model.name}.forward: rows mask has batch ${sites.batchSize} but x [${x.shape.join(', ')}] has batch ${batch}`);
  }
  return tf.tidy(() => {
    // The image is a constant: skip its gradient, the largest matrix of the stem's backward pass.
    let y = convRows(model.conv1, { rows: toRows(x, sites), size: [height, width] }, sites, false);
    y = { rows: tf.relu(model.bn1.applyRows(y.rows)), size: y.size };
    const { filterSize, strides = filterSize, pad } = model.maxpool.config;
    y = {
      rows: model.maxpool.applyRows(y.rows, { sites, inputSize: y.size }),
      size: windowOutputSize(y.size, { windowSize: filterSize, strides, pad }),
    };
    const features: tf.Tensor4D[] = [];
    for (const layer of model.layers) {
      for (const block of layer.items) y = block.applyRows(y, sites, random);
      features.push(fromRows(y.rows, sites, y.size));
    }
    return features;
  });
}
