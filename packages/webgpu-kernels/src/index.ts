export { registerWebGpuTrainingKernels, restoreStockWebGpuKernels, WEBGPU_TRAINING_KERNELS } from './register';
