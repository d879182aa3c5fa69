// Layer-wise learning-rate decay of the official fine-tuning (downstream_imagenet/models/__init__.py and
// lr_decay.py): every parameter gets a layer id (0 for the stem ... N + 1 for the classifier head) and
// the learning-rate scale `decay ** (N + 1 - layerId)`, so the head learns at the full rate and layers
// nearer the input ever more slowly. Groups are `layer{id}_decay` / `layer{id}_no_decay`.

import type * as tf from '@tensorflow/tfjs-core';
import type { BackboneKind } from '@sparkmim/backbones';
import type { NamedVariable, ParamGroupInit } from '../optim/optimizer';
import { SPARK_NO_WEIGHT_DECAY_KEYS, hasWeightDecay } from '../optim/param-groups';

/** A parameter's layer and the exponent of its learning-rate scale (`scale = decay ** scaleExponent`). */
export interface LayerIdAndScale {
  layerId: number;
  scaleExponent: number;
}

// The official table of (blocks per id in layer2, in layer3) by (len(layer2), len(layer3)).
const RESNET_BLOCKS_PER_ID: ReadonlyMap<string, readonly [number, number]> = new Map([
  ['4,6', [2, 3]], // resnet50
  ['4,23', [2, 3]], // resnet101
  ['8,36', [4, 4]], // resnet152
  ['24,36', [4, 4]], // resnet200
  ['30,48', [5, 6]], // eca269d
]);

/**
 * The official `resnets_get_layer_id_and_scale_exp` for a timm ResNet with `depths` blocks per stage. For
 * depths the official table lacks (it raises NotImplementedError, e.g. resnet18/34 or our narrow
 * `[1, 1, 1, 1]`), each of layer2 and layer3 is one id (blocks per id = the stage's length): our
 * extension, the same rule with the coarsest grouping.
 *
 * @example
 * resnetLayerIdAndScale('layer3.5.conv1.weight', [3, 4, 6, 3]); // { layerId: 5, scaleExponent: 2 }
 */
export function resnetLayerIdAndScale(name: string, depths: readonly number[]): LayerIdAndScale {
  const [, L2, L3] = depths;
  const [blk2, blk3] = RESNET_BLOCKS_PER_ID.get(`${L2},${L3}`) ?? [L2, L3];
  const N2 = Math.ceil(L2 / blk2 - 1e-5);
  const N3 = Math.ceil(L3 / blk3 - 1e-5);
  const N = 2 + N2 + N3;
  let layerId: number;
  const stage = /^layer(\d+)\.(\d+)\./.exec(name);
  if (stage) {
    const [stageId, blockId] = [Number(stage[1]), Number(stage[2])];
    if (stageId === 1) layerId = 1;
    else if (stageId === 2) layerId = 2 + Math.floor(blockId / blk2);
    else if (stageId === 3) layerId = 2 + N2 + Math.floor(blockId / blk3);
    else layerId = N;
  } else if (name.startsWith('fc.')) layerId = N + 1;
  else layerId = 0;
  return { layerId, scaleExponent: N + 1 - layerId };
}

/**
 * The official `convnext_get_layer_id_and_scale_exp` for an official ConvNeXt with `depths` blocks per
 * stage: N = 12 when the third stage has more than 9 blocks, else 6; stage 2's blocks go three to an id.
 *
 * @example
 * convnextLayerIdAndScale('stages.2.7.dwconv.weight', [3, 3, 27, 3]); // { layerId: 5, scaleExponent: 8 }
 */
export function convnextLayerIdAndScale(name: string, depths: readonly number[]): LayerIdAndScale {
  const N = depths[2] > 9 ? 12 : 6;
  let layerId: number;
  const parts = name.split('.');
  if (name.startsWith('downsample_layers')) {
    const stageId = Number(parts[1]);
    layerId = stageId === 0 ? 0 : stageId === 1 || stageId === 2 ? stageId + 1 : N;
  } else if (name.startsWith('stages')) {
    const [stageId, blockId] = [Number(parts[1]), Number(parts[2])];
    layerId = stageId === 0 || stageId === 1 ? stageId + 1 : stageId === 2 ? 3 + Math.floor(blockId / 3) : N;
  } else layerId = N + 1;
  return { layerId, scaleExponent: N + 1 - layerId };
}

