// `sparkmim train-steps`: a few training steps on one fixed batch and mask, written out key by key, to
// compare a training step with the official PyTorch code (the golden files hold its `step1.*`, `step2.*`).
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from '@sparkmim/runtime';
import { NonFiniteLossError, defaultBetas, encodeSafetensors, trainStep } from '@sparkmim/trainer';
import { writeFileAtomic } from '@sparkmim/trainer/node';
import type { Optimizer, SafetensorsEntry } from '@sparkmim/trainer';
import { SeededRandom, torchState } from '@sparkmim/sparse-ops';
import { UsageError } from '../errors';
import { OPTIMIZER_NAMES, sparkOptimizer, type OptimizerName } from './optimizer';
import { modelFromWeightsOption, readWeightsOption } from './weights';
import { checkOutputFile, nhwcFromNchw, readTensor } from './inputs';

export const TRAIN_STEPS_HELP = `usage: sparkmim train-steps --weights W.safetensors --input F.safetensors:KEY --steps N --out OUT.safetensors [options]

Runs N training steps at a constant learning rate on one batch (and one mask), then writes the state dict
(official names, PyTorch layouts) with loss.i (the loss at step i, before its update) and grad_norm.i (the
global gradient norm at step i, before clipping).

  --weights FILE          SparK weights: safetensors or an official .pth (any kind 'sparkmim inspect' names;
                          encoder-only weights get a new decoder)
  --strip-prefix P        use only the keys of --weights that start with P, without it (e.g. param.)
  --input FILE:KEY        images [B, 3, H, W] (NCHW, ImageNet-normalised), H and W multiples of 32
  --active FILE:KEY       mask [B, 1, H/32, W/32], 1 = visible; default: a random mask from --seed
  --steps N               steps to run (>= 1)
  --optimizer NAME        lamb (default), adamw or sgd (momentum 0.9, Nesterov), as SparK's --opt
  --lr X                  learning rate (default 1e-3)
  --betas B1,B2           Adam betas (default: SparK's for the backbone: 0.9,0.95 ResNet, 0.9,0.999 ConvNeXt)
  --weight-decay X        weight decay of the 'decay' group (default 0.04; biases, norms, mask tokens get none)
  --clip X                global gradient-norm clip (default 5; 0 = none, adamw and sgd only)
  --mask-ratio X          for the random mask (default 0.6)
  --seed N                seed of the random mask (default 0)
  --record-steps          also write step<i>.<key>, the state after each step i = 1..N (as the golden files)
  --backend NAME          cpu (default), wasm, webgpu, tensorflow, tensorflow-gpu
  --out FILE              where to write the result (safetensors)
`;

function numberOption(name: string, text: string | undefined, fallback: number, check: (value: number) => boolean, expected: string): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || !check(value)) throw new UsageError(`--${name} is '${text}', expected ${expected}`);
  return value;
}

