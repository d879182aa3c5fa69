// Weights files of every kind this project meets, told apart by their contents (never by their names):
// our safetensors, and the official SparK release's `.pth` files. One reader turns any of them into a
// state dict with official names, one builder turns that into a SparkModel, one writer produces the
// official layouts again. Bytes in, bytes out: browser-safe.

import { createBackboneFromConfig, backboneConfigFromState, namedBackboneConfig, BACKBONE_NAMES, type BackboneConfig } from '@sparkmim/backbones';
import { loadTorchState, type LoadStateReport, type NamedVariable, type TorchTensorData } from '@sparkmim/sparse-ops';
import { PickleOrderedDict, type PickleValue } from '../io/pth/pickle';
import { PthTensor, PthTensorOut, readPth, writePth } from '../io/pth/pth';
import { looksLikeLegacyPth, looksLikeZip } from '../io/pth/zip';
import { decodeSafetensors } from '../io/safetensors';
import { ENCODER_STATE_PREFIX } from '../train/trainable';
import { SparkModel, type SparkModelLoadOptions } from './spark-model';
import { DEPRECATED_SPARK_BUFFERS, stripStatePrefix, type TorchStateDict } from './state';

/**
 * What a weights file holds:
 * - `spark-checkpoint`: the official `*_withdecoder_1kpretrained_spark_style.pth`, a dict whose `module` is
 *   the full SparK state (encoder, densify layers, decoder) beside `arch`, `epoch`, `input_size`, `args`...;
 * - `spark-state`: a bare full SparK state dict (the bare form of the same release, or our safetensors);
 * - `resnet-encoder`: a timm ResNet's weights alone (the official `*_1kpretrained_timm_style.pth`, our
 *   `encoder.safetensors`);
 * - `convnext-encoder`: an official ConvNeXt's weights alone (`convnext*_official_style.pth`);
 * - `state-dict`: any other state dict (a custom backbone's, say): loaded by name, no architecture read.
 */
export type WeightsFileKind = 'spark-checkpoint' | 'spark-state' | 'resnet-encoder' | 'convnext-encoder' | 'state-dict';

/** A weights file read by {@link readWeightsFile}. */
export interface WeightsFile {
  format: 'pth' | 'safetensors' | 'tfjs';
  kind: WeightsFileKind;
  /** Full SparK names for the spark kinds, backbone names (no prefix) for the encoder kinds; float32 data. */
  state: TorchStateDict;
  /** The element type each tensor had in the file (`float16`, `int64`, `F32`, ...). */
  dtypes: Map<string, string>;
  /** The checkpoint dict's other entries that are plain values (`arch`, `epoch`, `input_size`, `args`, ...). */
  meta: Record<string, string | number | boolean | null>;
  /** Keys read but not weights of our models: SparK's deprecated buffers, a `config` dict, a classifier head. */
  ignored: string[];
}

export interface ReadWeightsOptions {
  /** A name for the bytes (file name or URL) that error messages start with. */
  source?: string;
  /** Keep only keys under this prefix, with it removed (e.g. `param.` in the golden files). */
  stripPrefix?: string;
}

// Classifier layers that encoder files may carry and our backbones (feature extractors) do not have.
const HEAD_KEYS = /^(fc|head|norm)\.(weight|bias)$/;

/**
 * Reads a weights file of any kind (safetensors, or a `.pth` in any layout of the official release) into
 * a state dict with official names, telling the kind from the keys. A `.pth` that is hostile or broken is
 * refused in one line (see `readPth`).
 *
 * @example
 * const file = readWeightsFile(bytes, { source: 'res50_withdecoder_1kpretrained_spark_style.pth' });
 * file.kind; // 'spark-checkpoint'
 */
