export { registerWebGpuTrainingKernels, restoreStockWebGpuKernels, WEBGPU_TRAINING_KERNELS } from './register';
export { ACTIVE_MOMENTS_KERNEL, CHANNEL_SUMS_KERNEL } from './kernels/ActiveMoments';