/** Runs `sparkmim train-steps`; returns the exit code. */
export async function trainStepsCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      weights: { type: 'string' },
      'strip-prefix': { type: 'string' },
      input: { type: 'string' },
      active: { type: 'string' },
      steps: { type: 'string' },
      optimizer: { type: 'string' },
      lr: { type: 'string' },
      betas: { type: 'string' },
      'weight-decay': { type: 'string' },
      clip: { type: 'string' },
      'mask-ratio': { type: 'string' },
      seed: { type: 'string' },
      'record-steps': { type: 'boolean' },
      backend: { type: 'string', default: 'cpu' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(TRAIN_STEPS_HELP);
    return 0;
  }
  for (const required of ['weights', 'input', 'steps', 'out'] as const) {
    if (values[required] === undefined) throw new UsageError(`train-steps needs --${required} (run 'sparkmim train-steps --help')`);
  }
  const steps = numberOption('steps', values.steps, 1, (value) => Number.isInteger(value) && value >= 1, 'a whole number >= 1');
  const optimizerName = (values.optimizer ?? 'lamb') as OptimizerName;
  if (!OPTIMIZER_NAMES.includes(optimizerName))
    throw new UsageError(`--optimizer is '${values.optimizer}', expected one of ${OPTIMIZER_NAMES.join(', ')}`);
  const lr = numberOption('lr', values.lr, 1e-3, (value) => value > 0, 'a number > 0');
  const weightDecay = numberOption('weight-decay', values['weight-decay'], 0.04, (value) => value >= 0, 'a number >= 0');
  const clip = numberOption('clip', values.clip, 5, (value) => value >= 0, 'a number >= 0 (0 = no clipping)');
  const maskRatio = numberOption('mask-ratio', values['mask-ratio'], 0.6, (value) => value > 0 && value < 1, 'a number in (0, 1)');
  const seed = numberOption('seed', values.seed, 0, (value) => Number.isSafeInteger(value), 'an integer');
  let betas: [number, number] | undefined;
  if (values.betas !== undefined) {
    const parts = values.betas.split(',').map((part) => Number(part));
    if (parts.length !== 2 || values.betas.split(',').some((part) => part.trim() === '') || !parts.every((beta) => beta >= 0 && beta < 1)) {
      throw new UsageError(`--betas is '${values.betas}', expected two numbers in [0, 1) separated by a comma, e.g. 0.9,0.95`);
    }
    betas = [parts[0], parts[1]];
  }

  // Everything the user gave is read and checked before the backend starts.
  await checkOutputFile('out', values.out!);
  const weights = await readWeightsOption('weights', values.weights!, values['strip-prefix']);
  const input = await readTensor('input', values.input!);
  if (input.shape.length !== 4 || input.shape[1] !== 3) {
    throw new UsageError(`--input ${values.input} is [${input.shape.join(', ')}], expected [B, 3, H, W] (NCHW RGB images)`);
  }
  const activeData = values.active === undefined ? undefined : await readTensor('active', values.active);
  if (activeData && (activeData.shape.length !== 4 || activeData.shape[1] !== 1 || activeData.shape[0] !== input.shape[0])) {
    throw new UsageError(
      `--active ${values.active} is [${activeData.shape.join(', ')}], expected [${input.shape[0]}, 1, h, w] (NCHW, one value per patch)`,
    );
  }
  if (activeData && Array.from(activeData.data as ArrayLike<number>).some((value) => value !== 0 && value !== 1)) {
    throw new UsageError(`--active ${values.active} holds values other than 0 and 1 (1 = visible patch, 0 = masked)`);
  }

  await setupBackend(values.backend!);
  const model = await modelFromWeightsOption('weights', weights, { maskRatio });
  const images = nhwcFromNchw(input);
  const active = activeData ? nhwcFromNchw(activeData) : undefined;
  let optimizer: Optimizer | undefined;
  try {
    const [height, width] = images.shape.slice(1, 3);
    const ratio = model.downsampleRatio;
    if (height % ratio !== 0 || width % ratio !== 0) {
      throw new UsageError(`--input is ${height}x${width}, expected sides that are multiples of ${ratio} (the encoder's downsampling)`);
    }
    if (active && (active.shape[1] !== height / ratio || active.shape[2] !== width / ratio)) {
      throw new UsageError(
        `--active is ${active.shape[1]}x${active.shape[2]} patches, expected ${height / ratio}x${width / ratio} for ${height}x${width} images`,
      );
    }
    if (!betas) {
      try {
        betas = defaultBetas(model.backbone.kind);
      } catch {
        throw new UsageError(`no SparK default betas for a '${model.backbone.kind}' backbone: pass --betas, e.g. 0.9,0.999`);
      }
    }
    optimizer = sparkOptimizer(optimizerName, model, { betas, clip });
    const out = new Map<string, SafetensorsEntry>();
    const lrWd = { lr, weightDecay };
    for (let step = 0; step < steps; step++) {
      // Without --active, every step sees the same random mask (one stream, restarted from --seed).
      const random = new SeededRandom(seed).next;
      let result: Awaited<ReturnType<typeof trainStep>>;
      try {
        result = await trainStep(model, optimizer, images, { active, random, lrWd, iteration: step });
      } catch (error) {
        if (error instanceof NonFiniteLossError) throw new UsageError(`step ${step}: the loss is ${error.loss}; lower --lr or check the input`);
        throw error;
      }
      out.set(`loss.${step}`, { dtype: 'F32', shape: [], data: new Float32Array([result.loss]) });
      out.set(`grad_norm.${step}`, { dtype: 'F32', shape: [], data: new Float32Array([result.globalGradNorm]) });
      process.stdout.write(`step ${step}: loss ${result.loss.toPrecision(8)}, grad norm ${result.globalGradNorm.toPrecision(8)}\n`);
      if (values['record-steps'] || step === steps - 1) {
        for (const [name, tensor] of await torchState(model)) {
          const entry: SafetensorsEntry = { dtype: 'F32', shape: tensor.shape, data: tensor.data };
          if (values['record-steps']) out.set(`step${step + 1}.${name}`, entry);
          if (step === steps - 1) out.set(name, entry);
        }
      }
    }
    const metadata = {
      command: `train-steps --steps ${steps} --optimizer ${optimizerName} --lr ${lr} --betas ${betas.join(',')} --weight-decay ${weightDecay} --clip ${clip}`,
      weights: values.weights!,
      input: values.input!,
      active: values.active ?? `random (mask ratio ${maskRatio}, seed ${seed})`,
      backend: tf.getBackend(),
      layout: 'PyTorch (Conv2d OIHW, ConvTranspose2d (in, out, kH, kW), mask_tokens (1, C, 1, 1))',
    };
    await writeFileAtomic(values.out!, encodeSafetensors(out, metadata));
    process.stdout.write(`wrote ${values.out} (${out.size} tensors)\n`);
    return 0;
  } finally {
    optimizer?.dispose();
    tf.dispose([images, ...(active ? [active] : [])]);
    model.dispose();
  }
}
