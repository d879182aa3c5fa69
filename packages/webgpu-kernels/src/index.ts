export { registerWebGpuTrainingKernels, WEBGPU_TRAINING_KERNELS } from './register';