/**
 * Our rule for a custom backbone (no official one exists): `stages.i.*` (or `layers.i.*`) is layer i + 1,
 * the head (`fc.*`, `head.*`) is layer 5, anything else (the stem) is layer 0.
 *
 * @example
 * customLayerIdAndScale('stages.2.conv.weight'); // { layerId: 3, scaleExponent: 2 }
 */
export function customLayerIdAndScale(name: string): LayerIdAndScale {
  const N = 4;
  const stage = /^(?:stages|layers)\.(\d+)\./.exec(name);
  const layerId = stage ? Math.min(Number(stage[1]) + 1, N) : /^(fc|head)\./.test(name) ? N + 1 : 0;
  return { layerId, scaleExponent: N + 1 - layerId };
}

/** What {@link layerDecayParamGroups} needs to know about the backbone. */
export interface LayerDecayOptions {
  /** The backbone family, which picks the official rule. */
  kind: BackboneKind;
  /** Blocks per stage (ResNet layers, ConvNeXt stages); not needed for 'custom'. */
  depths?: readonly number[];
  /**
   * The decay, the official `--lr_scale` (0.7 for resnet50 and the ConvNeXts, 0.8 for deeper ResNets).
   * Outside (0, 1) no decay is applied (every scale 1), as the official code does.
   */
  decay: number;
  /** Substrings that exclude a parameter from weight decay. Default SparK's. */
  noWeightDecayKeys?: readonly string[];
}

/**
 * The layer id and scale of one parameter name under `options`' rule.
 *
 * @example
 * layerIdAndScale('fc.weight', { kind: 'resnet', depths: [3, 4, 6, 3], decay: 0.7 }); // { layerId: 7, scaleExponent: 0 }
 */
export function layerIdAndScale(name: string, options: Pick<LayerDecayOptions, 'kind' | 'depths'>): LayerIdAndScale {
  const { kind, depths } = options;
  if (kind !== 'custom' && !(depths && depths.length === 4)) {
    throw new Error(`layerIdAndScale: a ${kind} needs its four stage depths, got ${depths ? `[${depths.join(', ')}]` : 'none'}`);
  }
  if (kind === 'resnet') return resnetLayerIdAndScale(name, depths!);
  if (kind === 'convnext') return convnextLayerIdAndScale(name, depths!);
  return customLayerIdAndScale(name);
}

/**
 * Parameter groups of the official fine-tuning (`get_param_groups(model, nowd_keys, lr_scale)`): per
 * layer id, a `decay` and a `no_decay` group, each with `lrScale = decay ** scaleExponent` and
 * `weightDecayScale` 1 or 0; frozen variables (trainable false) left out. Ready for {@link Lamb} /
 * {@link AdamW}; set each iteration's lr and weight decay with `applyLrWd`.
 *
 * @example
 * const groups = layerDecayParamGroups(classifier.namedParameters(), { kind: 'resnet', depths: [3, 4, 6, 3], decay: 0.7 });
 * const lamb = new Lamb(groups, { maxGradNorm: 1e7, alwaysAdapt: true, biasCorrection: false });
 */
export function layerDecayParamGroups(
  variables: readonly (NamedVariable & { variable: tf.Variable })[],
  options: LayerDecayOptions,
): ParamGroupInit[] {
  const { decay, noWeightDecayKeys = SPARK_NO_WEIGHT_DECAY_KEYS } = options;
  const usingDecay = decay > 0 && decay < 1;
  const groups = new Map<string, ParamGroupInit & { variables: NamedVariable[] }>();
  for (const entry of variables) {
    if (!entry.variable.trainable) continue;
    const decays = hasWeightDecay({ name: entry.name, shape: entry.variable.shape }, noWeightDecayKeys);
    let groupName = decays ? 'decay' : 'no_decay';
    let lrScale = 1;
    if (usingDecay) {
      const { layerId, scaleExponent } = layerIdAndScale(entry.name, options);
      groupName = `layer${layerId}_${groupName}`;
      lrScale = decay ** scaleExponent;
    }
    let group = groups.get(groupName);
    if (!group) {
      group = { name: groupName, variables: [], lrScale, weightDecayScale: decays ? 1 : 0, ...(decays ? {} : { weightDecay: 0 }) };
      groups.set(groupName, group);
    }
    group.variables.push({ name: entry.name, variable: entry.variable });
  }
  return [...groups.values()];
}
