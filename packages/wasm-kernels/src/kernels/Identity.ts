// Identity (tf.clone) for wasm that shares the buffer, as tfjs-cpu's and webgl's do.
//
// Why: tfjs-core's engine clones every tensor an op saves for its gradient (saveTensorsForBackwardMode),
// and tfjs-backend-wasm 4.22's Identity copies the data. A SparK step on wasm made ~1,250 such copies:
// their time, the garbage they leave, and a second copy of every saved activation at the memory peak.
// The wasm backend counts references to a buffer already (its Reshape shares buffers the same way), and
// its kernels write only to fresh outputs, so a shared buffer is never changed under a clone.
import type * as tf from '@tensorflow/tfjs-core';
import type { WasmBackendLike } from '../compose';

/** The backend's own Identity, for string tensors (their bytes live outside the wasm heap). */
let stockIdentity: tf.KernelFunc | undefined;

export function captureStockIdentity(kernel: tf.KernelConfig | undefined): void {
  if (kernel && kernel.kernelFunc !== identityConfig.kernelFunc) stockIdentity = kernel.kernelFunc;
}

function identity(args: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { x } = args.inputs as Record<string, tf.TensorInfo>;
  if (x.dtype === 'string' && stockIdentity) return stockIdentity(args as never) as tf.TensorInfo;
  (args.backend as WasmBackendLike & { incRef(dataId: tf.DataId): void }).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

/** `Identity` for wasm: a new tensor on the same buffer (reference counted). */
export const identityConfig: tf.KernelConfig = {
  kernelName: 'Identity',
  backendName: 'wasm',
  kernelFunc: identity as unknown as tf.KernelFunc,
};
