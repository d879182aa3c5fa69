import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { AdamW } from './adamw';
import type { ParamGroupInit } from './optimizer';
import { Sgd } from './sgd';
import { SHAPES, disposeAll, gradValuesAt, l2, makeParams, tensorsOf, variablesFor } from './test-fixtures';

interface RefGroup {
  lr: number;
  weightDecay: number;
  params: string[];
}

// torch.nn.utils.clip_grad_norm_ (torch 1.13): scale = min(1, max / (total + 1e-6)).
function referenceClip(grads: Map<string, number[]>, maxGradNorm: number | undefined): { norm: number; scale: number } {
  const norm = l2([...grads.values()].map(l2));
  return { norm, scale: maxGradNorm === undefined ? 1 : Math.min(1, maxGradNorm / (norm + 1e-6)) };
}

// torch.optim.AdamW (torch 1.13, _single_tensor_adamw), in float64, with a step count per parameter.
function referenceAdamWStep(
  params: Map<string, number[]>,
  grads: Map<string, number[]>,
  groups: RefGroup[],
  hyper: { beta1: number; beta2: number; eps: number; maxGradNorm?: number },
  state: { steps: Map<string, number>; expAvg: Map<string, number[]>; expAvgSq: Map<string, number[]> },
): number {
  const { norm, scale } = referenceClip(grads, hyper.maxGradNorm);
  for (const group of groups) {
    for (const name of group.params) {
      const rawGrad = grads.get(name);
      if (!rawGrad) continue;
      const step = (state.steps.get(name) ?? 0) + 1;
      state.steps.set(name, step);
      const p = params.get(name)!.map((value) => value * (1 - group.lr * group.weightDecay));
      const m = state.expAvg.get(name) ?? p.map(() => 0);
      const v = state.expAvgSq.get(name) ?? p.map(() => 0);
      const stepSize = group.lr / (1 - hyper.beta1 ** step);
      const bc2Sqrt = Math.sqrt(1 - hyper.beta2 ** step);
      for (let i = 0; i < p.length; i++) {
        const g = rawGrad[i] * scale;
        m[i] = m[i] * hyper.beta1 + g * (1 - hyper.beta1);
        v[i] = v[i] * hyper.beta2 + (1 - hyper.beta2) * g * g;
        p[i] -= (stepSize * m[i]) / (Math.sqrt(v[i]) / bc2Sqrt + hyper.eps);
      }
      state.expAvg.set(name, m);
      state.expAvgSq.set(name, v);
      params.set(name, p);
    }
  }
  return norm;
}

// torch.optim.SGD (torch 1.13, dampening 0), in float64.
function referenceSgdStep(
  params: Map<string, number[]>,
  grads: Map<string, number[]>,
  groups: RefGroup[],
  hyper: { momentum: number; nesterov: boolean; maxGradNorm?: number },
  buffers: Map<string, number[]>,
): number {
  const { norm, scale } = referenceClip(grads, hyper.maxGradNorm);
  for (const group of groups) {
    for (const name of group.params) {
      const rawGrad = grads.get(name);
      if (!rawGrad) continue;
      const p = params.get(name)!;
      let d = rawGrad.map((g, i) => g * scale + group.weightDecay * p[i]);
      if (hyper.momentum !== 0) {
        const previous = buffers.get(name);
        const buffer = previous ? previous.map((b, i) => hyper.momentum * b + d[i]) : [...d];
        buffers.set(name, buffer);
        d = hyper.nesterov ? d.map((value, i) => value + hyper.momentum * buffer[i]) : buffer;
      }
      params.set(
        name,
        p.map((value, i) => value - group.lr * d[i]),
      );
    }
  }
  return norm;
}

const REF_GROUPS = (): RefGroup[] => [
  { lr: 0.05, weightDecay: 0.05, params: ['conv.weight', 'proj.weight'] },
  { lr: 0.05, weightDecay: 0, params: ['conv.bias', 'norm.weight'] },
];

function groupsFor(variables: Map<string, tf.Variable>, refGroups: RefGroup[]): ParamGroupInit[] {
  return refGroups.map((group, index) => ({
    name: `group${index}`,
    lr: group.lr,
    weightDecay: group.weightDecay,
    variables: group.params.map((name) => ({ name, variable: variables.get(name)! })),
  }));
}

/** Steps 0..2: step 0 far above maxGradNorm 5, step 1 below it, step 2 without a gradient for norm.weight. */
function gradValuesForStep(step: number): Map<string, number[]> {
  const grads = gradValuesAt(step, [4, 0.2, 1][step]);
  if (step === 2) grads.delete('norm.weight');
  return grads;
}

