import * as tf from '@tensorflow/tfjs-core';
import type { TorchTensorData } from '@sparkmim/sparse-ops';
import { version as SPARKMIM_VERSION } from '../../package.json';
import { writeFileAtomic } from '../io/atomic-write';
import { decodeSafetensors, encodeSafetensors } from '../io/safetensors';
import type { SafetensorsEntry, SafetensorsTensor } from '../io/safetensors';
import { safetensorsEntriesFromTensors, tensorsFromSafetensors } from '../io/tensors';
import { loadSparkState, stateFromSafetensors, stateToSafetensors } from '../model/state';
import { readWeightsFile } from '../model/weights-file';
import { torchState, type LoadStateReport } from '@sparkmim/sparse-ops';
import type { Optimizer } from '../optim/optimizer';
import { fs, path } from '../data/node-modules';
import { ENCODER_STATE_PREFIX } from './trainable';
import type { TrainableModel } from './trainable';

/** The name of a checkpoint folder's manifest: written last, it decides which files make the checkpoint. */
export const CHECKPOINT_MANIFEST = 'checkpoint.json';
/** Encoder-only weights (timm / official backbone names) beside each full checkpoint. */
export const ENCODER_WEIGHTS_FILE = 'encoder.safetensors';

const FORMAT = 'sparkmim-checkpoint';
const FORMAT_VERSION = 1;

/** Where a run stands: what a resumed run starts from. */
export interface TrainingProgress {
  /** The epoch to run (0-based): the next one after an epoch's end, the current one mid-epoch. */
  epoch: number;
  /** Batches of `epoch` already trained on (0 at an epoch's start). */
  iterationInEpoch: number;
  /** Iterations trained in all (the schedule's next iteration). */
  iteration: number;
}

/** Random-stream positions needed to continue a run exactly. */
export interface RandomState {
  /** The run seed, when one was given (see {@link deriveSeeds}). */
  seed?: number;
  /** Position of the mask stream (`SeededRandom.state` of @sparkmim/sparse-ops). */
  mask: number;
  /** Position of the model's own stream (drop path), when it has one. */
  model?: number;
}

/** The JSON manifest of a full checkpoint (`checkpoint.json`). */
export interface CheckpointManifest {
  format: typeof FORMAT;
  formatVersion: number;
  /** Version of @sparkmim/trainer that wrote it. */
  sparkmimVersion: string;
  savedAt: string;
  progress: TrainingProgress;
  random: RandomState;
  /** The run's settings (whatever the caller passed: model, optimiser, schedule, data ...). */
  config: Record<string, unknown>;
  /** The optimiser's groups when saved (their lr and weight decay are set again by the schedule). */
  optimizer: { groups: { name: string; lr: number; weightDecay: number; parameters: number }[] };
  /** Loss figures so far, for humans. */
  metrics?: Record<string, number>;
  /**
   * File names inside the checkpoint folder (plain names: no folder parts). `encoder` (absent in
   * checkpoints of older versions) is {@link ENCODER_WEIGHTS_FILE} when the encoder-only weights were saved.
   */
  files: { model: string; optimizer: string; encoder?: string };
}

export interface SaveCheckpointOptions {
  model: TrainableModel;
  optimizer: Optimizer;
  progress: TrainingProgress;
  random: RandomState;
  config?: Record<string, unknown>;
  metrics?: Record<string, number>;
  /** Also write the encoder-only weights ({@link ENCODER_WEIGHTS_FILE}). Default true. */
  encoder?: boolean;
}

function checkProgress(progress: TrainingProgress, caller: string): void {
  for (const key of ['epoch', 'iterationInEpoch', 'iteration'] as const) {
    const value = progress?.[key];
    if (!(Number.isInteger(value) && value >= 0)) throw new Error(`${caller}: progress.${key} is ${value}, expected a whole number >= 0`);
  }
}

/** Thrown by {@link saveCheckpoint} before it writes anything, when the state to save is not finite. */
export class NonFiniteStateError extends Error {
  override name = 'NonFiniteStateError';
  constructor(
    message: string,
    /** The first model or optimiser entry holding NaN or an infinity. */
    readonly entry: string,
  ) {
    super(message);
  }
}

