import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { createBackboneFromConfig } from '@sparkmim/backbones';
import { toTorchLayout } from '@sparkmim/sparse-ops';
import { describeBackends, goldenErrorReport, goldenInputs, loadGolden, nchwValues, type GoldenFile } from '@sparkmim/test-utils';
import {
  Lamb,
  paramGroupsFromVariables,
  SparkModel,
  sparkArchitectureFromState,
  stripStatePrefix,
  trainStep,
  type SparkForwardOutput,
} from '../index';

// Drop path against the official code. PyTorch's draws cannot be reproduced by our generator, so the
// golden files (made by tools/peer-cases/make_goldens_droppath.py from the official SparK code) store the
// per-sample keep decisions every DropPath module drew (drop_path.keep.<pass>: [blocks with a rate > 0, B],
// in call order), and the test replays them through the forward option `random`: dropPath keeps sample i
// when its draw is below 1 - rate, so a draw of 0 keeps it and one just below 1 drops it.
const GOLDENS = path.resolve(__dirname, '../../test/goldens');
const FILES = ['resnet18_tiny_droppath.safetensors', 'convnext_tiny_droppath.safetensors'];
// The bounds of spark-model.golden.test.ts: forward 1e-4, gradients 1e-3, LAMB steps 1e-4 (relative to the
// largest magnitude of each expected tensor).
const FORWARD_TOLERANCE = 1e-4;
const GRADIENT_TOLERANCE = 1e-3;
const STEP_TOLERANCE = 1e-4;

const { worstErrors, expectGoldenClose } = goldenErrorReport();

/** A `random` that replays the official keep decisions of one forward pass, counting what was drawn. */
function replay(file: GoldenFile, pass: number): { random: () => number; drawn: () => number; total: number } {
  const decisions = file.get(`drop_path.keep.${pass}`).data;
  let next = 0;
  return {
    random: () => {
      if (next >= decisions.length) throw new Error(`replay: more than the ${decisions.length} drop-path draws of pass ${pass}`);
      return decisions[next++] === 1 ? 0 : 1 - 2 ** -24;
    },
    drawn: () => next,
    total: decisions.length,
  };
}

/** The golden's model, built with its drop-path rate (a state dict does not hold it), weights loaded. */
function goldenModel(file: GoldenFile): SparkModel {
  const state = stripStatePrefix(file.tensors, 'param.');
  const architecture = sparkArchitectureFromState(state);
  const backbone = createBackboneFromConfig({ ...architecture.backbone, dropPathRate: Number(file.metadata.drop_path_rate) });
  const model = new SparkModel({ backbone, decoderWidth: architecture.decoderWidth, densifyNorm: architecture.densifyNorm });
  model.loadState(state);
  return model;
}

