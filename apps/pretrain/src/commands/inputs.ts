// Reading the commands' `FILE:KEY` tensor inputs and their safetensors files, with errors in terms of the
// command-line option that named them.
import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { decodeSafetensors, type SafetensorsTensor } from '@sparkmim/trainer';
import { UsageError } from '../errors';

/** Multi-line library messages (lists of keys) as one line. */
export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, '; ');
}

/** `FILE:KEY`, split at the last colon so that Windows drive letters survive. */
export function fileAndKey(option: string, text: string): { file: string; key: string } {
  const colon = text.lastIndexOf(':');
  if (colon <= 0 || colon === text.length - 1) throw new UsageError(`--${option} is '${text}', expected FILE.safetensors:KEY`);
  return { file: text.slice(0, colon), key: text.slice(colon + 1) };
}

/** The bytes of `file`, or a usage error naming `--option` when it cannot be read. */
export async function readBytes(option: string, file: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(file));
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new UsageError(`--${option}: cannot read ${file}${code === 'ENOENT' ? ': no such file' : `: ${(error as Error).message}`}`);
  }
}

/** Checks, before any work, that `--option FILE` can be written: its folder exists and is a folder. */
export async function checkOutputFile(option: string, file: string): Promise<void> {
  const folder = path.dirname(path.resolve(file));
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(folder);
  } catch {
    throw new UsageError(`--${option}: the folder of ${file} (${folder}) does not exist: create it first`);
  }
  if (!info.isDirectory()) throw new UsageError(`--${option}: ${folder} is a file, expected the folder of ${file}`);
  if ((await stat(file).catch(() => undefined))?.isDirectory()) throw new UsageError(`--${option}: ${file} is a folder, expected a file name`);
}

/** The tensor a `--option FILE:KEY` names, or a usage error (unreadable file, bad safetensors, no such key). */
export async function readTensor(option: string, spec: string): Promise<SafetensorsTensor> {
  const { file, key } = fileAndKey(option, spec);
  const bytes = await readBytes(option, file);
  let tensors: Map<string, SafetensorsTensor>;
  try {
    tensors = decodeSafetensors(bytes, { source: file }).tensors;
  } catch (error) {
    throw new UsageError(`--${option}: ${oneLine((error as Error).message)}`);
  }
  const tensor = tensors.get(key);
  if (!tensor) {
    const keys = [...tensors.keys()];
    const listed = keys.length <= 8 ? keys.join(', ') : `${keys.slice(0, 8).join(', ')}, ... (${keys.length} keys)`;
    throw new UsageError(`--${option}: ${file} has no key '${key}' (it has ${listed})`);
  }
  return tensor;
}

/** A `[B, C, H, W]` file tensor as our `[B, H, W, C]` (F32); the caller has checked its rank. */
export function nhwcFromNchw(tensor: SafetensorsTensor): tf.Tensor4D {
  const values = Float32Array.from(tensor.data as ArrayLike<number>);
  return tf.tidy(() => tf.transpose(tf.tensor4d(values, tensor.shape as [number, number, number, number]), [0, 2, 3, 1]));
}