function firstNonFinite(entries: Iterable<[string, { data: ArrayLike<number> }]>): string | undefined {
  for (const [name, { data }] of entries) {
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return name;
  }
  return undefined;
}

// writeFileAtomic's temporary files: `.<name>.<pid>.<8 hex digits>.tmp`.
const TEMP_FILE = /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/;

/**
 * Removes the temporary files that killed writes left in `dir` (not this process's own: a write of this
 * process may be under way). A lock on the run folder (the CLI's) keeps other live writers out.
 */
async function removeLeftoverTempFiles(dir: string): Promise<void> {
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    const match = TEMP_FILE.exec(name);
    if (match && Number(match[1]) !== process.pid) await fs.rm(path.join(dir, name), { force: true });
  }
}

/**
 * Saves a full checkpoint into folder `dir` (created if needed) so that {@link resumeFromCheckpoint}
 * continues the run exactly: the model's state dict with the decoder (official names, PyTorch layouts,
 * loadable by `SparkModel` and by the official code after conversion), the optimiser's state, and
 * `checkpoint.json` with progress, random-stream positions, config and version; by default also the
 * encoder-only weights in `encoder.safetensors` with the `sparse_encoder.sp_cnn.` prefix removed (timm /
 * official ConvNeXt names, for fine-tuning). Every file the manifest names is written (atomically) before
 * the manifest, which is replaced atomically last: a crash or a kill at any point leaves the previous
 * checkpoint loadable (an `encoder.safetensors` newer than the manifest is rewritten by
 * {@link resumeFromCheckpoint}); files of older checkpoints and temporary files of killed writes are removed
 * after the commit. Nothing is written when a model parameter or optimiser entry holds NaN or an infinity
 * (a {@link NonFiniteStateError}): diverged weights never replace a good checkpoint. Node only.
 *
 * @example
 * await saveCheckpoint('runs/r50', { model, optimizer, progress: { epoch: 3, iterationInEpoch: 0, iteration: 3 * 312 }, random: { mask: maskRandom.state } });
 */
