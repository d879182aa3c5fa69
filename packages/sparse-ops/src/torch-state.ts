import * as tf from '@tensorflow/tfjs-core';
import type { Module, NamedVariable, TorchLayout } from './module';

/** A tensor in PyTorch's layout as JS data: what a safetensors file or a `.pth` reader yields. */
export interface TorchTensorData {
  shape: number[];
  data: Float32Array;
}

/**
 * Our shape for a PyTorch shape under a layout (and back with {@link torchShapeOf}).
 *
 * @example
 * ourShapeOf([64, 3, 7, 7], 'conv2d'); // [7, 7, 3, 64]
 */
export function ourShapeOf(torchShape: number[], layout: TorchLayout): number[] {
  switch (layout) {
    case 'conv2d': {
      const [out, inPerGroup, kernelH, kernelW] = torchShape;
      return [kernelH, kernelW, inPerGroup, out];
    }
    case 'conv2dTranspose': {
      const [inC, outC, kernelH, kernelW] = torchShape;
      return [kernelH, kernelW, outC, inC];
    }
    case 'linear':
      return [torchShape[1], torchShape[0]];
    case 'token':
      return [torchShape[1]];
    case 'same':
      return torchShape;
  }
}

/**
 * PyTorch's shape for one of ours under a layout.
 *
 * @example
 * torchShapeOf([512], 'token'); // [1, 512, 1, 1]
 */
export function torchShapeOf(ourShape: number[], layout: TorchLayout): number[] {
  switch (layout) {
    case 'conv2d': {
      const [kernelH, kernelW, inPerGroup, out] = ourShape;
      return [out, inPerGroup, kernelH, kernelW];
    }
    case 'conv2dTranspose': {
      const [kernelH, kernelW, outC, inC] = ourShape;
      return [inC, outC, kernelH, kernelW];
    }
    case 'linear':
      return [ourShape[1], ourShape[0]];
    case 'token':
      return [1, ourShape[0], 1, 1];
    case 'same':
      return ourShape;
  }
}

const toOurs: Record<TorchLayout, number[] | undefined> = {
  conv2d: [2, 3, 1, 0], // (O, I, kH, kW) → [kH, kW, I, O]
  conv2dTranspose: [2, 3, 1, 0], // (I, O, kH, kW) → [kH, kW, O, I]
  linear: [1, 0],
  token: undefined,
  same: undefined,
};
const toTorch: Record<TorchLayout, number[] | undefined> = {
  conv2d: [3, 2, 0, 1], // [kH, kW, I, O] → (O, I, kH, kW)
  conv2dTranspose: [3, 2, 0, 1], // [kH, kW, O, I] → (I, O, kH, kW)
  linear: [1, 0],
  token: undefined,
  same: undefined,
};

/**
 * A PyTorch-layout tensor converted to our layout (caller owns the result).
 *
 * @example
 * const filter = fromTorchLayout({ shape: [64, 3, 7, 7], data }, 'conv2d'); // [7, 7, 3, 64]
 */
export function fromTorchLayout(torch: TorchTensorData, layout: TorchLayout): tf.Tensor {
  return tf.tidy(() => {
    const stored = tf.tensor(torch.data, torch.shape, 'float32');
    const permutation = toOurs[layout];
    if (permutation) return tf.transpose(stored, permutation);
    return tf.reshape(stored, ourShapeOf(torch.shape, layout));
  });
}

/**
 * One of our tensors converted to PyTorch's layout (caller owns the result).
 *
 * @example
 * const weight = toTorchLayout(conv.filter, 'conv2d'); // [kH, kW, I, O] → (O, I, kH, kW)
 */
export function toTorchLayout(tensor: tf.Tensor, layout: TorchLayout): tf.Tensor {
  return tf.tidy(() => {
    const permutation = toTorch[layout];
    if (permutation) return tf.transpose(tensor, permutation);
    return tf.reshape(tensor, torchShapeOf(tensor.shape, layout));
  });
}

export interface LoadStateOptions {
  /**
   * Every key must match both ways (default true). Shapes must agree in either mode: a mis-shaped key is
   * always an error, as in PyTorch's `load_state_dict(strict=False)`.
   */
  strict?: boolean;
  /** Prefix of the module's entries inside `state` (e.g. `sparse_encoder.sp_cnn.`). */
  prefix?: string;
  /** Error messages start with this. */
  caller?: string;
}

export interface LoadStateReport {
  /** Module entries absent from the state (only when not strict). */
  missing: string[];
  /** State keys under the prefix that the module does not have (only when not strict). */
  unexpected: string[];
}

/**
 * Copies a PyTorch state dict (official names, PyTorch layouts) into a module's parameters and buffers,
 * converting layouts. Strict by default: missing, unexpected and mis-shaped keys are all listed in one
 * error.
 *
 * @example
 * loadTorchState(backbone, stateFromSafetensors, { prefix: 'sparse_encoder.sp_cnn.' });
 */
export function loadTorchState(
  module: Module,
  state: Map<string, TorchTensorData>,
  { strict = true, prefix = '', caller = 'loadTorchState' }: LoadStateOptions = {},
): LoadStateReport {
  const entries = module.stateEntries(prefix);
  const known = new Set(entries.map((entry) => entry.name));
  const missing: string[] = [];
  const misShaped: string[] = [];
  const assignments: [NamedVariable, TorchTensorData][] = [];
  for (const entry of entries) {
    const stored = state.get(entry.name);
    if (!stored) {
      missing.push(entry.name);
      continue;
    }
    const expectedTorchShape = torchShapeOf(entry.variable.shape, entry.layout);
    if (!sameShape(stored.shape, expectedTorchShape)) {
      misShaped.push(`${entry.name}: expected [${expectedTorchShape.join(', ')}], got [${stored.shape.join(', ')}]`);
      continue;
    }
    assignments.push([entry, stored]);
  }
  const unexpected = [...state.keys()].filter((key) => key.startsWith(prefix) && !known.has(key)).sort();
  const problems: string[] = [];
  if (misShaped.length) problems.push(`mis-shaped keys:\n  ${misShaped.join('\n  ')}`);
  if (strict && missing.length) problems.push(`missing keys:\n  ${missing.join('\n  ')}`);
  if (strict && unexpected.length) problems.push(`unexpected keys:\n  ${unexpected.join('\n  ')}`);
  if (problems.length) throw new Error(`${caller}: the state dict does not fit the model\n${problems.join('\n')}`);
  for (const [entry, stored] of assignments) {
    const value = fromTorchLayout(stored, entry.layout);
    entry.variable.assign(value);
    value.dispose();
  }
  return { missing, unexpected };
}

/**
 * A module's parameters and buffers as a PyTorch state dict (official names, PyTorch layouts, F32 data).
 *
 * @example
 * const state = await torchState(backbone, 'sparse_encoder.sp_cnn.');
 */
export async function torchState(module: Module, prefix = ''): Promise<Map<string, TorchTensorData>> {
  const state = new Map<string, TorchTensorData>();
  for (const entry of module.stateEntries(prefix)) {
    const torchTensor = toTorchLayout(entry.variable, entry.layout);
    const data = (await torchTensor.data()) as Float32Array;
    state.set(entry.name, { shape: torchTensor.shape, data: Float32Array.from(data) });
    torchTensor.dispose();
  }
  return state;
}

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((size, i) => size === b[i]);
}
