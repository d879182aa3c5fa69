import * as tf from '@tensorflow/tfjs-core';
import { randomPatchMask } from '@sparkmim/masking';
import { describeBackends, expectClose } from '@sparkmim/test-utils';
import { Lamb } from '../optim/lamb';
import { paramGroupsFromVariables } from '../optim/param-groups';
import { NonFiniteLossError, trainStep } from './step';
import { TinyModel } from './test-fixtures';

function imagesOf(seed: number): tf.Tensor4D {
  return tf.randomNormal([2, 8, 8, 3], 0, 1, 'float32', seed) as tf.Tensor4D;
}

async function valuesOf(model: TinyModel): Promise<Map<string, number[]>> {
  const values = new Map<string, number[]>();
  for (const { name, variable } of model.stateEntries()) values.set(name, Array.from(await variable.data()));
  return values;
}

describeBackends('trainStep', () => {
  it('sets lr and weight decay before the forward pass, then steps with gradients by official name', async () => {
    const model = new TinyModel();
    const lamb = new Lamb(paramGroupsFromVariables(model.namedParameters()), { betas: [0.9, 0.95] });
    const seen: number[][] = [];
    const forward = model.forward.bind(model);
    model.forward = (images, options) => {
      seen.push(lamb.paramGroups.flatMap((group) => [group.lr, group.weightDecay]));
      return forward(images, options);
    };
    const images = imagesOf(1);
    const active = randomPatchMask(2, [2, 2], 0.5, { seed: 3 });
    // The loss before the step, computed independently (eval of the same forward, then train mode back).
    const expectedLoss = tf.tidy(() => forward(images, { active }));
    const expectedLossValue = (await expectedLoss.data())[0];
    expectedLoss.dispose();
    const before = await valuesOf(model);

    const step = await trainStep(model, lamb, images, { active, lrWd: { lr: 0.01, weightDecay: 0.05 } });
    // decay group: lr 0.01, wd 0.05; no_decay group: lr 0.01, wd 0.
    expect(seen).toEqual([[0.01, 0.05, 0.01, 0]]);
    expect(step.lrWd).toEqual({ minLr: 0.01, maxLr: 0.01, minWeightDecay: 0, maxWeightDecay: 0.05 });
    expect(Math.abs(step.loss - expectedLossValue)).toBeLessThan(1e-6 * Math.abs(expectedLossValue));
    expect(step.globalGradNorm).toBeGreaterThan(0);
    const after = await valuesOf(model);
    for (const { name } of model.namedParameters()) expect(after.get(name)).not.toEqual(before.get(name));
    // Optimiser state is keyed by the official names.
    const state = lamb.getState();
    expect([...state.keys()]).toContain('exp_avg.sparse_encoder.sp_cnn.conv1.weight');
    expect([...state.keys()]).toContain('exp_avg_sq.mask_tokens.0');
    tf.dispose([...state.values(), images, active]);
    lamb.dispose();
    model.dispose();
  });

  it('computes the global norm over every gradient (a float64 reference from tf.grads values)', async () => {
    const model = new TinyModel(5);
    const lamb = new Lamb(paramGroupsFromVariables(model.namedParameters()));
    const images = imagesOf(2);
    const active = randomPatchMask(2, [2, 2], 0.5, { seed: 4 });
    const variables = model.namedParameters().map(({ variable }) => variable);
    const { value, grads } = tf.variableGrads(() => model.forward(images, { active }), variables);
    let squares = 0;
    for (const grad of Object.values(grads)) for (const g of await grad.data()) squares += g * g;
    tf.dispose([value, ...Object.values(grads)]);
    const { globalGradNorm } = await trainStep(model, lamb, images, { active });
    expect(Math.abs(globalGradNorm - Math.sqrt(squares)) / Math.sqrt(squares)).toBeLessThan(1e-5);
    tf.dispose([images, active]);
    lamb.dispose();
    model.dispose();
  });

  it('throws NonFiniteLossError naming the iteration and applies no update on a NaN loss', async () => {
    const model = new TinyModel();
    const lamb = new Lamb(paramGroupsFromVariables(model.namedParameters()));
    const images = imagesOf(3);
    model.nanAtCall = 1;
    const before = await valuesOf(model);
    const failing = trainStep(model, lamb, images, { iteration: 41 });
    await expect(failing).rejects.toThrow(NonFiniteLossError);
    await expect(failing).rejects.toThrow('the loss at iteration 41 is NaN; the step was not applied');
    const after = await valuesOf(model);
    for (const { name } of model.namedParameters()) await expectClose(after.get(name)!, before.get(name)!, { absolute: 0, relative: 0, label: name });
    const state = lamb.getState();
    expect([...state.keys()]).toEqual(['step']);
    tf.dispose([...state.values(), images]);
    lamb.dispose();
    model.dispose();
  });

  it("says so when the optimiser holds none of the model's parameters", async () => {
    const model = new TinyModel();
    const other = new TinyModel();
    const lamb = new Lamb(paramGroupsFromVariables(other.namedParameters()));
    const images = imagesOf(4);
    await expect(trainStep(model, lamb, images)).rejects.toThrow(
      "trainStep: none of the model's parameters is in the optimiser's parameter groups (build the groups from model.namedParameters())",
    );
    images.dispose();
    lamb.dispose();
    model.dispose();
    other.dispose();
  });
});