export async function saveCheckpoint(dir: string, options: SaveCheckpointOptions): Promise<CheckpointManifest> {
  const { model, optimizer, progress, random, config = {}, metrics, encoder = true } = options;
  checkProgress(progress, 'saveCheckpoint');
  await fs.mkdir(dir, { recursive: true });
  const previous = await readManifestIfAny(dir);
  const tag = `it${String(progress.iteration).padStart(8, '0')}-${Math.floor(Math.random() * 0x10000)
    .toString(16)
    .padStart(4, '0')}`;
  const files = { model: `model.${tag}.safetensors`, optimizer: `optimizer.${tag}.safetensors` };
  const metadata = checkpointMetadata(progress);

  const modelState = await torchState(model);
  const optimizerState = optimizer.getState();
  let optimizerEntries: Map<string, SafetensorsEntry>;
  try {
    optimizerEntries = await safetensorsEntriesFromTensors(optimizerState);
  } finally {
    tf.dispose([...optimizerState.values()]);
  }
  const bad = firstNonFinite(modelState) ?? firstNonFinite(optimizerEntries as Map<string, { data: ArrayLike<number> }>);
  if (bad !== undefined) {
    throw new NonFiniteStateError(
      `saveCheckpoint: '${bad}' holds NaN or infinite values at iteration ${progress.iteration}; nothing was written ` +
        `(${previous ? `${dir} still holds the checkpoint of iteration ${previous.progress.iteration}` : `${dir} holds no checkpoint`})`,
      bad,
    );
  }
  await writeFileAtomic(path.join(dir, files.model), stateToSafetensors(modelState, metadata));
  await writeFileAtomic(path.join(dir, files.optimizer), encodeSafetensors(optimizerEntries, metadata));
  // The encoder file has a fixed name (what fine-tuning code looks for), so it is written before the manifest:
  // after a kill here it may be newer than the manifest, never older, and a resume rewrites it.
  let encoderFile: string | undefined;
  if (encoder) {
    const encoderState = encoderStateOf(modelState);
    if (encoderState.size > 0) {
      encoderFile = ENCODER_WEIGHTS_FILE;
      await writeFileAtomic(path.join(dir, encoderFile), stateToSafetensors(encoderState, metadata));
    }
  }

  const manifest: CheckpointManifest = {
    format: FORMAT,
    formatVersion: FORMAT_VERSION,
    sparkmimVersion: SPARKMIM_VERSION,
    savedAt: new Date().toISOString(),
    progress: { epoch: progress.epoch, iterationInEpoch: progress.iterationInEpoch, iteration: progress.iteration },
    random: { ...random },
    config,
    optimizer: {
      groups: optimizer.paramGroups.map((group) => ({
        name: group.name,
        lr: group.lr,
        weightDecay: group.weightDecay,
        parameters: group.variables.length,
      })),
    },
    ...(metrics ? { metrics } : {}),
    files: encoderFile ? { ...files, encoder: encoderFile } : files,
  };
  // The commit: until this rename, checkpoint.json names the previous checkpoint's files.
  await writeFileAtomic(path.join(dir, CHECKPOINT_MANIFEST), new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`));
  await removeStaleFiles(dir, new Set(Object.values(manifest.files)), previous);
  await removeLeftoverTempFiles(dir);
  return manifest;
}

function encoderStateOf(modelState: ReadonlyMap<string, TorchTensorData>): Map<string, TorchTensorData> {
  const encoderState = new Map<string, TorchTensorData>();
  for (const [name, tensor] of modelState)
    if (name.startsWith(ENCODER_STATE_PREFIX)) encoderState.set(name.slice(ENCODER_STATE_PREFIX.length), tensor);
  return encoderState;
}

function checkpointMetadata(progress: TrainingProgress): Record<string, string> {
  return { format: 'pt', sparkmim_version: SPARKMIM_VERSION, epoch: String(progress.epoch), iteration: String(progress.iteration) };
}

// Files of earlier checkpoints, and pieces of writes that a crash interrupted: model.*/optimizer.*
// safetensors the new manifest does not name, and writeFileAtomic's temporary files of them.
async function removeStaleFiles(dir: string, keep: ReadonlySet<string>, previous: CheckpointManifest | undefined): Promise<void> {
  const ours = /^\.?(model|optimizer)\.it\d+-[0-9a-f]{4}\.safetensors(\.\d+\.[0-9a-f]{8}\.tmp)?$/;
  const names = await fs.readdir(dir);
  for (const name of names) {
    const stale = (ours.test(name) && !keep.has(name)) || (previous !== undefined && Object.values(previous.files).includes(name) && !keep.has(name));
    if (stale) await fs.rm(path.join(dir, name), { force: true });
  }
}

async function readManifestIfAny(dir: string): Promise<CheckpointManifest | undefined> {
  try {
    return await readCheckpointManifest(dir);
  } catch {
    return undefined;
  }
}

/**
 * Reads and checks `checkpoint.json` of a checkpoint folder.
 *
 * @example
 * const { progress } = await readCheckpointManifest('runs/r50'); // { epoch: 3, iterationInEpoch: 0, iteration: 936 }
 */
export async function readCheckpointManifest(dir: string): Promise<CheckpointManifest> {
  const file = path.join(dir, CHECKPOINT_MANIFEST);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') throw new Error(`${dir} holds no checkpoint: ${CHECKPOINT_MANIFEST} is missing`);
    throw error;
  }
  let manifest: CheckpointManifest;
  try {
    manifest = JSON.parse(text) as CheckpointManifest;
  } catch (error) {
    throw new Error(`${file}: not valid JSON (${(error as Error).message})`);
  }
  if (manifest?.format !== FORMAT) throw new Error(`${file}: format is ${JSON.stringify(manifest?.format)}, expected '${FORMAT}'`);
  if (!(manifest.formatVersion <= FORMAT_VERSION)) {
    throw new Error(
      `${file}: format version ${manifest.formatVersion} is newer than this sparkmim reads (${FORMAT_VERSION}); upgrade @sparkmim/trainer`,
    );
  }
  checkProgress(manifest.progress, file);
  if (manifest.progress.iteration < manifest.progress.epoch + manifest.progress.iterationInEpoch) {
    const { epoch, iterationInEpoch, iteration } = manifest.progress;
    throw new Error(`${file}: progress is inconsistent: iteration ${iteration} cannot follow ${epoch} whole epochs and ${iterationInEpoch} batches`);
  }
  if (typeof manifest.config !== 'object' || manifest.config === null || Array.isArray(manifest.config)) {
    throw new Error(`${file}: config is ${JSON.stringify(manifest.config)}, expected an object of settings`);
  }
  if (typeof manifest.random !== 'object' || manifest.random === null || !Number.isSafeInteger(manifest.random.mask)) {
    throw new Error(`${file}: random is ${JSON.stringify(manifest.random)}, expected { mask: <stream position>, ... }`);
  }
  if (typeof manifest.files?.model !== 'string' || typeof manifest.files?.optimizer !== 'string') {
    throw new Error(`${file}: expected files.model and files.optimizer to name the checkpoint's files`);
  }
  // The names must stay inside the folder: a manifest is data, and '../x' would read (and later remove) files elsewhere.
  for (const [key, name] of Object.entries(manifest.files)) {
    if (key === 'encoder' && name === undefined) continue;
    if (typeof name !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name) || name.length > 255) {
      throw new Error(
        `${file}: files.${key} is ${JSON.stringify(name)}, expected a plain file name inside the checkpoint folder (no '/', '\\' or '..')`,
      );
    }
  }
  return manifest;
}

