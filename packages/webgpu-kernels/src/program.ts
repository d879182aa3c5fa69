// How our WGSL programs reach tfjs-backend-webgpu: its backend object runs any object shaped like its
// WebGPUProgram. The shapes are declared here (libraries import no backend), with only what we use.
import type * as tf from '@tensorflow/tfjs-core';

/**
 * A compute program as tfjs-backend-webgpu 4.22's `runWebGPUProgram` takes it (its `WebGPUProgram`).
 * The backend prepends a header to `getUserCode()`: a `uniforms` struct with every input's and the
 * output's shape, one read-only storage array per name in `variableNames`, the output array `result`, and
 * `localId`, `workgroupId`, `globalId` as private variables; it then calls `main()` (our programs set a
 * non-flat `dispatchLayout`, so `main` takes no index).
 */
export interface WebGpuProgramLike {
  outputShape: number[];
  /** Identifies the compiled pipeline; the backend appends input ranks and dtypes. */
  shaderKey: string;
  dispatchLayout: { x: number[]; y?: number[]; z?: number[] };
  /** Workgroups along x, y, z. */
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number];
  /** Adds `size : i32` (the output's element count) to the uniforms. */
  size?: boolean;
  /** More uniform fields (`name : i32, ...`), filled in order from `runWebGPUProgram`'s uniform data. */
  uniforms?: string;
  getUserCode(): string;
}

/** Values of a program's own uniform fields, in the order of its `uniforms`. */
export type UniformData = { type: 'int32' | 'float32' | 'uint32'; data: number[] }[];

/** One i32 uniform per value, for a program whose `uniforms` lists that many `name : i32` fields. */
export function int32Uniforms(values: number[]): UniformData {
  return values.map((value) => ({ type: 'int32', data: [value] }));
}

/** The parts of tfjs-backend-webgpu's WebGPUBackend used here. */
export interface WebGpuBackendLike extends tf.KernelBackend {
  runWebGPUProgram(program: WebGpuProgramLike, inputs: tf.TensorInfo[], outputDtype: tf.DataType, uniformData?: UniformData): tf.TensorInfo;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
}

/** What tfjs hands a kernel function: its inputs by name, the backend (webgpu here) and the attributes. */
export interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}

/** Throws unless the tensor is float32: the programs read and write f32 buffers. */
export function assertFloat32(kernelName: string, name: string, info: tf.TensorInfo): void {
  if (info.dtype !== 'float32') {
    throw new Error(`${kernelName} (@sparkmim/webgpu-kernels): expected ${name} of dtype float32, got ${info.dtype}`);
  }
}
