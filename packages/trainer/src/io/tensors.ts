import * as tf from '@tensorflow/tfjs-core';
import type { SafetensorsEntry, SafetensorsTensor } from './safetensors';

/**
 * Reads named tensors (with `await data()`, so webgpu works) into entries for {@link encodeSafetensors}:
 * float32 → F32, int32 → I32, bool → BOOL. The tensors are not disposed.
 *
 * @example
 * const bytes = encodeSafetensors(await safetensorsEntriesFromTensors(optimizer.getState()));
 */
export async function safetensorsEntriesFromTensors(
  tensors: ReadonlyMap<string, tf.Tensor> | Readonly<Record<string, tf.Tensor>>,
): Promise<Map<string, SafetensorsEntry>> {
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors as Record<string, tf.Tensor>);
  const entries = new Map<string, SafetensorsEntry>();
  for (const [name, tensor] of list) {
    const values = await tensor.data();
    if (tensor.dtype === 'float32') entries.set(name, { dtype: 'F32', shape: tensor.shape, data: values as Float32Array });
    else if (tensor.dtype === 'int32') entries.set(name, { dtype: 'I32', shape: tensor.shape, data: values as Int32Array });
    else if (tensor.dtype === 'bool') entries.set(name, { dtype: 'BOOL', shape: tensor.shape, data: Uint8Array.from(values as ArrayLike<number>) });
    else throw new Error(`safetensorsEntriesFromTensors: tensor '${name}' has dtype ${tensor.dtype}, expected float32, int32 or bool`);
  }
  return entries;
}

/**
 * Makes tfjs tensors from decoded safetensors entries: float dtypes → float32, integer dtypes → int32,
 * BOOL → bool. The caller owns (and disposes) the returned tensors.
 *
 * @example
 * const state = tensorsFromSafetensors(decodeSafetensors(bytes).tensors);
 * await optimizer.setState(state);
 * tf.dispose([...state.values()]);
 */
export function tensorsFromSafetensors(entries: ReadonlyMap<string, SafetensorsTensor>): Map<string, tf.Tensor> {
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, entry] of entries) {
    const dtype = entry.dtype === 'BOOL' ? 'bool' : ['F64', 'F32', 'F16', 'BF16'].includes(entry.dtype) ? 'float32' : 'int32';
    tensors.set(name, tf.tensor(entry.data, entry.shape, dtype));
  }
  return tensors;
}