/** A full checkpoint as read from disk, before it is applied to anything. */
export interface LoadedCheckpoint {
  manifest: CheckpointManifest;
  /** The model's state dict (official names, PyTorch layouts): e.g. to build a `SparkModel` from. */
  modelState: Map<string, TorchTensorData>;
  /** The optimiser's state entries (`exp_avg.<param>`, `step`, ...). */
  optimizerState: Map<string, SafetensorsTensor>;
}

/**
 * Reads a checkpoint folder (manifest, model state dict, optimiser state) without applying it.
 *
 * @example
 * const { manifest, modelState } = await loadCheckpoint('runs/r50');
 * const model = await SparkModel.fromState(modelState);
 */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const manifest = await readCheckpointManifest(dir);
  const modelFile = path.join(dir, manifest.files.model);
  const optimizerFile = path.join(dir, manifest.files.optimizer);
  const modelState = stateFromSafetensors(new Uint8Array(await fs.readFile(modelFile)), { source: modelFile });
  const optimizerState = decodeSafetensors(new Uint8Array(await fs.readFile(optimizerFile)), { source: optimizerFile }).tensors;
  return { manifest, modelState, optimizerState };
}

export interface ResumeOptions {
  model: TrainableModel;
  optimizer: Optimizer;
}

/**
 * Restores everything of a full checkpoint: model parameters and buffers (strictly: every name and shape
 * must match), the optimiser's state and the model's random stream; returns the manifest, whose
 * `progress` and `random` tell the loop where to continue (pass it as `resume` to {@link train}).
 * Compare {@link initFromWeights}, which takes the model weights only and starts at epoch 0.
 *
 * @example
 * const manifest = await resumeFromCheckpoint('runs/r50', { model, optimizer });
 * await train({ model, optimizer, data, epochs: 1600, resume: manifest });
 */
export async function resumeFromCheckpoint(dir: string, { model, optimizer }: ResumeOptions): Promise<CheckpointManifest> {
  const { manifest, modelState, optimizerState } = await loadCheckpoint(dir);
  loadSparkState(model, modelState, { caller: `resumeFromCheckpoint(${dir})` });
  const tensors = tensorsFromSafetensors(optimizerState);
  try {
    await optimizer.setState(tensors);
  } finally {
    tf.dispose([...tensors.values()]);
  }
  if (manifest.random.model !== undefined) model.setRandomState?.(manifest.random.model);
  await repairCheckpointFolder(dir, manifest, modelState);
  return manifest;
}

