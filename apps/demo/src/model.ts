// The model side of the page: reading checkpoints, one reconstruction, and pre-training steps. Only the
// browser-safe entries of the libraries are used (bytes in, tensors out; no file system).
import * as tf from '@tensorflow/tfjs-core';
import { randomPatchMask, seededRandom } from '@sparkmim/masking';
import {
  AdamW,
  type FetchBytes,
  IMAGENET_MEAN,
  IMAGENET_STD,
  InMemorySource,
  type SparkModel,
  isEncoderOnly,
  loadTfjsWeights,
  normalizeImages,
  paramGroupsFromVariables,
  readWeightsFile,
  sparkArchitectureFromState,
  sparkModelFromWeights,
  trainStep,
  type WeightsFile,
  weightsArchitecture,
} from '@sparkmim/trainer';

/** A loaded model and what the page says about it. */
export interface LoadedModel {
  model: SparkModel;
  /** e.g. "resnet, depths 1,1,1,1, widths 8,16,32,64, decoder 32 (0.13M parameters)". */
  description: string;
  parameterCount: number;
}

/** Whether a file is a checkpoint by its name (its content decides which kind). */
export function isCheckpointName(name: string): boolean {
  return /\.(safetensors|pth|pt|ckpt)$/i.test(name) || isTfjsModelJsonName(name);
}

/** A TF.js artefact's `model.json` (its shards come with it). */
export function isTfjsModelJsonName(name: string): boolean {
  return /\.json$/i.test(name);
}

/**
 * Reads a checkpoint's bytes (a `.safetensors` SparK state dict, or an official SparK `.pth` such as
 * `resnet50_withdecoder_1kpretrained_spark_style.pth`; told apart by content) and builds the model its
 * weights imply (backbone family, depths, widths, decoder width). Encoder-only weights are refused: the
 * page needs the decoder that was trained with them.
 */
export async function modelFromWeights(bytes: Uint8Array, source: string): Promise<LoadedModel> {
  return modelFromWeightsFile(readWeightsFile(bytes, { source }), source);
}

/**
 * TF.js artefacts dropped on the page (`model.json` of `sparkmim convert --to tfjs` or `stateToTfjsArtifacts`
 * and its shards, by file name) as a weights file: the shards are looked up among the dropped files, and a
 * missing one is named. `onProgress` gets the fraction of bytes read.
 */
export async function tfjsWeightsFromFiles(modelJson: File, files: readonly File[], onProgress?: (fraction: number) => void): Promise<WeightsFile> {
  const byName = new Map(files.map((file) => [file.name, file]));
  const fetchDropped: FetchBytes = async (url) => {
    const file = url === modelJson.name ? modelJson : byName.get(url.slice(url.lastIndexOf('/') + 1));
    if (!file) throw new Error(`${modelJson.name} needs the shard '${url}': drop it together with ${modelJson.name}`);
    return { ok: true, status: 200, arrayBuffer: () => file.arrayBuffer() };
  };
  return loadTfjsWeights(modelJson.name, { fetch: fetchDropped, onProgress });
}

/** Builds the model a weights file (any format `readWeightsFile` or `loadTfjsWeights` returns) implies. */
export async function modelFromWeightsFile(file: WeightsFile, source: string): Promise<LoadedModel> {
  if (isEncoderOnly(file)) {
    throw new Error(
      `${source} holds encoder weights alone (${file.kind}, ${file.state.size} tensors); reconstruction needs the decoder trained with them: ` +
        "a run folder's model.*.safetensors or an official *_withdecoder_1kpretrained_spark_style.pth",
    );
  }
  const model = await sparkModelFromWeights(file);
  model.eval();
  const architecture = sparkArchitectureFromState(file.state, source);
  const parameterCount = model.parameters().reduce((sum, { variable }) => sum + variable.size, 0);
  const backbone = architecture.backbone as unknown as Record<string, unknown>;
  const named = weightsArchitecture(file).name;
  const shape = Object.entries(backbone)
    .filter(([key, value]) => ['kind', 'depths', 'channels', 'dims', 'stemWidth'].includes(key) && value !== undefined)
    .map(([key, value]) => `${key} ${Array.isArray(value) ? value.join(',') : String(value)}`)
    .join(', ');
  return {
    model,
    parameterCount,
    description: `${named ? `${named}, ` : ''}${shape}, decoder ${architecture.decoderWidth} (${(parameterCount / 1e6).toFixed(2)}M parameters, ${file.format})`,
  };
}

/** One reconstruction: every array is `[height, width, 3]` row-major. */
export interface Reconstruction {
  /** The model's raw output in per-patch normalised units (official `rec`); compared across backends. */
  raw: Float32Array;
  /** The reconstruction in pixels (0 .. 255, not rounded), de-normalised with each patch's mean and std. */
  pixels: Float32Array;
  /** Visible patches from the picture, hidden ones from the reconstruction, in pixels. */
  composite: Float32Array;
  /** The loss over the hidden patches (per-patch normalised L2, SparK's). */
  loss: number;
  milliseconds: number;
}

function toPixels(normalised: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.mul(tf.add(tf.mul(normalised, [...IMAGENET_STD]), [...IMAGENET_MEAN]), 255) as tf.Tensor4D);
}

/**
 * Reconstructs one picture under a mask in evaluation mode (batch norms use their running statistics).
 * `visible[row * grid + column]` is 1 for a patch the encoder sees.
 */
