// Kernels of our own built from the wasm backend's registered kernels (XNNPACK convolutions and matmuls,
// its transposes and slices) and, where a loop is simplest, from JavaScript over the wasm heap.
import * as tf from '@tensorflow/tfjs-core';

/** The parts of tfjs-backend-wasm's BackendWasm used here (typed locally: libraries import no backend). */
export interface WasmBackendLike extends tf.KernelBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): tf.backend_util.TypedArray;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
}

/**
 * Runs registered wasm kernels by name and frees every intermediate it made except the ones kept: the
 * kernel-level `tf.tidy`.
 */
export class KernelScope {
  private readonly made: tf.TensorInfo[] = [];

  constructor(readonly backend: WasmBackendLike) {}

  run(kernelName: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): tf.TensorInfo {
    const kernel = tf.getKernel(kernelName, 'wasm');
    if (!kernel) throw new Error(`@sparkmim/wasm-kernels: the wasm backend has no '${kernelName}' kernel`);
    const out = kernel.kernelFunc({ inputs, attrs, backend: this.backend }) as tf.TensorInfo;
    this.made.push(out);
    return out;
  }

  /** Adds `out`, made outside {@link run} (e.g. by `backend.makeOutput`), to what {@link dispose} frees. */
  track(out: tf.TensorInfo): tf.TensorInfo {
    this.made.push(out);
    return out;
  }

  reshape(x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
    return this.run('Reshape', { x }, { shape });
  }

  transpose(x: tf.TensorInfo, perm: number[]): tf.TensorInfo {
    return this.run('Transpose', { x }, { perm });
  }

  /** Zero padding, `[before, after]` per axis; negative amounts crop. */
  pad(x: tf.TensorInfo, paddings: [number, number][]): tf.TensorInfo {
    if (paddings.every(([before, after]) => before === 0 && after === 0)) return x;
    let input = x;
    if (paddings.some(([before, after]) => before < 0 || after < 0)) {
      const begin = paddings.map(([before]) => Math.max(0, -before));
      const size = x.shape.map((dim, axis) => dim - begin[axis] - Math.max(0, -paddings[axis][1]));
      input = this.run('Slice', { x }, { begin, size });
    }
    const positive = paddings.map(([before, after]) => [Math.max(0, before), Math.max(0, after)]);
    if (positive.every(([before, after]) => before === 0 && after === 0)) return input;
    return this.run('PadV2', { x: input }, { paddings: positive, constantValue: 0 });
  }

  /** Marks `out` as the result: it survives {@link dispose}. */
  keep(out: tf.TensorInfo): tf.TensorInfo {
    const index = this.made.lastIndexOf(out);
    if (index >= 0) this.made.splice(index, 1);
    return out;
  }

  dispose(): void {
    for (const info of this.made) this.backend.disposeData(info.dataId);
    this.made.length = 0;
  }
}

/** Runs `body` in a {@link KernelScope}; its result is kept, everything else it made is freed. */
export function withScope(backend: tf.KernelBackend, body: (scope: KernelScope) => tf.TensorInfo): tf.TensorInfo {
  const scope = new KernelScope(backend as WasmBackendLike);
  try {
    return scope.keep(body(scope));
  } finally {
    scope.dispose();
  }
}

export function pair(value: number | [number, number]): [number, number] {
  return typeof value === 'number' ? [value, value] : value;
}

/** What tfjs hands a kernel function: its inputs by name, the backend (wasm here) and the attributes. */
export interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}

/** Throws unless `dilations` are 1: the depthwise gradients here implement undilated convolution only. */
export function assertUndilated(kernelName: string, dilations: number | [number, number]): void {
  const [dilationH, dilationW] = pair(dilations);
  if (dilationH !== 1 || dilationW !== 1) {
    throw new Error(`${kernelName} (@sparkmim/wasm-kernels): expected dilations 1, got [${dilationH}, ${dilationW}]`);
  }
}

/**
 * `dy` of a convolution with stride `s` spread back onto the stride-1 grid: `s - 1` zeros between
 * neighbouring values, `[B, (H'-1)*sH+1, (W'-1)*sW+1, C]`. Then the input gradient is a stride-1 forward
 * convolution.
 */
export function spreadByStride(scope: KernelScope, dy: tf.TensorInfo, strideH: number, strideW: number): tf.TensorInfo {
  if (strideH === 1 && strideW === 1) return dy;
  const [batch, height, width, channels] = dy.shape;
  let spread = scope.reshape(dy, [batch, height, 1, width, 1, channels]);
  spread = scope.pad(spread, [
    [0, 0],
    [0, 0],
    [0, strideH - 1],
    [0, 0],
    [0, strideW - 1],
    [0, 0],
  ]);
  spread = scope.reshape(spread, [batch, height * strideH, width * strideW, channels]);
  return scope.run('Slice', { x: spread }, { begin: [0, 0, 0, 0], size: [batch, (height - 1) * strideH + 1, (width - 1) * strideW + 1, channels] });
}
