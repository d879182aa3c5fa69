// `sparkmim forward`: one forward pass of a SparK checkpoint on given images (and mask), every intermediate
// written in PyTorch's layout, to compare with the official code key by key.
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { setupBackend } from '@sparkmim/runtime';
import { type SparkModel, encodeSafetensors, type SafetensorsEntry, type SafetensorsTensor } from '@sparkmim/trainer';
import { writeFileAtomic } from '@sparkmim/trainer/node';
import { UsageError } from '../errors';
import { checkOutputFile, nhwcFromNchw, oneLine, readTensor } from './inputs';
import { modelFromWeightsOption, readWeightsOption } from './weights';

export const FORWARD_HELP = `usage: sparkmim forward --weights W.safetensors --input F.safetensors:KEY --out OUT.safetensors [options]

Builds the SparK model a state dict implies (official names, PyTorch layouts), runs one forward pass and
writes, in PyTorch layout (NCHW), F32: loss, enc.0..enc.3 (encoder features, largest first), dec_in.0..dec_in.3
(densified decoder inputs, smallest first), rec (raw decoder output), vis.inp, vis.masked, vis.rec_or_inp,
and active (the mask used).

  --weights FILE          SparK weights: safetensors or an official .pth (any kind 'sparkmim inspect' names;
                          encoder-only weights get a new decoder)
  --strip-prefix P        use only the keys of --weights that start with P, without it (e.g. param.)
  --input FILE:KEY        images [B, 3, H, W] (NCHW), H and W multiples of 32
  --active FILE:KEY       mask [B, 1, H/32, W/32], 1 = visible; default: a random mask from --seed
  --mode train|eval       batch statistics (train, default) or running statistics (eval)
  --mask-ratio X          for the random mask (default 0.6)
  --seed N                seed of the random mask (default 0)
  --backend NAME          cpu (default), wasm, webgpu, tensorflow, tensorflow-gpu
  --out FILE              where to write the result (safetensors)
`;

/** A `[B, C, H, W]` file tensor as our `[B, H, W, C]`, checking its rank and channel count. */
function nhwcOf(option: string, tensor: SafetensorsTensor, channels: number, what: string): tf.Tensor4D {
  if (tensor.shape.length !== 4 || tensor.shape[1] !== channels) {
    throw new UsageError(`--${option}: expected ${what} [B, ${channels}, H, W] (NCHW), got [${tensor.shape.join(', ')}]`);
  }
  return nhwcFromNchw(tensor);
}

/** Our `[B, H, W, C]` (or a scalar) as an F32 safetensors entry in PyTorch's layout. */
async function torchEntry(tensor: tf.Tensor): Promise<SafetensorsEntry> {
  const torchTensor = tensor.rank === 4 ? tf.transpose(tensor, [0, 3, 1, 2]) : tf.clone(tensor);
  const data = (await torchTensor.data()) as Float32Array;
  const entry = { dtype: 'F32' as const, shape: torchTensor.shape, data: Float32Array.from(data) };
  torchTensor.dispose();
  return entry;
}

