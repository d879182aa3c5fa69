import * as tf from '@tensorflow/tfjs-core';
import type { NamedVariable, TorchLayout } from './module';

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

/** What {@link loadTorchState} and {@link torchState} read and write: a module, or anything listing its entries. */
export interface StateEntrySource {
  /** Parameters then buffers in PyTorch's `state_dict()` order (as `Module.stateEntries` gives them). */
  stateEntries(): NamedVariable[];
}

export interface LoadStateOptions {
  /**
   * Every key must match both ways (default true). Shapes must agree in either mode: a mis-shaped key is
   * always an error, as in PyTorch's `load_state_dict(strict=False)`.
   */
  strict?: boolean;
  /**
   * Prepended to the module's names: the module's entries sit under this prefix inside `state` (e.g.
   * `sparse_encoder.sp_cnn.` to load a backbone out of a full SparK state dict). Keys of `state` outside
   * the prefix are not the module's and are ignored.
   */
  prefix?: string;
  /**
   * Applied to `state` first: only its keys that start with this are used, with it removed (e.g. `param.`
   * in the golden files). A prefix that matches no key is an error.
   */
  stripPrefix?: string;
  /** Keys of `state` (after `stripPrefix`) skipped without a word: known leftovers such as deprecated buffers. */
  ignore?: readonly string[];
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
 * converting layouts: the one loader of the project. Everything is checked (names, shapes, value counts)
 * before anything changes, and every problem is listed in one error; strict by default.
 *
 * @example
 * loadTorchState(backbone, fullSparkState, { prefix: 'sparse_encoder.sp_cnn.' });
 * loadTorchState(model, golden, { stripPrefix: 'param.' });
 */
export function loadTorchState(
  target: StateEntrySource,
  state: ReadonlyMap<string, TorchTensorData>,
  { strict = true, prefix = '', stripPrefix = '', ignore = [], caller = 'loadTorchState' }: LoadStateOptions = {},
): LoadStateReport {
  const view = selectState(state, stripPrefix, caller);
  for (const key of ignore) view.delete(key);
  const entries = target.stateEntries().map((entry) => ({ ...entry, name: prefix + entry.name }));
  const known = new Set(entries.map((entry) => entry.name));
  const missing: string[] = [];
  const misShaped: string[] = [];
  const assignments: [NamedVariable, TorchTensorData][] = [];
  for (const entry of entries) {
    const stored = view.get(entry.name);
    if (!stored) {
      missing.push(entry.name);
      continue;
    }
    const expectedTorchShape = torchShapeOf(entry.variable.shape, entry.layout);
    if (!sameShape(stored.shape, expectedTorchShape)) {
      misShaped.push(`${entry.name}: expected [${expectedTorchShape.join(', ')}], got [${stored.shape.join(', ')}]`);
      continue;
    }
    const count = expectedTorchShape.reduce((a, b) => a * b, 1);
    if (stored.data.length !== count) {
      misShaped.push(`${entry.name}: shape [${expectedTorchShape.join(', ')}] holds ${count} values, got ${stored.data.length}`);
      continue;
    }
    assignments.push([entry, stored]);
  }
  const unexpected = [...view.keys()].filter((key) => key.startsWith(prefix) && !known.has(key)).sort();
  const problems: string[] = [];
  if (misShaped.length) problems.push(`mis-shaped keys:${keyLines(misShaped)}`);
  if (strict && missing.length) problems.push(`missing keys:${keyLines(missing)}`);
  if (strict && unexpected.length) problems.push(`unexpected keys:${keyLines(unexpected)}`);
  if (problems.length) throw new Error(`${caller}: the state dict does not fit the model\n${problems.join('\n')}`);
  for (const [entry, stored] of assignments) {
    tf.tidy(() => {
      const value = fromTorchLayout(stored, entry.layout);
      // A state dict holds float32 data; an integer variable (a counter) takes it cast.
      entry.variable.assign(value.dtype === entry.variable.dtype ? value : tf.cast(value, entry.variable.dtype));
    });
  }
  return { missing, unexpected };
}

export interface TorchStateOptions {
  /** Prepended to every name (e.g. `sparse_encoder.sp_cnn.` to place a backbone in a SparK state dict). */
  prefix?: string;
  /**
   * Only the entries whose names start with this, with it removed (e.g. `sparse_encoder.sp_cnn.` for the
   * encoder of a SparK model under timm names). A prefix that matches no entry is an error.
   */
  stripPrefix?: string;
}

/**
 * A module's parameters and buffers as a PyTorch state dict (official names, PyTorch layouts, F32 data):
 * the one exporter of the project, the inverse of {@link loadTorchState}.
 *
 * @example
 * const state = await torchState(backbone, { prefix: 'sparse_encoder.sp_cnn.' });
 * const encoder = await torchState(sparkModel, { stripPrefix: 'sparse_encoder.sp_cnn.' }); // 'conv1.weight' → ...
 */
export async function torchState(
  source: StateEntrySource,
  { prefix = '', stripPrefix = '' }: TorchStateOptions = {},
): Promise<Map<string, TorchTensorData>> {
  const state = new Map<string, TorchTensorData>();
  const entries = source.stateEntries();
  for (const entry of entries) {
    if (!entry.name.startsWith(stripPrefix)) continue;
    const torchTensor = toTorchLayout(entry.variable, entry.layout);
    try {
      const data = (await torchTensor.data()) as ArrayLike<number>;
      state.set(prefix + entry.name.slice(stripPrefix.length), { shape: torchTensor.shape, data: Float32Array.from(data) });
    } finally {
      torchTensor.dispose();
    }
  }
  if (stripPrefix && state.size === 0) {
    throw new Error(`torchState: the module has no entry under '${stripPrefix}' (it has ${describeKeys(entries.map((entry) => entry.name))})`);
  }
  return state;
}

// The keys under `stripPrefix` with it removed (a copy of the map without one).
function selectState(state: ReadonlyMap<string, TorchTensorData>, stripPrefix: string, caller: string): Map<string, TorchTensorData> {
  if (!stripPrefix) return new Map(state);
  const selected = new Map<string, TorchTensorData>();
  for (const [key, value] of state) if (key.startsWith(stripPrefix)) selected.set(key.slice(stripPrefix.length), value);
  if (selected.size === 0) {
    throw new Error(`${caller}: no key of the state dict starts with '${stripPrefix}' (it has ${describeKeys([...state.keys()])})`);
  }
  return selected;
}

// One key per line, at most 20 (a ResNet-50 against a ConvNeXt would list hundreds).
function keyLines(lines: readonly string[]): string {
  const shown = lines.length <= 20 ? lines : [...lines.slice(0, 20), `... (${lines.length} in all)`];
  return shown.map((line) => `\n  ${line}`).join('');
}

// A short list of names for error messages.
function describeKeys(names: readonly string[]): string {
  if (names.length === 0) return 'no keys';
  return names.length <= 6 ? names.join(', ') : `${names.slice(0, 6).join(', ')}, ... (${names.length} in all)`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((size, i) => size === b[i]);
}