export function readWeightsFile(bytes: Uint8Array, { source = 'the file', stripPrefix = '' }: ReadWeightsOptions = {}): WeightsFile {
  const dtypes = new Map<string, string>();
  const meta: WeightsFile['meta'] = {};
  const ignored: string[] = [];
  const state: TorchStateDict = new Map();
  let format: WeightsFile['format'];
  let wrapped = false;
  if (looksLikeZip(bytes) || looksLikeLegacyPth(bytes)) {
    format = 'pth';
    const { root } = readPth(bytes, { source });
    let tensors = root;
    if (root instanceof Map) {
      // The official checkpoint dict (`module`), or a dict wrapping a state dict the way the ConvNeXt and
      // many training scripts save one (`model`, `state_dict`).
      for (const key of ['module', 'model', 'state_dict']) {
        const inner = root.get(key);
        if (inner instanceof Map && [...inner.values()].some((value) => value instanceof PthTensor)) {
          tensors = inner;
          wrapped = key === 'module';
          for (const [name, value] of root) {
            if (name === key || typeof name !== 'string') continue;
            if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) meta[name] = value as string | number | boolean | null;
            else ignored.push(name);
          }
          break;
        }
      }
    }
    if (!(tensors instanceof Map)) throw new Error(`${source}: the file holds no state dict (its top level is ${describeValue(root)})`);
    for (const [key, value] of tensors) {
      const name = String(key);
      if (value instanceof PthTensor) {
        state.set(name, { shape: value.shape, data: value.data instanceof Float32Array ? value.data : Float32Array.from(value.data) });
        dtypes.set(name, value.dtype);
      } else {
        ignored.push(name); // e.g. SparK's `config` dict (state_dict(with_config=True))
      }
    }
  } else {
    format = 'safetensors';
    const decoded = decodeSafetensors(bytes, { source });
    // A sparkmim checkpoint's model file names the epoch to run next; the official dict holds the last
    // one finished (main.py resumes at epoch + 1).
    const nextEpoch = Number(decoded.metadata.epoch);
    if (decoded.metadata.sparkmim_version !== undefined && Number.isInteger(nextEpoch) && nextEpoch > 0) meta.epoch = nextEpoch - 1;
    for (const [name, tensor] of decoded.tensors) {
      const data = tensor.data instanceof Float32Array ? tensor.data : Float32Array.from(tensor.data as ArrayLike<number>);
      state.set(name, { shape: tensor.shape, data });
      dtypes.set(name, tensor.dtype);
    }
  }
  return classifyWeights({ format, state, dtypes, meta, ignored }, { source, stripPrefix, wrapped });
}

/**
 * The kind of a state dict read from any format (see {@link WeightsFileKind}); `wrapped` when it came
 * from the `module` of a checkpoint dict. Drops SparK's deprecated buffers and an encoder's classifier head
 * (listed in `ignored`).
 */
export function classifyWeights(
  read: Omit<WeightsFile, 'kind'>,
  { source = 'the file', stripPrefix = '', wrapped = false }: ReadWeightsOptions & { wrapped?: boolean } = {},
): WeightsFile {
  const { format, dtypes, meta, ignored } = read;
  let state = read.state;
  if (stripPrefix) {
    const stripped = stripStatePrefix(state, stripPrefix);
    if (stripped.size === 0) {
      throw new Error(`${source}: no key starts with '${stripPrefix}' (${state.size} keys, such as ${[...state.keys()].slice(0, 3).join(', ')})`);
    }
    state = stripped;
  }
  if (state.size === 0) throw new Error(`${source}: the file holds no tensors`);
  for (const key of DEPRECATED_SPARK_BUFFERS) {
    if (state.delete(key)) ignored.push(key);
  }
  let kind: WeightsFileKind;
  if ([...state.keys()].some((key) => key.startsWith(ENCODER_STATE_PREFIX))) {
    kind = wrapped ? 'spark-checkpoint' : 'spark-state';
  } else {
    const head = [...state.keys()].filter((key) => HEAD_KEYS.test(key));
    const body = new Map([...state].filter(([key]) => !HEAD_KEYS.test(key)));
    let config: BackboneConfig | undefined;
    try {
      config = backboneConfigFromState(body);
    } catch {
      config = undefined; // not a ResNet or ConvNeXt: a state dict of something else, loaded by name
    }
    if (config) {
      state = body;
      ignored.push(...head);
      kind = config.kind === 'resnet' ? 'resnet-encoder' : 'convnext-encoder';
    } else {
      kind = 'state-dict';
    }
  }
  return { format, kind, state, dtypes, meta, ignored };
}

