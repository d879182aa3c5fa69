import { loadTorchState } from '@sparkmim/sparse-ops';
import type { LoadStateOptions, LoadStateReport, StateEntrySource, TorchTensorData } from '@sparkmim/sparse-ops';
import { decodeSafetensors, encodeSafetensors } from '../io/safetensors';
import type { SafetensorsEntry } from '../io/safetensors';

/**
 * Buffers of the official `SparK` module that nothing uses (spark.py calls them deprecated): `imn_m`,
 * `imn_s` (uninitialised `torch.empty`) and `norm_black` (zeros the size of the input). Official full
 * checkpoints hold them; loading skips them, saving leaves them out.
 */
export const DEPRECATED_SPARK_BUFFERS: readonly string[] = ['imn_m', 'imn_s', 'norm_black'];

/** A state dict in PyTorch's names and layouts, as safetensors files and `torchState` hold one. */
export type TorchStateDict = Map<string, TorchTensorData>;

export interface ReadStateOptions {
  /** Keep only keys that start with this and remove it (e.g. `param.` for the golden files). */
  stripPrefix?: string;
  /** A name for the bytes (file name or URL) that error messages start with. */
  source?: string;
}

/**
 * Selects the keys under `stripPrefix` (all keys without one) and removes the prefix.
 *
 * @example
 * const state = stripStatePrefix(golden, 'param.'); // 'param.mask_tokens.0' → 'mask_tokens.0'
 */
export function stripStatePrefix<T>(state: ReadonlyMap<string, T>, stripPrefix = ''): Map<string, T> {
  if (!stripPrefix) return new Map(state);
  const stripped = new Map<string, T>();
  for (const [key, value] of state) {
    if (key.startsWith(stripPrefix)) stripped.set(key.slice(stripPrefix.length), value);
  }
  return stripped;
}

/**
 * Reads a PyTorch-layout state dict from the bytes of a `.safetensors` file, every tensor as float32
 * (integer buffers such as `num_batches_tracked` included). Throws on a truncated or malformed file, and
 * when `stripPrefix` matches no key.
 *
 * @example
 * const state = stateFromSafetensors(bytes, { stripPrefix: 'param.', source: 'resnet18_narrow.safetensors' });
 */
export function stateFromSafetensors(bytes: Uint8Array, { stripPrefix = '', source }: ReadStateOptions = {}): TorchStateDict {
  const { tensors } = decodeSafetensors(bytes, { source });
  const state: TorchStateDict = new Map();
  for (const [key, tensor] of stripStatePrefix(tensors, stripPrefix)) {
    const data = tensor.data instanceof Float32Array ? tensor.data : Float32Array.from(tensor.data as ArrayLike<number>);
    state.set(key, { shape: tensor.shape, data });
  }
  if (stripPrefix && state.size === 0) {
    const sample = [...tensors.keys()].slice(0, 3).join(', ');
    throw new Error(`stateFromSafetensors: no key of ${source ?? 'the file'} starts with '${stripPrefix}' (${tensors.size} keys, such as ${sample})`);
  }
  return state;
}

/**
 * {@link loadTorchState} for SparK state dicts: the one place that skips {@link DEPRECATED_SPARK_BUFFERS}
 * (official full checkpoints hold them, our models do not). Used by `SparkModel.loadState`, checkpoints
 * and weight initialisation.
 *
 * @example
 * loadSparkState(model, stateFromPth(bytes), { caller: 'initFromWeights(r50.pth)' });
 */
export function loadSparkState(
  target: StateEntrySource,
  state: ReadonlyMap<string, TorchTensorData>,
  options: Omit<LoadStateOptions, 'ignore'> = {},
): LoadStateReport {
  return loadTorchState(target, state, { ...options, ignore: DEPRECATED_SPARK_BUFFERS });
}

/**
 * A state dict as the bytes of a `.safetensors` file (every tensor F32, PyTorch layouts): the one
 * state-to-safetensors helper (checkpoints, `SparkModel.toSafetensors`, the CLI).
 *
 * @example
 * const bytes = stateToSafetensors(await torchState(model), { format: 'pt' });
 */
export function stateToSafetensors(state: ReadonlyMap<string, TorchTensorData>, metadata?: Record<string, string>): Uint8Array {
  const entries = new Map<string, SafetensorsEntry>();
  for (const [key, tensor] of state) entries.set(key, { dtype: 'F32', shape: tensor.shape, data: tensor.data });
  return encodeSafetensors(entries, metadata);
}
