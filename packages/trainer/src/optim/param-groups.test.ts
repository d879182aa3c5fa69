import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, goldenFileNames, loadGolden } from '@sparkmim/test-utils';
import { Lamb } from './lamb';
import { SPARK_NO_WEIGHT_DECAY_KEYS, hasWeightDecay, paramGroupsFromVariables, weightDecayGroups } from './param-groups';
import { variableOf } from './test-fixtures';

describe('weightDecayGroups', () => {
  it('uses the nowd keys of the official main.py', () => {
    expect([...SPARK_NO_WEIGHT_DECAY_KEYS].sort()).toEqual(['cls_token', 'gamma', 'mask_token', 'pos_embed']);
  });

  for (const file of goldenFileNames()) {
    it(`groups every parameter of ${file} as the official get_param_groups did`, () => {
      const golden = loadGolden(file);
      const names = JSON.parse(golden.metadata.param_names) as string[];
      const official = JSON.parse(golden.metadata.lamb_param_groups) as { lr: number; weight_decay: number; n_params: number; names: string[] }[];
      const groups = weightDecayGroups(names.map((name) => ({ name, shape: golden.get(`param.${name}`).shape })));
      // The golden groups carry lr and weight decay after lr_wd_annealing with lr 1e-3, wd 0.04.
      expect(
        groups.map((group) => ({
          lr: 1e-3 * group.lrScale,
          weight_decay: 0.04 * group.weightDecayScale,
          n_params: group.paramNames.length,
          names: group.paramNames,
        })),
      ).toEqual(official);
    });
  }

  it('excludes 1-D tensors, .bias names and nowd keys, keeping first-seen order', () => {
    const groups = weightDecayGroups([
      { name: 'norm.weight', shape: [8] },
      { name: 'conv.weight', shape: [8, 3, 3, 3] },
      { name: 'head.bias', shape: [1, 8] },
      { name: 'mask_tokens.0', shape: [1, 1, 1, 8] },
      { name: 'stages.0.0.gamma', shape: [8] },
      { name: 'fc.weight', shape: [4, 8] },
    ]);
    expect(groups).toEqual([
      { name: 'no_decay', weightDecayScale: 0, lrScale: 1, paramNames: ['norm.weight', 'head.bias', 'mask_tokens.0', 'stages.0.0.gamma'] },
      { name: 'decay', weightDecayScale: 1, lrScale: 1, paramNames: ['conv.weight', 'fc.weight'] },
    ]);
    expect(hasWeightDecay({ name: 'pos_embed', shape: [1, 4, 8] })).toBe(false);
    expect(hasWeightDecay({ name: 'blocks.0.scale', shape: [1, 8, 1, 1] }, [])).toBe(true);
    expect(() =>
      weightDecayGroups([
        { name: 'a', shape: [2, 2] },
        { name: 'a', shape: [2, 2] },
      ]),
    ).toThrow("weightDecayGroups: parameter 'a' is listed twice");
  });
});

describeBackends('paramGroupsFromVariables', () => {
  it('leaves out untrainable variables and never decays the no_decay group', async () => {
    const weight = variableOf([1, 2, 3, 4], [2, 2]);
    const bias = variableOf([1, 2], [2]);
    const frozen = tf.tidy(() => tf.variable(tf.ones([2, 2]), false));
    const groups = paramGroupsFromVariables(
      new Map([
        ['fc.weight', weight],
        ['fc.bias', bias],
        ['frozen.weight', frozen],
      ]),
    );
    expect(groups.map((group) => ({ name: group.name, names: group.variables.map((entry) => entry.name), weightDecay: group.weightDecay }))).toEqual([
      { name: 'decay', names: ['fc.weight'], weightDecay: undefined },
      { name: 'no_decay', names: ['fc.bias'], weightDecay: 0 },
    ]);
    const lamb = new Lamb(groups, { weightDecay: 0.05 });
    expect(lamb.paramGroups.map((group) => group.weightDecay)).toEqual([0.05, 0]);
    lamb.dispose();
    tf.dispose([weight, bias, frozen]);
  });
});