export async function reconstruct(
  model: SparkModel,
  rgb: Uint8Array,
  [height, width]: readonly [height: number, width: number],
  visible: ArrayLike<number>,
): Promise<Reconstruction> {
  const start = performance.now();
  model.eval();
  const images = tf.tidy(() => normalizeImages(tf.tensor4d(rgb, [1, height, width, 3], 'int32')));
  const active = tf.tensor4d(Float32Array.from(visible), [1, height / model.downsampleRatio, width / model.downsampleRatio, 1]);
  const output = model.forwardWithIntermediates(images, { active });
  const visualization = model.visualizeOutput(images, output);
  const pixels = toPixels(visualization.reconstruction);
  const composite = toPixels(visualization.recOrInput);
  try {
    const [raw, pixelValues, compositeValues, loss] = await Promise.all([
      output.reconstruction.data() as Promise<Float32Array>,
      pixels.data() as Promise<Float32Array>,
      composite.data() as Promise<Float32Array>,
      output.loss.data(),
    ]);
    return { raw, pixels: pixelValues, composite: compositeValues, loss: loss[0], milliseconds: performance.now() - start };
  } finally {
    tf.dispose([images, active, output, visualization, pixels, composite]);
  }
}

/** AdamW's weight decay in the page (SparK's at the start of a run is 0.04; short sessions barely feel it). */
const WEIGHT_DECAY = 0.04;

/** Masks per picture of the fixed batch that {@link trainInPage} measures before and after. */
export const FIXED_MASKS_PER_PICTURE = 4;

/** Settings of a training session in the page. */
export interface TrainOptions {
  steps: number;
  batchSize: number;
  learningRate: number;
  maskRatio: number;
  seed: number;
  /** Called after every step with its loss; may await (drawing previews). Return false to stop. */
  onStep: (step: number, loss: number) => Promise<boolean> | boolean;
}

/**
 * Pre-trains (or continues) the model in the page: `steps` iterations of SparK's loss over the pictures
 * (`[size, size, 3]` RGB each), random masks and horizontal flips drawn from `seed`, AdamW with SparK's
 * parameter groups (no weight decay on biases, norms and mask tokens) and gradient clipping at 5.
 * Returns the loss on a fixed batch (the first `batchSize` pictures, each under
 * {@link FIXED_MASKS_PER_PICTURE} fixed masks) before and after, in evaluation mode, so the two compare.
 */
export async function trainInPage(
  model: SparkModel,
  optimizer: AdamW,
  pictures: Uint8Array[],
  size: number,
  options: TrainOptions,
): Promise<{ fixedBefore: number; fixedAfter: number; stepsRun: number }> {
  const { steps, batchSize, learningRate, maskRatio, seed, onStep } = options;
  const grid = size / model.downsampleRatio;
  const pixels = tf.tensor4d(concat(pictures), [pictures.length, size, size, 3], 'int32');
  const source = InMemorySource.fromTensor(pixels, { flip: true });
  pixels.dispose();
  // The fixed batch: the first pictures, each under FIXED_MASKS_PER_PICTURE masks. One mask per picture
  // makes the before/after difference of a few steps mostly the luck of which patches that mask hides.
  const fixedPictures = pictures.slice(0, Math.min(batchSize, pictures.length));
  const fixedCount = fixedPictures.length * FIXED_MASKS_PER_PICTURE;
  const fixedImages = tf.tidy(() =>
    normalizeImages(
      tf.tensor4d(concat(Array.from({ length: FIXED_MASKS_PER_PICTURE }, () => fixedPictures).flat()), [fixedCount, size, size, 3], 'int32'),
    ),
  );
  const fixedActive = randomPatchMask(fixedCount, [grid, grid], maskRatio, { seed: seed + 1000 });
  const fixedLoss = async () => {
    model.eval();
    const loss = model.forward(fixedImages, { active: fixedActive });
    try {
      return (await loss.data())[0];
    } finally {
      loss.dispose();
    }
  };
  const random = seededRandom(seed);
  try {
    const fixedBefore = await fixedLoss();
    let step = 0;
    for (let epoch = 0; step < steps; epoch++) {
      for await (const batch of source.epochBatches(epoch, { batchSize, seed })) {
        try {
          if (step >= steps) break;
          const active = randomPatchMask(batchSize, [grid, grid], maskRatio, { random });
          try {
            const { loss } = await trainStep(model, optimizer, batch.images, {
              active,
              iteration: step,
              lrWd: { lr: learningRate, weightDecay: WEIGHT_DECAY },
            });
            step += 1;
            if ((await onStep(step, loss)) === false) return { fixedBefore, fixedAfter: await fixedLoss(), stepsRun: step };
          } finally {
            active.dispose();
          }
        } finally {
          batch.images.dispose();
        }
      }
    }
    return { fixedBefore, fixedAfter: await fixedLoss(), stepsRun: step };
  } finally {
    model.eval();
    tf.dispose([fixedImages, fixedActive]);
    source.dispose();
  }
}

/** AdamW over the model's parameters with SparK's groups, gradients clipped at norm 5 (the official clip). */
export function pageOptimizer(model: SparkModel, learningRate: number): AdamW {
  return new AdamW(paramGroupsFromVariables(model.parameters()), { lr: learningRate, weightDecay: WEIGHT_DECAY, maxGradNorm: 5 });
}

function concat(arrays: Uint8Array[]): Int32Array {
  const out = new Int32Array(arrays.reduce((sum, array) => sum + array.length, 0));
  let offset = 0;
  for (const array of arrays) {
    out.set(array, offset);
    offset += array.length;
  }
  return out;
}
