import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, expectClose, goldenFileNames, loadGolden, maxAbs } from '@sparkmim/test-utils';
import type { GoldenFile } from '@sparkmim/test-utils';
import { decodeSafetensors, encodeSafetensors } from '../io/safetensors';
import { safetensorsEntriesFromTensors, tensorsFromSafetensors } from '../io/tensors';
import { Lamb } from './lamb';
import type { LambOptions } from './lamb';
import type { ParamGroupInit } from './optimizer';
import { SHAPES, disposeAll, l2, makeParams, values, variableOf, variablesFor } from './test-fixtures';

// ---- A slow, obvious LAMB in float64, transcribed line by line from the official utils/lamb.py. ----
interface RefGroup {
  lr: number;
  weightDecay: number;
  params: string[];
}
interface RefHyper {
  beta1: number;
  beta2: number;
  eps: number;
  maxGradNorm: number;
  trustClip?: boolean;
  alwaysAdapt?: boolean;
}
interface RefState {
  step: number;
  expAvg: Map<string, number[]>;
  expAvgSq: Map<string, number[]>;
}

/** One step; returns the global norm and the trust ratio applied to each parameter (absent: none). */
function referenceLambStep(
  params: Map<string, number[]>,
  grads: Map<string, number[]>,
  groups: RefGroup[],
  hyper: RefHyper,
  state: RefState,
): { globalNorm: number; trustRatios: Map<string, number> } {
  const trustRatios = new Map<string, number>();
  let squares = 0;
  for (const grad of grads.values()) for (const g of grad) squares += g * g;
  const globalNorm = Math.sqrt(squares);
  const clip = 1 / (globalNorm > hyper.maxGradNorm ? globalNorm / hyper.maxGradNorm : 1);
  state.step += 1;
  const bc1 = 1 - hyper.beta1 ** state.step;
  const bc2 = 1 - hyper.beta2 ** state.step;
  for (const group of groups) {
    for (const name of group.params) {
      const rawGrad = grads.get(name);
      if (!rawGrad) continue;
      const p = params.get(name)!;
      const m = state.expAvg.get(name) ?? p.map(() => 0);
      const v = state.expAvgSq.get(name) ?? p.map(() => 0);
      const update: number[] = [];
      for (let i = 0; i < p.length; i++) {
        const g = rawGrad[i] * clip;
        m[i] = m[i] * hyper.beta1 + g * (1 - hyper.beta1);
        v[i] = v[i] * hyper.beta2 + (1 - hyper.beta2) * g * g;
        update.push(m[i] / bc1 / (Math.sqrt(v[i]) / Math.sqrt(bc2) + hyper.eps));
      }
      state.expAvg.set(name, m);
      state.expAvgSq.set(name, v);
      if (group.weightDecay !== 0) for (let i = 0; i < p.length; i++) update[i] += group.weightDecay * p[i];
      if (group.weightDecay !== 0 || hyper.alwaysAdapt) {
        const wNorm = l2(p);
        const uNorm = l2(update);
        let trust = wNorm > 0 ? (uNorm > 0 ? wNorm / uNorm : 1) : 1;
        if (hyper.trustClip) trust = Math.min(trust, 1);
        for (let i = 0; i < p.length; i++) update[i] *= trust;
        trustRatios.set(name, trust);
      }
      params.set(
        name,
        p.map((value, i) => value - group.lr * update[i]),
      );
    }
  }
  return { globalNorm, trustRatios };
}

function groupsFor(variables: Map<string, tf.Variable>, refGroups: RefGroup[]): ParamGroupInit[] {
  return refGroups.map((group, index) => ({
    name: `group${index}`,
    lr: group.lr,
    weightDecay: group.weightDecay,
    variables: group.params.map((name) => ({ name, variable: variables.get(name)! })),
  }));
}

async function expectParams(variables: Map<string, tf.Variable>, expected: Map<string, number[]>, relative: number): Promise<void> {
  for (const [name, variable] of variables) await expectClose(variable, expected.get(name)!, { relative, label: name });
}

