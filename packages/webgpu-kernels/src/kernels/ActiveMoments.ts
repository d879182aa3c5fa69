// The per-channel mean and biased variance over a mask's active sites, for SparK's masked batch norm.
//
// Contract (the kernel name is all that @sparkmim/sparse-ops knows of this package; see its
// ACTIVE_MOMENTS_KERNEL): kernel `SparkActiveMoments`, inputs `{x, mask}` with x float32 [B, H, W, C] and
// mask float32 [B, H, W, 1] of 0/1, no attributes; outputs `[mean, variance]`, float32 [C] each, the mean over
// the sites where mask is 1 and the biased variance sum(mask * (x - mean)^2) / count, in two passes as
// PyTorch's BatchNorm (never E[x^2] - E[x]^2, which rounds away the variance of large-mean channels); NaN for
// every channel when no site is active.
//
// Why a kernel: tfjs-backend-webgpu reduces over [B, H, W] of an NHWC map by transposing it to [C, B*H*W]
// and giving each channel one workgroup, 64 workgroups for 64 channels on a GPU with thousands of lanes,
// and the composite takes six kernels over the whole map. Here each pass reads the map once: workgroups of
// 64 threads own 64 consecutive channels (coalesced reads of NHWC rows) and a slice of the sites, and write
// a partial sum per channel; a small second program adds the slices. Mean: partial sums of mask * x, then
// divide by the count; variance: partial sums of (mask * (x - mean))^2 with the mean just computed, then
// divide. The count is summed alongside, in one extra column of the partial sums.
//
// The same passes without a mask give `SparkChannelSums` (the sum over B, H, W of a [B, H, W, C] map), for
// the two per-channel sums of batch norm's backward pass, which the stock backend would again transpose.
import * as tf from '@tensorflow/tfjs-core';
import { assertFloat32, int32Uniforms, type KernelArgs, type WebGpuBackendLike, type WebGpuProgramLike } from '../program';

/** The kernel name sparse-ops dispatches to (the contract above). */
export const ACTIVE_MOMENTS_KERNEL = 'SparkActiveMoments';

/** Channels per workgroup, one thread each. */
const CHANNEL_BLOCK = 64;
/** Enough workgroups to fill a large GPU (132 SMs of an H200, several workgroups each). */
const TARGET_WORKGROUPS = 1024;
/** Fewer sites per slice than this and the partial sums cost more than the parallelism gains. */
const MIN_SITES_PER_SLICE = 32;

/** How the sites are split: `slices` workgroups along the sites, `sitesPerSlice` sites each. */
export interface ActiveMomentsPlan {
  sites: number;
  channels: number;
  slices: number;
  sitesPerSlice: number;
}

export function planActiveMoments(sites: number, channels: number): ActiveMomentsPlan {
  const channelBlocks = Math.ceil(channels / CHANNEL_BLOCK);
  const wanted = Math.max(1, Math.min(Math.ceil(TARGET_WORKGROUPS / channelBlocks), Math.ceil(sites / MIN_SITES_PER_SLICE)));
  const sitesPerSlice = Math.max(1, Math.ceil(sites / wanted));
  return { sites, channels, slices: Math.max(1, Math.ceil(sites / sitesPerSlice)), sitesPerSlice };
}

/** What a partial-sum pass adds up per channel: mask * x, (mask * (x - mean))^2, or x. */
type Summand = 'masked' | 'centred' | 'plain';

/**
 * Partial sums `[slices, C + 1]`: column c < C holds the slice's sum of the summand for channel c, column
 * C the slice's active-site count (its site count for `plain`). Sizes are uniforms, so one compiled
 * pipeline per summand serves every shape (compiling is slow on SwiftShader).
 */
