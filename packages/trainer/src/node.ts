// Public API of `@sparkmim/trainer/node`: the parts of the trainer that need Node.js (a file system, sharp
// for decoding images, signals). Kept out of the main entry so that a browser bundle of
// `@sparkmim/trainer` holds nothing Node-only (STYLE.md, "main entries run anywhere"). Everything in the
// main entry is also usable from Node; import it from `@sparkmim/trainer`.

// sharp (optional dependency), loaded on first use with an install hint when it is absent
export { loadSharp, SHARP_VERSION } from './data/node-modules';
export type { SharpFactory } from './data/node-modules';

// Atomic file writes
export { writeFileAtomic } from './io/atomic-write';
export type { AtomicWriteData } from './io/atomic-write';

// Data: a folder of images decoded with sharp
export { ImageFolderError, ImageFolderSource, IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS } from './data/image-folder';
export type { ImageFolderErrorCode, ImageFolderSourceOptions, SkippedImage } from './data/image-folder';

// Data: a folder of labelled images (one subfolder per class) for fine-tuning and probing
export { LabelledFolderError, LabelledImageFolder } from './data/labelled-folder';
export type { LabelledFolderErrorCode, LabelledImageFolderOptions, SkippedLabelledImage } from './data/labelled-folder';

// Training: the loop (metrics file, periodic checkpoints), checkpoints on disk
export { Trainer, train } from './train/loop';
export type { LrWdSource, TrainOptions, TrainResult } from './train/loop';
export {
  CHECKPOINT_MANIFEST,
  ENCODER_WEIGHTS_FILE,
  initFromWeights,
  loadCheckpoint,
  readCheckpointManifest,
  resumeFromCheckpoint,
  saveCheckpoint,
  saveEncoderWeights,
} from './train/checkpoint';
export type {
  CheckpointManifest,
  InitFromWeightsOptions,
  LoadedCheckpoint,
  RandomState,
  ResumeOptions,
  SaveCheckpointOptions,
  TrainingProgress,
} from './train/checkpoint';
