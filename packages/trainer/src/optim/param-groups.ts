import type * as tf from '@tensorflow/tfjs-core';
import type { NamedVariable, ParamGroupInit } from './optimizer';

/** Names containing one of these get no weight decay (SparK `main.py`: `nowd_keys`). */
export const SPARK_NO_WEIGHT_DECAY_KEYS: readonly string[] = ['cls_token', 'pos_embed', 'mask_token', 'gamma'];

/** A parameter by name and shape (any layout: only "is it 1-D" matters). */
export interface ParamShape {
  name: string;
  shape: readonly number[];
}

/** One group as SparK's `get_param_groups` makes it. */
export interface WeightDecayGroup {
  name: 'decay' | 'no_decay';
  /** 1 for `decay`, 0 for `no_decay`: the schedule's weight decay is multiplied by it. */
  weightDecayScale: number;
  lrScale: number;
  /** Member parameter names, in the order given. */
  paramNames: string[];
}

export interface WeightDecayGroupOptions {
  /** Substrings that exclude a parameter from weight decay. Default {@link SPARK_NO_WEIGHT_DECAY_KEYS}. */
  noWeightDecayKeys?: readonly string[];
}

/**
 * Whether SparK decays a parameter: no for 1-D tensors (norm weights, biases), names ending in `.bias`,
 * and names containing a no-weight-decay key (`mask_token`, ConvNeXt's layer-scale `gamma`, ...).
 *
 * @example
 * hasWeightDecay({ name: 'mask_tokens.0', shape: [1, 1, 1, 128] }); // false
 */
export function hasWeightDecay(param: ParamShape, noWeightDecayKeys: readonly string[] = SPARK_NO_WEIGHT_DECAY_KEYS): boolean {
  return !(param.shape.length === 1 || param.name.endsWith('.bias') || noWeightDecayKeys.some((key) => param.name.includes(key)));
}

/**
 * Splits parameters into SparK's `decay` and `no_decay` groups (`utils/lr_control.py`, `get_param_groups`),
 * groups in order of first appearance, members in the order given (torch's `named_parameters()` order).
 *
 * @example
 * weightDecayGroups([{ name: 'conv.weight', shape: [8, 3, 3, 3] }, { name: 'conv.bias', shape: [8] }]);
 * // [{ name: 'decay', weightDecayScale: 1, lrScale: 1, paramNames: ['conv.weight'] },
 * //  { name: 'no_decay', weightDecayScale: 0, lrScale: 1, paramNames: ['conv.bias'] }]
 */
export function weightDecayGroups(params: readonly ParamShape[], options: WeightDecayGroupOptions = {}): WeightDecayGroup[] {
  const keys = options.noWeightDecayKeys ?? SPARK_NO_WEIGHT_DECAY_KEYS;
  const groups = new Map<'decay' | 'no_decay', WeightDecayGroup>();
  const seen = new Set<string>();
  for (const param of params) {
    if (seen.has(param.name)) throw new Error(`weightDecayGroups: parameter '${param.name}' is listed twice`);
    seen.add(param.name);
    const name = hasWeightDecay(param, keys) ? 'decay' : 'no_decay';
    let group = groups.get(name);
    if (!group) {
      group = { name, weightDecayScale: name === 'decay' ? 1 : 0, lrScale: 1, paramNames: [] };
      groups.set(name, group);
    }
    group.paramNames.push(param.name);
  }
  return [...groups.values()];
}

/**
 * SparK's parameter groups over trainable variables, ready for {@link Lamb}, {@link AdamW} or {@link Sgd}:
 * `decay` (weightDecayScale 1) and `no_decay` (0); variables with `trainable: false` are left out, as torch
 * leaves out `requires_grad=False`. Set each iteration's lr and weight decay with {@link applyLrWd}.
 *
 * @example
 * const groups = paramGroupsFromVariables([{ name: 'densify_projs.0.weight', variable: w }, { name: 'densify_projs.0.bias', variable: b }]);
 * const lamb = new Lamb(groups, { betas: defaultBetas('resnet50') });
 */
export function paramGroupsFromVariables(
  variables: readonly NamedVariable[] | ReadonlyMap<string, tf.Variable>,
  options: WeightDecayGroupOptions = {},
): ParamGroupInit[] {
  const list: NamedVariable[] =
    variables instanceof Map
      ? [...variables.entries()].map(([name, variable]) => ({ name, variable }))
      : [...(variables as readonly NamedVariable[])];
  const trainable = list.filter(({ variable }) => variable.trainable);
  const byName = new Map(trainable.map((entry) => [entry.name, entry]));
  return weightDecayGroups(
    trainable.map(({ name, variable }) => ({ name, shape: variable.shape })),
    options,
  ).map((group) => ({
    name: group.name,
    variables: group.paramNames.map((name) => byName.get(name)!),
    lrScale: group.lrScale,
    weightDecayScale: group.weightDecayScale,
    // Explicit so that an optimiser-wide weightDecay never reaches these, even before a schedule runs.
    ...(group.weightDecayScale === 0 ? { weightDecay: 0 } : {}),
  }));
}