function describeValue(value: PickleValue): string {
  if (value instanceof Map) return `a dict with keys ${[...value.keys()].slice(0, 5).map(String).join(', ')}`;
  if (Array.isArray(value)) return `a list of ${value.length}`;
  return value instanceof PthTensor ? 'a tensor' : typeof value;
}

/** Whether a file holds a whole SparK model (with its decoder) or an encoder alone. */
export function isEncoderOnly(file: Pick<WeightsFile, 'kind'>): boolean {
  return file.kind === 'resnet-encoder' || file.kind === 'convnext-encoder';
}

function architectureError(file: Pick<WeightsFile, 'kind' | 'state'>): Error {
  return new Error(
    `the weights are neither a SparK model (no key starts with ${ENCODER_STATE_PREFIX}) nor a timm ResNet or an official ConvNeXt ` +
      `(${file.state.size} keys, such as ${[...file.state.keys()].slice(0, 3).join(', ')})`,
  );
}

/**
 * The backbone architecture of a weights file, and the official model name when it is one
 * (`resnet50`, `convnext_small`; undefined for narrow or custom variants).
 *
 * @example
 * weightsArchitecture(file); // { config: { kind: 'resnet', depths: [3, 4, 6, 3], ... }, name: 'resnet50' }
 */
export function weightsArchitecture(file: Pick<WeightsFile, 'kind' | 'state'>): { config: BackboneConfig; name?: string } {
  if (file.kind === 'state-dict') throw architectureError(file);
  const config = backboneConfigFromState(file.state, { prefix: isEncoderOnly(file) ? '' : ENCODER_STATE_PREFIX });
  const name = BACKBONE_NAMES.find((candidate) => {
    const named = namedBackboneConfig(candidate);
    if (named.kind !== config.kind || named.depths.join() !== config.depths.join()) return false;
    if (named.kind === 'resnet' && config.kind === 'resnet') {
      return named.block === config.block && (config.stemWidth ?? 64) === 64 && (config.channels ?? [64, 128, 256, 512]).join() === '64,128,256,512';
    }
    return named.kind === 'convnext' && config.kind === 'convnext' && named.dims!.join() === config.dims!.join();
  });
  return { config, name };
}

export interface SparkModelFromWeightsOptions extends Omit<SparkModelLoadOptions, 'stripPrefix'> {
  /** For encoder-only files: the new decoder's width (default 768, SparK's). */
  decoderWidth?: number;
}

/**
 * A SparkModel from a weights file: a full SparK state as it is; encoder-only weights into a model whose
 * encoder is built from them (architecture read off the weights) and whose decoder is new.
 *
 * @example
 * const model = await sparkModelFromWeights(readWeightsFile(bytes), { decoderWidth: 512 });
 */
export async function sparkModelFromWeights(file: WeightsFile, options: SparkModelFromWeightsOptions = {}): Promise<SparkModel> {
  const { decoderWidth, ...loadOptions } = options;
  if (file.kind === 'state-dict') throw architectureError(file);
  if (!isEncoderOnly(file)) return SparkModel.fromState(file.state, loadOptions);
  const { config } = weightsArchitecture(file);
  const model = new SparkModel({
    backbone: createBackboneFromConfig({ ...config, seed: loadOptions.seed }),
    decoderWidth,
    maskRatio: loadOptions.maskRatio,
    sparse: loadOptions.sparse,
    seed: loadOptions.seed,
  });
  try {
    loadEncoderState(model, file.state, { strict: loadOptions.strict ?? true, caller: 'sparkModelFromWeights' });
  } catch (error) {
    model.dispose();
    throw error;
  }
  return model;
}

/**
 * Loads encoder-only weights (backbone names) into the encoder of a SparK model (entries under
 * `sparse_encoder.sp_cnn.`); strictness applies to the encoder's entries.
 *
 * @example
 * loadEncoderState(model, readWeightsFile(timmBytes).state);
 */
