// Public API of @sparkmim/trainer: see README.md. This entry runs anywhere (browser, Node, workers): the
// model, optimisers, schedules, one training step, in-memory data and the safetensors codec. What needs a
// file system or sharp (the image-folder source, the training loop with its metrics file and checkpoints,
// atomic writes) is in the Node entry, `@sparkmim/trainer/node` (src/node.ts).

// Optimisers, parameter groups, schedules
export { Lamb } from './optim/lamb';
export type { LambOptions } from './optim/lamb';
export { AdamW } from './optim/adamw';
export type { AdamWOptions } from './optim/adamw';
export { Sgd } from './optim/sgd';
export type { SgdOptions } from './optim/sgd';
export type {
  NamedGradients,
  NamedTensors,
  NamedVariable,
  Optimizer,
  ParamGroup,
  ParamGroupInit,
  StepOptions,
  StepResult,
} from './optim/optimizer';
export { defaultBetas } from './optim/betas';
export { recipeFamily, sparkRecipe, SPARK_DROP_PATH_RATES } from './recipe';
export type { RecipeFamily, SparkRecipe } from './recipe';
export { SPARK_NO_WEIGHT_DECAY_KEYS, hasWeightDecay, paramGroupsFromVariables, weightDecayGroups } from './optim/param-groups';
export type { ParamShape, WeightDecayGroup, WeightDecayGroupOptions } from './optim/param-groups';
export { applyLrWd, lrWdAt, peakLearningRate, sparkSchedule } from './optim/schedule';
export type { AppliedLrWd, LrWd, LrWdSchedule, SparkScheduleOptions } from './optim/schedule';

// Safetensors (bytes in, bytes out: files are written by the Node entry)
export { decodeSafetensors, encodeSafetensors } from './io/safetensors';
export type {
  DecodeSafetensorsOptions,
  DecodedSafetensors,
  SafetensorsData,
  SafetensorsDtype,
  SafetensorsEntry,
  SafetensorsTensor,
  SafetensorsWriteDtype,
} from './io/safetensors';
export { safetensorsEntriesFromTensors, tensorsFromSafetensors } from './io/tensors';

// The SparK model
export { ROW_PATH_BACKENDS, ROW_PATH_MIN_CHANNELS, SPARSE_PATHS, SparkModel, sparkArchitectureFromState } from './model/spark-model';
export type {
  SparsePath,
  SparkArchitecture,
  SparkForwardOptions,
  SparkForwardOutput,
  SparkModelConfig,
  SparkModelLoadOptions,
  SparkVisualization,
} from './model/spark-model';
export { DEPRECATED_SPARK_BUFFERS, loadSparkState, stateFromSafetensors, stateToSafetensors, stripStatePrefix } from './model/state';
export type { ReadStateOptions, TorchStateDict } from './model/state';

// PyTorch interop: .pth files (torch.save's zip format) read and written without Python, the official
// SparK release's file kinds (bytes in, bytes out: browser-safe)
export { PthFormatError } from './io/pth/zip';
export { PickleOrderedDict, PickleTuple } from './io/pth/pickle';
export type { PickleValue } from './io/pth/pickle';
export { PthTensor, PthTensorOut, readPth, writePth } from './io/pth/pth';
export type { PthDtype, PthTensorInput, ReadPth, ReadPthOptions, WritePthOptions } from './io/pth/pth';
export {
  classifyWeights,
  isEncoderOnly,
  loadEncoderState,
  readWeightsFile,
  sparkModelFromWeights,
  stateToPth,
  summarizeWeights,
  weightsArchitecture,
} from './model/weights-file';
export type {
  PthLayout,
  ReadWeightsOptions,
  SparkModelFromWeightsOptions,
  StateToPthOptions,
  WeightsFile,
  WeightsFileKind,
  WeightsSummary,
} from './model/weights-file';
export { loadTfjsWeights, stateToTfjsArtifacts } from './model/tfjs-weights';
export type { FetchBytes, LoadTfjsWeightsOptions, TfjsArtifacts, TfjsArtifactsOptions, TfjsModelJson } from './model/tfjs-weights';

// Using what was pre-trained: a classifier on any backbone, layer-wise lr decay, losses, EMA, evaluation
export { Classifier } from './finetune/classifier';
export type { ClassifierConfig } from './finetune/classifier';
export { classificationLoss, smoothedTargets } from './finetune/loss';
export type { ClassificationLossOptions } from './finetune/loss';
export { WeightEma } from './finetune/ema';
export { ClassificationMeter, evaluateLogits } from './finetune/evaluate';
export type { ClassificationMetrics, LabelledBatch } from './finetune/evaluate';
export {
  convnextLayerIdAndScale,
  customLayerIdAndScale,
  layerDecayParamGroups,
  layerIdAndScale,
  resnetLayerIdAndScale,
} from './finetune/lr-decay';
export type { LayerDecayOptions, LayerIdAndScale } from './finetune/lr-decay';
export { LinearProbe, classifierTrainStep } from './finetune/step';
export type { ClassifierStepOptions } from './finetune/step';

// Data: sources of training batches, SparK's augmentation, normalisation and previews
export { batchesPerEpoch } from './data/source';
export type { Batch, DataSource, EpochOptions, SkippedFile } from './data/source';
export { InMemorySource } from './data/in-memory';
export type { InMemorySourceOptions, PixelImage } from './data/in-memory';
export { DEFAULT_CROP_RATIO, SPARK_CROP_SCALE, cropRatioFor, imageSizeOf, randomResizedCropParams } from './data/crop';
export type { CropBox, ImageSize, ResizedCropOptions } from './data/crop';
export { resizeBicubicLikePil } from './data/resize';
export { IMAGENET_MEAN, IMAGENET_STD, denormalizeImages, imagesToRgba, normalizeImages } from './data/normalize';
export type { RgbaImage } from './data/normalize';

// Training: one step (the loop with files and checkpoints is in the Node entry)
export { NonFiniteLossError, currentLrWd, trainStep } from './train/step';
export { variableGradsReleasing } from './train/releasing-grads';
export type { TrainStepOptions, TrainStepResult } from './train/step';
export type { EpochMetrics, RunSummaryMetrics, StepMetrics } from './train/metric-records';
export { deriveSeeds } from './train/random';
export type { RunSeeds } from './train/random';
export { ENCODER_STATE_PREFIX } from './train/trainable';
export type { LossOptions, TrainableModel } from './train/trainable';