describeBackends('AdamW', () => {
  it('matches torch.optim.AdamW in float64 over three steps with clipping and per-parameter step counts', async () => {
    const params = makeParams();
    const variables = variablesFor(params);
    const refGroups = REF_GROUPS();
    const hyper = { beta1: 0.9, beta2: 0.999, eps: 1e-8, maxGradNorm: 5 };
    const adamw = new AdamW(groupsFor(variables, refGroups), { betas: [hyper.beta1, hyper.beta2], maxGradNorm: 5 });
    const state = { steps: new Map<string, number>(), expAvg: new Map<string, number[]>(), expAvgSq: new Map<string, number[]>() };
    for (let step = 0; step < 3; step++) {
      const gradValues = gradValuesForStep(step);
      refGroups[0].lr = adamw.paramGroups[0].lr = 0.05 / (step + 1);
      const expectedNorm = referenceAdamWStep(params, gradValues, refGroups, hyper, state);
      const grads = tensorsOf(gradValues);
      const { globalGradNorm } = await adamw.step(grads);
      disposeAll(grads);
      expect(Math.abs(globalGradNorm - expectedNorm) / expectedNorm).toBeLessThan(1e-6);
      for (const [name, variable] of variables) await expectClose(variable, params.get(name)!, { relative: 2e-6, label: `step ${step} ${name}` });
    }
    const saved = adamw.getState();
    expect(Array.from(await saved.get('step.conv.weight')!.data())).toEqual([3]);
    expect(Array.from(await saved.get('step.norm.weight')!.data())).toEqual([2]);
    disposeAll(saved);
    adamw.dispose();
    disposeAll(variables);
  });

  it('rejects state whose moments and step counts do not match', async () => {
    const variables = variablesFor(makeParams());
    const adamw = new AdamW(groupsFor(variables, REF_GROUPS()));
    const zeros = tf.zeros(SHAPES['conv.bias']);
    await expect(adamw.setState({ 'exp_avg.conv.bias': zeros, 'exp_avg_sq.conv.bias': zeros })).rejects.toThrow(
      "AdamW.setState: 'conv.bias' has moments but no 'step.conv.bias'",
    );
    expect(() => new AdamW(groupsFor(variables, REF_GROUPS()), { maxGradNorm: 0 })).toThrow(
      'AdamW: maxGradNorm is 0, expected a number > 0 (or leave it out for no clipping)',
    );
    zeros.dispose();
    adamw.dispose();
    disposeAll(variables);
  });
});

describeBackends('Sgd', () => {
  for (const nesterov of [true, false]) {
    it(`matches torch.optim.SGD (momentum 0.9, nesterov ${nesterov}) in float64 over three steps`, async () => {
      const params = makeParams();
      const variables = variablesFor(params);
      const refGroups = REF_GROUPS();
      const hyper = { momentum: 0.9, nesterov, maxGradNorm: 5 };
      const sgd = new Sgd(groupsFor(variables, refGroups), hyper);
      const buffers = new Map<string, number[]>();
      for (let step = 0; step < 3; step++) {
        const gradValues = gradValuesForStep(step);
        const expectedNorm = referenceSgdStep(params, gradValues, refGroups, hyper, buffers);
        const grads = tensorsOf(gradValues);
        const { globalGradNorm } = await sgd.step(grads);
        disposeAll(grads);
        expect(Math.abs(globalGradNorm - expectedNorm) / expectedNorm).toBeLessThan(1e-6);
        for (const [name, variable] of variables) await expectClose(variable, params.get(name)!, { relative: 2e-6, label: `step ${step} ${name}` });
      }
      sgd.dispose();
      disposeAll(variables);
    });
  }

  it('keeps no buffers without momentum and moves by lr * (g + wd * p)', async () => {
    const params = makeParams();
    const variables = variablesFor(params);
    const refGroups = REF_GROUPS();
    const sgd = new Sgd(groupsFor(variables, refGroups), { momentum: 0, nesterov: false });
    referenceSgdStep(params, gradValuesAt(0), refGroups, { momentum: 0, nesterov: false }, new Map());
    const grads = tensorsOf(gradValuesAt(0));
    await sgd.step(grads);
    disposeAll(grads);
    for (const [name, variable] of variables) await expectClose(variable, params.get(name)!, { relative: 2e-6, label: name });
    const state = sgd.getState();
    expect(state.size).toBe(0);
    sgd.dispose();
    disposeAll(variables);
  });
});