export function loadEncoderState(
  model: { stateEntries(): NamedVariable[] },
  state: ReadonlyMap<string, TorchTensorData>,
  { strict = true, caller = 'loadEncoderState' }: { strict?: boolean; caller?: string } = {},
): LoadStateReport {
  const encoder = {
    stateEntries: () =>
      model
        .stateEntries()
        .filter((entry) => entry.name.startsWith(ENCODER_STATE_PREFIX))
        .map((entry) => ({ ...entry, name: entry.name.slice(ENCODER_STATE_PREFIX.length) })),
  };
  return loadTorchState(encoder, state, { strict, caller });
}

/** The official `.pth` layouts {@link stateToPth} writes. */
export type PthLayout = 'spark' | 'encoder';

export interface StateToPthOptions {
  /**
   * `spark` (default): the official full checkpoint dict, `{module: state, arch, epoch, input_size, ...}`, as
   * `main.py --resume_from` / `--init_weight` read it; `encoder`: a bare encoder state dict (timm names for
   * ResNets, official names for ConvNeXt), as `*_1kpretrained_timm_style.pth`.
   */
  layout?: PthLayout;
  /** For `spark`: entries beside `module` (`arch`, `epoch` (the last finished, 0-based), `input_size`...). */
  meta?: Record<string, string | number | boolean>;
}

/**
 * A state dict (official names, PyTorch layouts) as a `.pth` file in an official layout; buffers named
 * `num_batches_tracked` are written as int64, the rest as float32, as PyTorch holds them.
 *
 * @example
 * const bytes = stateToPth(await model.stateDict(), { meta: { arch: 'resnet50', epoch: 99, input_size: 224 } });
 * const timm = stateToPth(await torchState(model, { stripPrefix: ENCODER_STATE_PREFIX }), { layout: 'encoder' });
 */
export function stateToPth(state: ReadonlyMap<string, TorchTensorData>, { layout = 'spark', meta = {} }: StateToPthOptions = {}): Uint8Array {
  const tensors = new Map<string, PthTensorOut>();
  for (const [key, tensor] of state) {
    const integer = key.endsWith('num_batches_tracked');
    tensors.set(key, new PthTensorOut({ shape: tensor.shape, data: tensor.data, dtype: integer ? 'int64' : 'float32' }));
  }
  const dict = new PickleOrderedDict(tensors);
  if (layout === 'encoder') return writePth(dict);
  return writePth(new Map<string, unknown>([...Object.entries(meta), ['module', dict], ['is_pretrain', true]]));
}

// Buffers of BatchNorm: everything else in our models' state dicts (and SparK's) is a parameter.
const BUFFER_KEY = /(^|\.)(running_mean|running_var|num_batches_tracked)$/;

/** What `sparkmim inspect` prints of a weights file. */
export interface WeightsSummary {
  format: WeightsFile['format'];
  kind: WeightsFileKind;
  /** The backbone's official name (`resnet50`), or undefined for narrow or custom variants. */
  architecture?: string;
  backbone: BackboneConfig;
  /** Trainable parameters (every tensor but BatchNorm's running statistics), as PyTorch's `sum(p.numel() for p in model.parameters())`. */
  parameterCount: number;
  tensors: { key: string; shape: number[]; dtype: string }[];
  meta: WeightsFile['meta'];
  ignored: string[];
}

/**
 * A summary of a weights file: its kind, architecture (read off the weights), parameter count, tensors.
 *
 * @example
 * summarizeWeights(readWeightsFile(bytes)).parameterCount; // 25557032 for a ResNet-50 with its classifier
 */
export function summarizeWeights(file: WeightsFile): WeightsSummary {
  const { config, name } = weightsArchitecture(file);
  let parameterCount = 0;
  const tensors: WeightsSummary['tensors'] = [];
  for (const [key, tensor] of file.state) {
    if (!BUFFER_KEY.test(key)) parameterCount += tensor.data.length;
    tensors.push({ key, shape: tensor.shape, dtype: file.dtypes.get(key) ?? 'float32' });
  }
  return {
    format: file.format,
    kind: file.kind,
    architecture: name,
    backbone: config,
    parameterCount,
    tensors,
    meta: file.meta,
    ignored: file.ignored,
  };
}