/**
 * What a kill during a save may leave, put right before the run continues: temporary files of killed writes
 * are removed, and an `encoder.safetensors` that does not hold the manifest's weights (written just before a
 * kill that came ahead of the manifest) is written again from them.
 */
async function repairCheckpointFolder(dir: string, manifest: CheckpointManifest, modelState: ReadonlyMap<string, TorchTensorData>): Promise<void> {
  await removeLeftoverTempFiles(dir);
  if (manifest.files.encoder === undefined) return;
  const expected = stateToSafetensors(encoderStateOf(modelState), checkpointMetadata(manifest.progress));
  const file = path.join(dir, manifest.files.encoder);
  const actual = await fs.readFile(file).catch(() => undefined);
  if (!actual || Buffer.compare(actual, expected) !== 0) await writeFileAtomic(file, expected);
}

export interface InitFromWeightsOptions {
  /** Use only the keys under this prefix, with it removed (e.g. `param.` in the golden files). */
  stripPrefix?: string;
  /**
   * Every model entry must be in the file and every key of the file in the model. Default true. With
   * false, missing entries keep their initial values and unknown keys are ignored (the report lists them).
   */
  strict?: boolean;
  /**
   * The file holds encoder-only weights (timm / official backbone names): they are loaded under
   * `sparse_encoder.sp_cnn.`. Default: detected (no key of the file starts with that prefix, and the model
   * has entries there).
   */
  encoderOnly?: boolean;
}

/**
 * Loads model weights only (the official `--init_weight`): a full state dict or encoder-only weights, from
 * a safetensors or `.pth` file path (Node) or its bytes. The optimiser and progress are untouched, so training starts
 * at epoch 0; use {@link resumeFromCheckpoint} to continue a run.
 *
 * @example
 * await initFromWeights(model, 'resnet50_1kpretrained_timm_style.safetensors', { strict: false });
 */
export async function initFromWeights(
  model: TrainableModel,
  source: string | Uint8Array,
  options: InitFromWeightsOptions = {},
): Promise<LoadStateReport> {
  const { stripPrefix = '', strict = true } = options;
  let bytes: Uint8Array;
  let name = 'the weights';
  if (typeof source === 'string') {
    bytes = new Uint8Array(await fs.readFile(source));
    name = source;
  } else {
    bytes = source;
  }
  // Safetensors or any official .pth kind (checkpoint dict, bare SparK state, timm / ConvNeXt encoder).
  let state = readWeightsFile(bytes, { stripPrefix, source: name }).state;
  const modelNames = model.stateEntries().map((entry) => entry.name);
  const encoderOnly =
    options.encoderOnly ??
    (![...state.keys()].some((key) => key.startsWith(ENCODER_STATE_PREFIX)) && modelNames.some((key) => key.startsWith(ENCODER_STATE_PREFIX)));
  if (encoderOnly) {
    state = new Map([...state].map(([key, value]) => [ENCODER_STATE_PREFIX + key, value]));
    // Encoder weights cannot fill the decoder: strictness applies to the encoder's entries.
    const encoderView = { stateEntries: () => model.stateEntries().filter((entry) => entry.name.startsWith(ENCODER_STATE_PREFIX)) };
    return loadSparkState(encoderView, state, { strict, caller: `initFromWeights(${name})` });
  }
  return loadSparkState(model, state, { strict, caller: `initFromWeights(${name})` });
}

/**
 * Writes the encoder's weights alone (the `sparse_encoder.sp_cnn.` prefix removed: timm names for
 * ResNets, official names for ConvNeXt), atomically, for fine-tuning elsewhere (the official
 * `*_1kpretrained_timm_style.pth`). Node only.
 *
 * @example
 * await saveEncoderWeights(model, 'resnet50_1kpretrained_timm_style.safetensors');
 */
export async function saveEncoderWeights(model: Pick<TrainableModel, 'stateEntries'>, file: string): Promise<void> {
  const state = await torchState(model, { stripPrefix: ENCODER_STATE_PREFIX });
  await writeFileAtomic(file, stateToSafetensors(state, { format: 'pt', sparkmim_version: SPARKMIM_VERSION }));
}
