// Public API of @sparkmim/sparse-ops: masked ("sparse") 2-D ops that only see active sites.
export { ActiveSites, activeAt } from './active-sites';
export type { ActiveMask } from './active-sites';
export { sparseConv2d } from './conv';
export type { SparseConv2dOptions } from './conv';
export { sparseAvgPool2d, sparseMaxPool2d } from './pool';
export type { SparseAvgPool2dOptions, SparsePool2dOptions } from './pool';
export { activeMoments, sparseBatchNorm, sparseLayerNorm } from './norm';
export type { BatchStatistics, SparseBatchNormOptions, SparseLayerNormOptions } from './norm';
export { densify } from './densify';
export { toTfPadding } from './padding';
export type { Padding2d } from './padding';
export { Module, ModuleList, uniformFanIn } from './module';
export type { Initializer, NamedVariable, TorchLayout } from './module';
export { SparseAvgPool2d, SparseBatchNorm2d, SparseConv2d, SparseLayerNorm, SparseMaxPool2d } from './layers';
export type { ApplyOptions, SparseBatchNormConfig, SparseConv2dConfig, SparseLayerNormConfig } from './layers';
export { fromTorchLayout, loadTorchState, ourShapeOf, torchShapeOf, torchState, toTorchLayout } from './torch-state';
export type { LoadStateOptions, LoadStateReport, TorchTensorData } from './torch-state';