/** Runs `sparkmim forward`; returns the exit code. */
export async function forwardCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      weights: { type: 'string' },
      'strip-prefix': { type: 'string' },
      input: { type: 'string' },
      active: { type: 'string' },
      mode: { type: 'string', default: 'train' },
      'mask-ratio': { type: 'string' },
      seed: { type: 'string' },
      backend: { type: 'string', default: 'cpu' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(FORWARD_HELP);
    return 0;
  }
  for (const required of ['weights', 'input', 'out'] as const) {
    if (values[required] === undefined) throw new UsageError(`forward needs --${required} (run 'sparkmim forward --help')`);
  }
  if (values.mode !== 'train' && values.mode !== 'eval') throw new UsageError(`--mode is '${values.mode}', expected train or eval`);
  const maskRatio = values['mask-ratio'] === undefined ? 0.6 : Number(values['mask-ratio']);
  if (!(maskRatio > 0 && maskRatio < 1)) throw new UsageError(`--mask-ratio is '${values['mask-ratio']}', expected a number in (0, 1)`);
  const seed = values.seed === undefined ? 0 : Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new UsageError(`--seed is '${values.seed}', expected a whole number`);

  // Everything the user gave is read and checked before the backend starts.
  await checkOutputFile('out', values.out!);
  const weights = await readWeightsOption('weights', values.weights!, values['strip-prefix']);
  await setupBackend(values.backend!);
  const model = await modelFromWeightsOption('weights', weights, { maskRatio });
  const tensors: tf.TensorContainer[] = [];
  try {
    const input = await readTensor('input', values.input!);
    const images = nhwcOf('input', input, 3, 'images');
    tensors.push(images);
    const ratio = model.downsampleRatio;
    for (const [axis, size] of [
      ['height', input.shape[2]],
      ['width', input.shape[3]],
    ] as const) {
      if (size % ratio === 0 && size > 0) continue;
      const lower = Math.floor(size / ratio) * ratio;
      const suggestion = lower > 0 ? `${lower} or ${lower + ratio}` : `${ratio}`;
      throw new UsageError(
        `--input: images [${input.shape.join(', ')}] have ${axis} ${size}, which is not a multiple of ${ratio} (use ${suggestion})`,
      );
    }
    let active: tf.Tensor4D | undefined;
    if (values.active !== undefined) {
      const mask = await readTensor('active', values.active);
      const expected = [input.shape[0], 1, input.shape[2] / ratio, input.shape[3] / ratio];
      if (mask.shape.length !== 4 || mask.shape.some((size, axis) => size !== expected[axis])) {
        throw new UsageError(
          `--active: mask [${mask.shape.join(', ')}] does not fit images [${input.shape.join(', ')}]: expected [${expected.join(', ')}]`,
        );
      }
      const bad = Array.from(mask.data as ArrayLike<number>).findIndex((value) => value !== 0 && value !== 1);
      if (bad >= 0) throw new UsageError(`--active: the mask must hold only 0 and 1, got ${mask.data[bad]} at index ${bad}`);
      active = nhwcOf('active', mask, 1, 'a mask');
      tensors.push(active);
    }
    model.train(values.mode === 'train');
    let output: ReturnType<SparkModel['forwardWithIntermediates']>;
    try {
      output = model.forwardWithIntermediates(images, { active, seed });
    } catch (error) {
      // Shapes the user gave (an image size that is not a multiple of 32, a mask that does not fit).
      throw new UsageError(oneLine((error as Error).message));
    }
    const vis = model.visualizeOutput(images, output);
    tensors.push(output, vis);
    const entries = new Map<string, SafetensorsEntry>();
    entries.set('loss', await torchEntry(output.loss));
    for (const [i, features] of output.features.entries()) entries.set(`enc.${i}`, await torchEntry(features));
    for (const [i, level] of output.toDecoder.entries()) entries.set(`dec_in.${i}`, await torchEntry(level));
    entries.set('rec', await torchEntry(output.reconstruction));
    entries.set('vis.inp', await torchEntry(vis.input));
    entries.set('vis.masked', await torchEntry(vis.masked));
    entries.set('vis.rec_or_inp', await torchEntry(vis.recOrInput));
    entries.set('active', await torchEntry(output.active));
    const metadata = { command: 'sparkmim forward', weights: values.weights!, mode: values.mode, backend: values.backend! };
    await writeFileAtomic(values.out!, encodeSafetensors(entries, metadata));
    const loss = (entries.get('loss')!.data as Float32Array)[0];
    process.stdout.write(`${JSON.stringify({ loss, mode: values.mode, out: values.out })}\n`);
    return 0;
  } finally {
    tf.dispose(tensors);
    model.dispose();
  }
}
