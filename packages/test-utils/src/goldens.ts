import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

/** One tensor of a golden file, as stored: F32, PyTorch layout. */
export interface GoldenTensor {
  shape: number[];
  data: Float32Array;
}

export interface GoldenFile {
  name: string;
  tensors: Map<string, GoldenTensor>;
  metadata: Record<string, string>;
  /** The tensor under `key`; throws naming the key when it is absent. */
  get(key: string): GoldenTensor;
  /** Keys that start with `prefix`. */
  keys(prefix?: string): string[];
}

/**
 * The goldens folder: $SPARKMIM_GOLDENS, else `shared/goldens` beside the repository (where CI and the
 * developers' checkouts find it), else `shared/goldens` inside it.
 */
export function goldensDir(): string {
  if (process.env.SPARKMIM_GOLDENS) return process.env.SPARKMIM_GOLDENS;
  const repoRoot = path.resolve(__dirname, '../../..');
  const candidates = [path.join(repoRoot, '../shared/goldens'), path.join(repoRoot, 'shared/goldens')];
  return candidates.find((dir) => fs.existsSync(dir)) ?? candidates[0];
}

/** The golden `.safetensors` files present (every case, so new cases are checked without code changes). */
export function goldenFileNames(): string[] {
  const dir = goldensDir();
  if (!fs.existsSync(dir)) {
    throw new Error(`golden files not found at ${dir}: set SPARKMIM_GOLDENS to the folder holding *.safetensors`);
  }
  return fs
    .readdirSync(dir)
    .filter((file) => file.endsWith('.safetensors'))
    .sort();
}

const cache = new Map<string, GoldenFile>();

/**
 * Reads a golden safetensors file (all tensors F32, as its README says) from `dir` (default
 * {@link goldensDir}; a package's own goldens, e.g. `test/goldens`, pass their folder). Cached per file.
 */
export function loadGolden(fileName: string, dir = goldensDir()): GoldenFile {
  const file = path.join(dir, fileName);
  const cached = cache.get(file);
  if (cached) return cached;
  const bytes = fs.readFileSync(file);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, unknown>;
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, GoldenTensor>();
  let metadata: Record<string, string> = {};
  for (const [key, entry] of Object.entries(header)) {
    if (key === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (dtype !== 'F32') throw new Error(`${fileName}: ${key} has dtype ${dtype}, expected F32`);
    const slice = bytes.subarray(dataStart + offsets[0], dataStart + offsets[1]);
    const data = new Float32Array(slice.byteLength / 4);
    new Uint8Array(data.buffer).set(slice);
    tensors.set(key, { shape, data });
  }
  const golden: GoldenFile = {
    name: fileName,
    tensors,
    metadata,
    get(key) {
      const tensor = tensors.get(key);
      if (!tensor) throw new Error(`${fileName}: no key '${key}'`);
      return tensor;
    },
    keys(prefix = '') {
      return [...tensors.keys()].filter((key) => key.startsWith(prefix)).sort();
    },
  };
  cache.set(file, golden);
  return golden;
}

/** A golden NCHW activation as an NHWC tensor (our layout). */
export function nchwToNhwc(golden: GoldenTensor): tf.Tensor4D {
  return tf.tidy(() => tf.tensor4d(golden.data, golden.shape as [number, number, number, number]).transpose([0, 2, 3, 1]));
}

/** A golden tensor as a tfjs tensor in its stored (PyTorch) layout. */
export function goldenTensor(golden: GoldenTensor): tf.Tensor {
  return tf.tensor(golden.data, golden.shape);
}

/** A golden file's `input` images `[B, 3, H, W]` and `active` mask `[B, 1, h, w]` as NHWC tensors. */
export function goldenInputs(golden: GoldenFile): { images: tf.Tensor4D; active: tf.Tensor4D } {
  return { images: nchwToNhwc(golden.get('input')), active: nchwToNhwc(golden.get('active')) };
}

/** An NHWC result `[B, H, W, C]` read back in the NCHW layout the goldens store. */
export async function nchwValues(tensor: tf.Tensor4D): Promise<Float32Array> {
  const nchw = tf.transpose(tensor, [0, 3, 1, 2]);
  const values = (await nchw.data()) as Float32Array;
  nchw.dispose();
  return values;
}