class PartialSumsProgram implements WebGpuProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [1], y: [0] };
  dispatch: [number, number, number];
  variableNames: string[];
  workgroupSize: [number, number, number] = [CHANNEL_BLOCK, 1, 1];
  uniforms = 'sites : i32, channels : i32, sitesPerSlice : i32,';
  private readonly summand: Summand;

  constructor(plan: ActiveMomentsPlan, summand: Summand) {
    this.summand = summand;
    this.outputShape = [plan.slices, plan.channels + 1];
    this.dispatch = [Math.ceil(plan.channels / CHANNEL_BLOCK), plan.slices, 1];
    this.variableNames = { masked: ['x', 'mask'], centred: ['x', 'mask', 'mean'], plain: ['x'] }[summand];
    this.shaderKey = `sparkmimChannelPartialSums_${summand}`;
  }

  getUserCode(): string {
    // As the composite it replaces: mask * x, and (mask * (x - mean))^2 (a 0/1 mask, so the same as
    // mask * (x - mean)^2).
    const term = {
      masked: 'sum += x[site * channels + channel] * weight;',
      centred: 'let deviation = (x[site * channels + channel] - centre) * weight;\n            sum += deviation * deviation;',
      plain: 'sum += x[site * channels + channel];',
    }[this.summand];
    return `
      fn main() {
        let channels = uniforms.channels;
        let channel = i32(workgroupId.x) * ${CHANNEL_BLOCK} + i32(localId.x);
        let slice = i32(workgroupId.y);
        let siteBegin = slice * uniforms.sitesPerSlice;
        let siteEnd = min(uniforms.sites, siteBegin + uniforms.sitesPerSlice);
        if (channel < channels) {
          ${this.summand === 'centred' ? 'let centre = mean[channel];' : ''}
          var sum = 0.0;
          var count = 0.0;
          for (var site = siteBegin; site < siteEnd; site++) {
            let weight = ${this.summand === 'plain' ? '1.0' : 'mask[site]'};
            ${term}
            count += weight;
          }
          result[slice * (channels + 1) + channel] = sum;
          // The first thread of the first channel block also writes the slice's count.
          if (channel == 0) {
            result[slice * (channels + 1) + channels] = count;
          }
        }
      }
    `;
  }
}

/**
 * `[C]`: the sum over slices of column c, divided by the sum over slices of column C (the count; NaN when
 * it is 0) for a mean, or not for a total.
 */
class FinishProgram implements WebGpuProgramLike {
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  variableNames = ['partial'];
  workgroupSize: [number, number, number] = [CHANNEL_BLOCK, 1, 1];
  size = true;
  uniforms = 'slices : i32,';
  private readonly divide: boolean;

  constructor(channels: number, divide: boolean) {
    this.divide = divide;
    this.outputShape = [channels];
    this.dispatch = [Math.ceil(channels / CHANNEL_BLOCK), 1, 1];
    this.shaderKey = divide ? 'sparkmimChannelSumsFinishMean' : 'sparkmimChannelSumsFinishTotal';
  }