// ---- Golden helpers ----
function lambSettings(golden: GoldenFile): { betas: [number, number]; eps: number; maxGradNorm: number } {
  const call = golden.metadata.lamb;
  const betas = /betas=\(([\d.e-]+),\s*([\d.e-]+)\)/.exec(call);
  const eps = /eps=([\d.e-]+)/.exec(call);
  const maxGradNorm = /max_grad_norm=([\d.e-]+)/.exec(call);
  if (!betas || !eps || !maxGradNorm) throw new Error(`${golden.name}: cannot read betas/eps/max_grad_norm from metadata lamb = ${call}`);
  return { betas: [Number(betas[1]), Number(betas[2])], eps: Number(eps[1]), maxGradNorm: Number(maxGradNorm[1]) };
}

interface GoldenGroup {
  lr: number;
  weight_decay: number;
  names: string[];
}

describeBackends('Lamb', () => {
  for (const file of goldenFileNames()) {
    it(`reproduces one official LAMB step on the picked parameters of ${file}`, async () => {
      const golden = loadGolden(file);
      const { betas, eps, maxGradNorm } = lambSettings(golden);
      const officialGroups = JSON.parse(golden.metadata.lamb_param_groups) as GoldenGroup[];
      const picked = golden.keys('grad.').map((key) => key.slice('grad.'.length));
      expect(picked.length).toBeGreaterThan(0);
      const variables = new Map(
        picked.map((name) => {
          const param = golden.get(`param.${name}`);
          return [name, variableOf(param.data, param.shape)] as const;
        }),
      );
      const groups: ParamGroupInit[] = officialGroups.map((group, index) => ({
        name: `official${index}`,
        lr: group.lr,
        weightDecay: group.weight_decay,
        variables: group.names.filter((name) => variables.has(name)).map((name) => ({ name, variable: variables.get(name)! })),
      }));
      expect(groups.reduce((count, group) => count + group.variables.length, 0)).toBe(picked.length);
      const grads = new Map(picked.map((name) => [name, tf.tensor(golden.get(`grad.${name}`).data, golden.get(`grad.${name}`).shape)]));
      const globalGradNorm = golden.get('lamb.global_grad_norm_step1').data[0];

      const lamb = new Lamb(groups, { betas, eps, maxGradNorm });
      const result = await lamb.step(grads, { globalGradNorm });
      expect(result.globalGradNorm).toBeCloseTo(globalGradNorm, 7);

      // Values to 1e-6 of their largest magnitude (measured: under 1e-7, about one float32 ulp). The step
      // itself (new - old, about lr · trust ratio in size) to 1e-4 of its largest magnitude, plus two ulps
      // of the largest value: the stored float32 values round the step that much.
      for (const name of picked) {
        const expected = golden.get(`step1.${name}`).data;
        await expectClose(variables.get(name)!, expected, { relative: 1e-6, label: `${file} step1.${name}` });
        const initial = golden.get(`param.${name}`).data;
        const actual = await variables.get(name)!.data();
        const expectedDelta = Array.from(expected, (value, i) => value - initial[i]);
        const actualDelta = Array.from(actual, (value, i) => value - initial[i]);
        const twoUlps = 2 * 2 ** -23 * maxAbs(expected);
        await expectClose(actualDelta, expectedDelta, { relative: 1e-4, absolute: twoUlps, label: `${file} step1.${name} - param.${name}` });
      }
      lamb.dispose();
      tf.dispose([...grads.values()]);
      disposeAll(variables);
    });

    it(`computes the global gradient norm as the official code does (${file})`, async () => {
      const golden = loadGolden(file);
      const names = JSON.parse(golden.metadata.param_names) as string[];
      const norms = golden.get('grad_norms').data;
      // Over every parameter: the official global norm is the L2 norm of the per-parameter norms.
      const fromAllNorms = Math.sqrt(Array.from(norms).reduce((sum, n) => sum + n * n, 0));
      expect(fromAllNorms).toBeCloseTo(golden.get('lamb.global_grad_norm_step1').data[0], 6);
      // Over the picked gradients, Lamb's own norm must match the same norms.
      const picked = golden.keys('grad.').map((key) => key.slice('grad.'.length));
      const expectedPicked = Math.sqrt(picked.reduce((sum, name) => sum + norms[names.indexOf(name)] ** 2, 0));
      const variables = new Map(picked.map((name) => [name, variableOf(golden.get(`param.${name}`).data, golden.get(`param.${name}`).shape)]));
      const grads = new Map(picked.map((name) => [name, tf.tensor(golden.get(`grad.${name}`).data, golden.get(`grad.${name}`).shape)]));
      const lamb = new Lamb([{ name: 'all', variables: [...variables].map(([name, variable]) => ({ name, variable })) }]);
      const { globalGradNorm } = await lamb.step(grads);
      expect(Math.abs(globalGradNorm - expectedPicked) / expectedPicked).toBeLessThan(1e-6);
      lamb.dispose();
      tf.dispose([...grads.values()]);
      disposeAll(variables);
    });
  }

  it('matches a float64 reference over three steps with clipping, changing lr/wd and two groups', async () => {
    const params = makeParams();
    const variables = variablesFor(params);
    const refGroups: RefGroup[] = [
      { lr: 1e-2, weightDecay: 0.04, params: ['conv.weight', 'proj.weight'] },
      { lr: 1e-2, weightDecay: 0, params: ['conv.bias', 'norm.weight'] },
    ];
    const hyper: RefHyper = { beta1: 0.9, beta2: 0.95, eps: 1e-6, maxGradNorm: 5 };
    const lamb = new Lamb(groupsFor(variables, refGroups), { betas: [hyper.beta1, hyper.beta2], eps: hyper.eps, maxGradNorm: hyper.maxGradNorm });
    const refState: RefState = { step: 0, expAvg: new Map(), expAvgSq: new Map() };
    // Step 1 has a norm far above 5 (clipped), step 2 below it, step 3 skips a parameter (no gradient).
    const gradScales = [4, 0.2, 1];
    for (let step = 0; step < 3; step++) {
      const gradValues = new Map(
        Object.entries(SHAPES)
          .filter(([name]) => !(step === 2 && name === 'norm.weight'))
          .map(([name, shape], index) => [
            name,
            values(
              shape.reduce((a, b) => a * b, 1),
              100 * step + index,
              gradScales[step],
            ),
          ]),
      );
      refGroups[0].lr = lamb.paramGroups[0].lr = 1e-2 / (step + 1);
      refGroups[0].weightDecay = lamb.paramGroups[0].weightDecay = 0.04 + 0.05 * step;
      const expectedNorm = referenceLambStep(params, gradValues, refGroups, hyper, refState).globalNorm;
      const grads = new Map([...gradValues].map(([name, data]) => [name, tf.tensor(data, SHAPES[name])]));
      const { globalGradNorm } = await lamb.step(grads);
      tf.dispose([...grads.values()]);
      expect(Math.abs(globalGradNorm - expectedNorm) / expectedNorm).toBeLessThan(1e-6);
      if (step === 0) expect(expectedNorm).toBeGreaterThan(5);
      await expectParams(variables, params, 2e-6);
    }
    expect(lamb.stepCount).toBe(3);
    lamb.dispose();
    disposeAll(variables);
  });

  it('never clips with maxGradNorm Infinity (sparkmim pretrain --clip 0): a float64 reference without clipping', async () => {
    const params = makeParams();
    const variables = variablesFor(params);
    const refGroups: RefGroup[] = [{ lr: 1e-2, weightDecay: 0.04, params: Object.keys(SHAPES) }];
    // eps 1 makes the update depend on the gradients' scale (m / (sqrt(v) + 1)), so clipping shows.
    const hyper: RefHyper = { beta1: 0.9, beta2: 0.95, eps: 1, maxGradNorm: Infinity };
    const lamb = new Lamb(groupsFor(variables, refGroups), { betas: [0.9, 0.95], eps: 1, maxGradNorm: Infinity });
    const refState: RefState = { step: 0, expAvg: new Map(), expAvgSq: new Map() };
    const clipped = new Map([...params].map(([name, data]) => [name, [...data]]));
    const clippedState: RefState = { step: 0, expAvg: new Map(), expAvgSq: new Map() };
    // A norm far above SparK's 5: clipped, the gradients would be scaled down more than tenfold.
    const gradValues = new Map(
      Object.entries(SHAPES).map(([name, shape], index) => [
        name,
        values(
          shape.reduce((a, b) => a * b, 1),
          7 + index,
          40,
        ),
      ]),
    );
    const expectedNorm = referenceLambStep(params, gradValues, refGroups, hyper, refState).globalNorm;
    expect(expectedNorm).toBeGreaterThan(50);
    const grads = new Map([...gradValues].map(([name, data]) => [name, tf.tensor(data, SHAPES[name])]));
    await lamb.step(grads);
    await lamb.step(grads);
    referenceLambStep(params, gradValues, refGroups, hyper, refState);
    for (let step = 0; step < 2; step++) referenceLambStep(clipped, gradValues, refGroups, { ...hyper, maxGradNorm: 5 }, clippedState);
    tf.dispose([...grads.values()]);
    await expectParams(variables, params, 2e-6);
    // The bound above tells the two apart: clipping at 5 moves the weights elsewhere.
    const moved = Math.max(...[...params].map(([name, data]) => Math.max(...data.map((value, i) => Math.abs(value - clipped.get(name)![i])))));
    expect(moved).toBeGreaterThan(1e-4);
    lamb.dispose();
    disposeAll(variables);
  });

  it('uses trust ratio 1 for an all-zero parameter, and alwaysAdapt/trustClip as the official flags', async () => {
    for (const flags of [{}, { alwaysAdapt: true }, { alwaysAdapt: true, trustClip: true }] as LambOptions[]) {
      const params = makeParams();
      params.set(
        'proj.weight',
        params.get('proj.weight')!.map(() => 0),
      );
      // Large enough that its trust ratio exceeds 1, where trustClip makes a difference.
      params.set(
        'norm.weight',
        params.get('norm.weight')!.map((value) => 10 * value),
      );
      const variables = variablesFor(params);
      const refGroups: RefGroup[] = [
        { lr: 0.1, weightDecay: 0.5, params: ['conv.weight', 'proj.weight'] },
        { lr: 0.1, weightDecay: 0, params: ['conv.bias', 'norm.weight'] },
      ];
      const hyper: RefHyper = { beta1: 0.9, beta2: 0.999, eps: 1e-6, maxGradNorm: 5, ...flags };
      const lamb = new Lamb(groupsFor(variables, refGroups), { betas: [0.9, 0.999], ...flags });
      const refState: RefState = { step: 0, expAvg: new Map(), expAvgSq: new Map() };
      const gradValues = new Map(
        Object.entries(SHAPES).map(([name, shape], index) => [
          name,
          values(
            shape.reduce((a, b) => a * b, 1),
            7 + index,
            0.3,
          ),
        ]),
      );
      const { trustRatios } = referenceLambStep(params, gradValues, refGroups, hyper, refState);
      // The cases differ: no ratio for no-decay groups by default, a ratio > 1 with alwaysAdapt, capped by trustClip.
      expect(trustRatios.get('proj.weight')).toBe(1);
      if (!flags.alwaysAdapt) expect(trustRatios.has('norm.weight')).toBe(false);
      else if (flags.trustClip) expect(trustRatios.get('norm.weight')).toBe(1);
      else expect(trustRatios.get('norm.weight')).toBeGreaterThan(1);
      const grads = new Map([...gradValues].map(([name, data]) => [name, tf.tensor(data, SHAPES[name])]));
      await lamb.step(grads);
      tf.dispose([...grads.values()]);
      await expectParams(variables, params, 2e-6);
      // The zero parameter moved by exactly lr * update (no scaling by ||p|| / ||u|| = 0).
      const moved = await variables.get('proj.weight')!.data();
      expect(Math.max(...Array.from(moved, Math.abs))).toBeGreaterThan(0.05);
      lamb.dispose();
      disposeAll(variables);
    }
  });

  it('continues identically after its state goes through safetensors bytes', async () => {
    const makeRun = () => {
      const variables = variablesFor(makeParams());
      const groups: ParamGroupInit[] = [
        { name: 'decay', weightDecay: 0.04, variables: ['conv.weight', 'proj.weight'].map((name) => ({ name, variable: variables.get(name)! })) },
        { name: 'no_decay', weightDecay: 0, variables: ['conv.bias', 'norm.weight'].map((name) => ({ name, variable: variables.get(name)! })) },
      ];
      return { variables, lamb: new Lamb(groups, { lr: 0.01, betas: [0.9, 0.95] }) };
    };
    const gradsAt = (step: number) =>
      new Map(
        Object.entries(SHAPES).map(([name, shape], index) => [
          name,
          tf.tensor(
            values(
              shape.reduce((a, b) => a * b, 1),
              50 * step + index,
            ),
            shape,
          ),
        ]),
      );
    const straight = makeRun();
    const resumed = makeRun();
    for (const step of [0, 1]) {
      const grads = gradsAt(step);
      await straight.lamb.step(grads);
      if (step === 0) await resumed.lamb.step(grads);
      tf.dispose([...grads.values()]);
    }
    // Resume: fresh optimiser over the same (already stepped) variables, state from bytes.
    const state = resumed.lamb.getState();
    expect([...state.keys()].sort()).toEqual(['step', ...Object.keys(SHAPES).flatMap((name) => [`exp_avg.${name}`, `exp_avg_sq.${name}`])].sort());
    const bytes = encodeSafetensors(await safetensorsEntriesFromTensors(state));
    tf.dispose([...state.values()]);
    resumed.lamb.dispose();
    const groups = resumed.lamb.paramGroups.map((group) => ({ name: group.name, weightDecay: group.weightDecay, variables: group.variables }));
    const reloaded = new Lamb(groups, { lr: 0.01, betas: [0.9, 0.95] });
    const loaded = tensorsFromSafetensors(decodeSafetensors(bytes).tensors);
    await reloaded.setState(loaded);
    tf.dispose([...loaded.values()]);
    expect(reloaded.stepCount).toBe(1);
    const grads = gradsAt(1);
    await reloaded.step(grads);
    tf.dispose([...grads.values()]);
    for (const [name, variable] of straight.variables) {
      expect(Array.from(await resumed.variables.get(name)!.data())).toEqual(Array.from(await variable.data()));
    }
    straight.lamb.dispose();
    reloaded.dispose();
    disposeAll(straight.variables);
    disposeAll(resumed.variables);
  });

  it('says what it expected for bad gradients, bad state and bad settings', async () => {
    const weight = variableOf([0, 0, 0, 0, 0, 0], [2, 3]);
    const lamb = new Lamb([{ name: 'decay', variables: [{ name: 'w', variable: weight }] }]);
    const wrongShape = tf.zeros([3, 2]);
    await expect(lamb.step({ w: wrongShape })).rejects.toThrow(
      "Lamb.step: the gradient for 'w' has shape [3, 2], expected [2, 3] (the parameter's shape)",
    );
    await expect(lamb.step({ v: wrongShape })).rejects.toThrow(
      "Lamb.step: got a gradient for 'v', which is not a parameter of this optimiser (expected one of w)",
    );
    await expect(lamb.setState({ 'exp_avg.w': wrongShape })).rejects.toThrow(
      "Lamb.setState: 'exp_avg.w' has shape [3, 2], expected [2, 3] (the parameter's shape)",
    );
    const rightShape = tf.zeros([2, 3]);
    const step = tf.scalar(1, 'int32');
    await expect(lamb.setState({ 'exp_avg.w': rightShape, step })).rejects.toThrow(
      "Lamb.setState: 'w' has exp_avg but not exp_avg_sq; expected both or neither",
    );
    await expect(lamb.setState({ 'exp_avg.w': rightShape, 'exp_avg_sq.w': rightShape })).rejects.toThrow(
      "Lamb.setState: expected a scalar 'step' holding a whole number >= 0, got undefined",
    );
    await expect(lamb.setState({ 'momentum.w': rightShape })).rejects.toThrow("Lamb.setState: unexpected entry 'momentum.w'");
    expect(
      () =>
        new Lamb([
          { name: 'a', variables: [{ name: 'w', variable: weight }] },
          { name: 'b', variables: [{ name: 'w', variable: weight }] },
        ]),
    ).toThrow("Lamb: parameter 'w' appears twice in the parameter groups");
    expect(() => new Lamb([{ name: 'a', variables: [{ name: 'w', variable: weight }] }], { betas: [0.9, 1] })).toThrow(
      'Lamb: beta2 is 1, expected a number in [0, 1)',
    );
    expect(() => new Lamb([])).toThrow('Lamb: got an empty parameter list');
    // Nothing was changed by the rejected calls.
    const untouched = lamb.getState();
    expect([...untouched.keys()]).toEqual(['step']);
    tf.dispose([...untouched.values()]);
    lamb.dispose();
    await expect(lamb.step({ w: rightShape })).rejects.toThrow('Lamb.step: the optimiser was disposed');
    tf.dispose([wrongShape, rightShape, step, weight]);
  });
});
