// BatchMatMul for wasm with transposed operands as a transpose then a plain product. tfjs-backend-wasm
// 4.22 hands transposed operands to XNNPACK on a path 8-45x slower than transposing first: measured on
// one thread, `a^T @ dy` with a [2048, 96], dy [2048, 384] (a ConvNeXt pointwise layer's weight gradient)
// took 52.6 ms against 6.4 ms, and [512, 768]^T @ [512, 3072] 3104 ms against 70 ms. tf.matMul's gradient
// asks for exactly these products, so every dense Linear trained on wasm paid it. Products without
// transposes keep the backend's own kernel.
import type * as tf from '@tensorflow/tfjs-core';
import { type KernelArgs, withScope } from '../compose';

let stockBatchMatMul: tf.KernelFunc | undefined;
let stockSetup: tf.KernelSetupFunc | undefined;

export function captureStockBatchMatMul(kernel: tf.KernelConfig | undefined): void {
  if (kernel && kernel.kernelFunc !== batchMatMulConfig.kernelFunc) {
    stockBatchMatMul = kernel.kernelFunc;
    stockSetup = kernel.setupFunc;
  }
}

/** The permutation that swaps the last two axes of a rank-`rank` tensor. */
function swapLastTwo(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, axis) => axis);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return perm;
}

function batchMatMul(args: KernelArgs): tf.TensorInfo {
  const stock = stockBatchMatMul;
  if (!stock) throw new Error("BatchMatMul (@sparkmim/wasm-kernels): the backend's own kernel was not captured");
  const { a, b } = args.inputs as Record<string, tf.TensorInfo>;
  const attrs = args.attrs as unknown as tf.BatchMatMulAttrs;
  if (!attrs.transposeA && !attrs.transposeB) return stock(args as never) as tf.TensorInfo;
  return withScope(args.backend, (scope) => {
    const left = attrs.transposeA ? scope.transpose(a, swapLastTwo(a.shape.length)) : a;
    const right = attrs.transposeB ? scope.transpose(b, swapLastTwo(b.shape.length)) : b;
    const plainAttrs = { ...attrs, transposeA: false, transposeB: false } as unknown as tf.NamedAttrMap;
    return stock({ inputs: { a: left, b: right }, backend: args.backend, attrs: plainAttrs } as never) as tf.TensorInfo;
  });
}

/** `BatchMatMul` for wasm: transposed operands transposed first; plain products keep the backend's kernel. */
export const batchMatMulConfig: tf.KernelConfig = {
  kernelName: 'BatchMatMul',
  backendName: 'wasm',
  kernelFunc: batchMatMul as unknown as tf.KernelFunc,
  // The stock kernel binds its C++ function when the backend starts: that must still happen.
  setupFunc: (backend) => stockSetup?.(backend),
};