describeBackends('SparkModel with drop path on the official draws', ({ backend }) => {
  for (const fileName of FILES) {
    const label = (key: string) => `${backend} ${fileName} ${key}`;

    it(`${fileName}: the training pass with the official keep decisions matches enc.*, dec_in.*, rec, loss, the running statistics, grad.* and grad_norms`, async () => {
      const file = loadGolden(fileName, GOLDENS);
      const decisions = file.get('drop_path.keep.0').data;
      // The case is only a test of drop path if both outcomes occur.
      expect(decisions.includes(0) && decisions.includes(1)).toBe(true);
      const model = goldenModel(file);
      const { images, active } = goldenInputs(file);
      const parameters = model.parameters();
      const draws = replay(file, 0);
      let output!: SparkForwardOutput;
      const { value: loss, grads: byVariable } = tf.variableGrads(
        () => {
          output = model.forwardWithIntermediates(images, { active, random: draws.random });
          [...output.features, ...output.toDecoder, output.reconstruction].forEach((tensor) => tf.keep(tensor));
          tf.keep(output.active);
          return output.loss;
        },
        parameters.map(({ variable }) => variable),
      );
      expect(draws.drawn()).toBe(draws.total);

      for (const [i, features] of output.features.entries()) {
        await expectGoldenClose(await nchwValues(features), file.get(`enc.${i}`).data, FORWARD_TOLERANCE, label(`enc.${i}`));
      }
      for (const [i, level] of output.toDecoder.entries()) {
        await expectGoldenClose(await nchwValues(level), file.get(`dec_in.${i}`).data, FORWARD_TOLERANCE, label(`dec_in.${i}`));
      }
      await expectGoldenClose(await nchwValues(output.reconstruction), file.get('rec').data, FORWARD_TOLERANCE, label('rec'));
      await expectGoldenClose(loss, file.get('loss').data, FORWARD_TOLERANCE, label('loss'));
      const buffers = new Map(model.namedBuffers().map((entry) => [entry.name, entry.variable]));
      for (const key of file.keys('after_fwd.')) {
        await expectGoldenClose(buffers.get(key.slice('after_fwd.'.length))!, file.get(key).data, FORWARD_TOLERANCE, label(key));
      }

      const grads = new Map(parameters.map(({ name, variable }) => [name, byVariable[variable.name] ?? tf.zerosLike(variable)]));
      for (const key of file.keys('grad.')) {
        const { name, layout } = parameters.find((parameter) => parameter.name === key.slice('grad.'.length))!;
        const torchGrad = toTorchLayout(grads.get(name)!, layout);
        await expectGoldenClose(torchGrad, file.get(key).data, GRADIENT_TOLERANCE, label(key));
        torchGrad.dispose();
      }
      const names = JSON.parse(file.metadata.param_names) as string[];
      const norms = tf.tidy(() => tf.stack(names.map((name) => tf.norm(grads.get(name)!))));
      const normValues = await norms.data();
      const expectedNorms = file.get('grad_norms').data;
      let worst = 0;
      for (let i = 0; i < names.length; i++) worst = Math.max(worst, Math.abs(normValues[i] - expectedNorms[i]) / expectedNorms[i]);
      worstErrors.set(label('grad_norms (each entry relative to itself)'), worst);
      expect(worst).toBeLessThanOrEqual(GRADIENT_TOLERANCE);

      tf.dispose([images, active, loss, output, norms, ...grads.values()]);
      model.dispose();
    });

    it(`${fileName}: two LAMB steps, each forward with its official keep decisions, match step1.*, step2.*, the losses and gradient norms`, async () => {
      const file = loadGolden(fileName, GOLDENS);
      const model = goldenModel(file);
      const { images, active } = goldenInputs(file);
      // The golden's LAMB: lr 1e-3, weight decay 0.04 (none on biases, norms, mask tokens), betas (0.9, 0.95), clip 5.
      const lamb = new Lamb(paramGroupsFromVariables(model.namedParameters()), { betas: [0.9, 0.95], maxGradNorm: 5 });
      const lrWd = { lr: 1e-3, weightDecay: 0.04 };
      const steps = [
        { pass: 0, loss: 'loss', gradNorm: 'lamb.global_grad_norm_step1', after: 'step1.' },
        { pass: 1, loss: 'loss_step1', gradNorm: 'lamb.global_grad_norm_step2', after: 'step2.' },
      ];
      for (const { pass, loss, gradNorm, after } of steps) {
        const draws = replay(file, pass);
        const result = await trainStep(model, lamb, images, { active, random: draws.random, lrWd });
        expect(draws.drawn()).toBe(draws.total);
        await expectGoldenClose([result.loss], file.get(loss).data, FORWARD_TOLERANCE, label(loss));
        await expectGoldenClose([result.globalGradNorm], file.get(gradNorm).data, GRADIENT_TOLERANCE, label(gradNorm));
        const state = await model.stateDict();
        for (const key of file.keys(after)) {
          await expectGoldenClose(state.get(key.slice(after.length))!.data, file.get(key).data, STEP_TOLERANCE, label(key));
        }
      }
      tf.dispose([images, active]);
      lamb.dispose();
      model.dispose();
    });

    it(`${fileName}: evaluation mode draws nothing and matches loss_eval and enc_eval.*`, async () => {
      const file = loadGolden(fileName, GOLDENS);
      const model = goldenModel(file).eval();
      const { images, active } = goldenInputs(file);
      const output = model.forwardWithIntermediates(images, {
        active,
        random: () => {
          throw new Error('evaluation mode drew a random number');
        },
      });
      await expectGoldenClose(output.loss, file.get('loss_eval').data, FORWARD_TOLERANCE, label('loss_eval'));
      for (const [i, features] of output.features.entries()) {
        await expectGoldenClose(await nchwValues(features), file.get(`enc_eval.${i}`).data, FORWARD_TOLERANCE, label(`enc_eval.${i}`));
      }
      tf.dispose([images, active, output]);
      model.dispose();
    });
  }
});