  getUserCode(): string {
    // 0 / 0 is not guaranteed to give NaN in WGSL, and a constant NaN is a shader-creation error: the
    // quiet NaN's bits come from a variable.
    const finish = this.divide
      ? `var nanBits = 0x7fc00000u;
          var value = bitcast<f32>(nanBits);
          if (count > 0.0) {
            value = sum / count;
          }`
      : 'let value = sum;';
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          let columns = uniforms.size + 1;
          var sum = 0.0;
          var count = 0.0;
          for (var slice = 0; slice < uniforms.slices; slice++) {
            sum += partial[slice * columns + index];
            count += partial[slice * columns + uniforms.size];
          }
          ${finish}
          setOutputAtIndex(index, value);
        }
      }
    `;
  }
}

/** One statistic: the partial sums over the slices, then their total (divided by the count for a mean). */
function reduceOverSites(backend: WebGpuBackendLike, plan: ActiveMomentsPlan, inputs: tf.TensorInfo[], summand: Summand): tf.TensorInfo {
  const partial = backend.runWebGPUProgram(
    new PartialSumsProgram(plan, summand),
    inputs,
    'float32',
    int32Uniforms([plan.sites, plan.channels, plan.sitesPerSlice]),
  );
  try {
    return backend.runWebGPUProgram(new FinishProgram(plan.channels, summand !== 'plain'), [partial], 'float32', int32Uniforms([plan.slices]));
  } finally {
    backend.disposeData(partial.dataId);
  }
}

/**
 * Mean and biased variance `[C]` of `x` `[B, H, W, C]` over the sites where `mask` `[B, H, W, 1]` is 1, on
 * webgpu (the contract at the top of this file).
 */
export function activeMomentsWebGpu(backend: WebGpuBackendLike, x: tf.TensorInfo, mask: tf.TensorInfo): [tf.TensorInfo, tf.TensorInfo] {
  const [batch, height, width, channels] = x.shape;
  const plan = planActiveMoments(batch * height * width, channels);
  const mean = reduceOverSites(backend, plan, [x, mask], 'masked');
  return [mean, reduceOverSites(backend, plan, [x, mask, mean], 'centred')];
}

function activeMoments({ inputs, backend }: KernelArgs): tf.TensorInfo[] {
  const { x, mask } = inputs as Record<string, tf.TensorInfo>;
  if (!x || !mask)
    throw new Error(`${ACTIVE_MOMENTS_KERNEL} (@sparkmim/webgpu-kernels): expected inputs {x, mask}, got {${Object.keys(inputs).join(', ')}}`);
  assertFloat32(ACTIVE_MOMENTS_KERNEL, 'x', x);
  assertFloat32(ACTIVE_MOMENTS_KERNEL, 'mask', mask);
  if (x.shape.length !== 4) {
    throw new Error(`${ACTIVE_MOMENTS_KERNEL} (@sparkmim/webgpu-kernels): expected x of shape [B, H, W, C], got [${x.shape.join(', ')}]`);
  }
  const expectedMask = [...x.shape.slice(0, 3), 1];
  if (!tf.util.arraysEqual(mask.shape, expectedMask)) {
    throw new Error(
      `${ACTIVE_MOMENTS_KERNEL} (@sparkmim/webgpu-kernels): expected mask of shape [${expectedMask.join(', ')}], got [${mask.shape.join(', ')}]`,
    );
  }
  return activeMomentsWebGpu(backend as WebGpuBackendLike, x, mask);
}

/**
 * `SparkActiveMoments` for webgpu: a kernel of sparkmim's own (no tfjs op runs it; sparse-ops' masked batch
 * norm does when it is registered) and so no gradient of its own (sparse-ops differentiates the statistics).
 */
export const activeMomentsConfig: tf.KernelConfig = {
  kernelName: ACTIVE_MOMENTS_KERNEL,
  backendName: 'webgpu',
  kernelFunc: activeMoments as unknown as tf.KernelFunc,
};

/** The kernel name sparse-ops dispatches its per-channel sums to (batch norm's backward pass). */
export const CHANNEL_SUMS_KERNEL = 'SparkChannelSums';

function channelSums({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const { x } = inputs as Record<string, tf.TensorInfo>;
  if (!x) throw new Error(`${CHANNEL_SUMS_KERNEL} (@sparkmim/webgpu-kernels): expected inputs {x}, got {${Object.keys(inputs).join(', ')}}`);
  assertFloat32(CHANNEL_SUMS_KERNEL, 'x', x);
  if (x.shape.length !== 4) {
    throw new Error(`${CHANNEL_SUMS_KERNEL} (@sparkmim/webgpu-kernels): expected x of shape [B, H, W, C], got [${x.shape.join(', ')}]`);
  }
  const [batch, height, width, channels] = x.shape;
  return reduceOverSites(backend as WebGpuBackendLike, planActiveMoments(batch * height * width, channels), [x], 'plain');
}

/**
 * `SparkChannelSums` for webgpu, sparkmim's own: input `{x}` float32 `[B, H, W, C]`, output float32 `[C]`,
 * the sum over B, H and W (what `tf.sum(x, [0, 1, 2])` gives, which tfjs-backend-webgpu computes through a
 * transpose and one workgroup per channel). sparse-ops' batch norm gradient runs it when it is registered.
 */
export const channelSumsConfig: tf.KernelConfig = {
  kernelName: CHANNEL_SUMS_KERNEL,
  backendName: 'webgpu',
  kernelFunc: channelSums as unknown as tf.KernelFunc,
};
