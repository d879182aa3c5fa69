// The settings of `sparkmim pretrain`: defaults, a JSON or YAML config file, flags over it, and the checks
// that turn a bad value into one line naming where it came from (`--batch-size` or `batchSize in run.json`).
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseDocument } from 'yaml';
import { sparkRecipe } from '@sparkmim/trainer';
import { UsageError } from '../errors';

/** Everything a pre-training run is made of; saved as the run folder's `config.json`. */
export interface PretrainConfig {
  /** Folder of images (searched recursively). */
  data?: string;
  /**
   * A backbone name of the registry (resnet18 … resnet200, convnext_tiny … convnext_large), or the path of
   * an ES module whose default export is a Backbone (a path starts with '.' or '/' or ends in .js/.mjs).
   */
  model: string;
  /** ResNet: output channels of the stem conv. */
  stemWidth?: number;
  /** ResNet: channels of the four stages (before the bottleneck expansion). */
  widths?: number[];
  /** ConvNeXt: channels of the four stages. */
  dims?: number[];
  /** Blocks of the four stages (ResNet layers, ConvNeXt stages); default: the named model's. */
  depths?: number[];
  /** Decoder channels at the smallest map (SparK's 768). */
  decoderWidth: number;
  /** Image size: N (N x N) or 'WxH' (width x height, e.g. '320x192'), sides multiples of the downsample ratio. */
  inputSize: number | string;
  maskRatio: number;
  batchSize: number;
  epochs: number;
  baseLr: number;
  /** Default: 40 (SparK's), or epochs / 40 rounded down for runs shorter than 1600 epochs. */
  warmupEpochs?: number;
  weightDecay: number;
  weightDecayEnd: number;
  optimizer: 'lamb' | 'adamw' | 'sgd';
  /** Stochastic depth of the encoder; default: the official value for the model (e.g. 0.05 for resnet50). */
  dropPath?: number;
  /** The optimiser's second beta (the official --ada); default 0.95 for ResNets, 0.999 for ConvNeXts. */
  beta2?: number;
  /** Gradient clipping: the global gradient norm is scaled down to this; 0 = off. Default 5. */
  clip?: number;
  /** Densify norm: bn, ln or none; default bn for ResNets (and custom convnets), ln for ConvNeXts. */
  densifyNorm?: string;
  /**
   * How the sparse encoder computes: rows (visible sites only; ResNets and ConvNeXts), dense (masked ops
   * over whole maps) or auto (rows for a ResNet or ConvNeXt of 64+ channels on wasm or cpu, dense
   * otherwise). Default auto.
   */
  sparsePath?: string;
  /** A backend name, or 'auto': the fastest that can be set up. */
  backend: string;
  seed: number;
  /** The run folder. Default: runs/<model>-<date>-<time>, or the folder resumed. */
  out?: string;
  /** Model weights (safetensors) to start from at epoch 0. */
  initWeights?: string;
  /** Keep a copy of the checkpoint every this many epochs (0: only the latest, rewritten every epoch). */
  checkpointEvery: number;
  /** Write a preview grid every this many epochs (and after the last one); 0: only after the last one. */
  previewEvery: number;
}

export const PRETRAIN_DEFAULTS: PretrainConfig = {
  model: 'resnet50',
  decoderWidth: 768,
  inputSize: 224,
  maskRatio: 0.6,
  batchSize: 64,
  epochs: 1600,
  baseLr: 2e-4,
  weightDecay: 0.04,
  weightDecayEnd: 0.2,
  optimizer: 'lamb',
  backend: 'auto',
  seed: 0,
  checkpointEvery: 0,
  previewEvery: 10,
};

type Kind = 'string' | 'int' | 'number' | 'ints' | 'size';

/** Each config key, its flag and the kind of value it holds. */
const KEYS: Record<keyof PretrainConfig, { flag: string; kind: Kind }> = {
  data: { flag: 'data', kind: 'string' },
  model: { flag: 'model', kind: 'string' },
  stemWidth: { flag: 'stem-width', kind: 'int' },
  widths: { flag: 'widths', kind: 'ints' },
  dims: { flag: 'dims', kind: 'ints' },
  depths: { flag: 'depths', kind: 'ints' },
  decoderWidth: { flag: 'decoder-width', kind: 'int' },
  inputSize: { flag: 'input-size', kind: 'size' },
  maskRatio: { flag: 'mask-ratio', kind: 'number' },
  batchSize: { flag: 'batch-size', kind: 'int' },
  epochs: { flag: 'epochs', kind: 'int' },
  baseLr: { flag: 'base-lr', kind: 'number' },
  warmupEpochs: { flag: 'warmup-epochs', kind: 'int' },
  weightDecay: { flag: 'weight-decay', kind: 'number' },
  weightDecayEnd: { flag: 'weight-decay-end', kind: 'number' },
  optimizer: { flag: 'optimizer', kind: 'string' },
  dropPath: { flag: 'drop-path', kind: 'number' },
  beta2: { flag: 'beta2', kind: 'number' },
  clip: { flag: 'clip', kind: 'number' },
  densifyNorm: { flag: 'densify-norm', kind: 'string' },
  sparsePath: { flag: 'sparse-path', kind: 'string' },
  backend: { flag: 'backend', kind: 'string' },
  seed: { flag: 'seed', kind: 'int' },
  out: { flag: 'out', kind: 'string' },
  initWeights: { flag: 'init-weights', kind: 'string' },
  checkpointEvery: { flag: 'checkpoint-every', kind: 'int' },
  previewEvery: { flag: 'preview-every', kind: 'int' },
};

export const CONFIG_KEYS = Object.keys(KEYS) as (keyof PretrainConfig)[];

/** The parseArgs options of every config flag (all strings: the values are checked here). */
export const CONFIG_FLAG_OPTIONS = Object.fromEntries(CONFIG_KEYS.map((key) => [KEYS[key].flag, { type: 'string' as const }]));

type Values = Partial<Record<keyof PretrainConfig, unknown>>;

/** Keys holding paths: in a config file they are relative to the file's folder (`out` is not: see the help). */
const FILE_RELATIVE_KEYS = ['data', 'initWeights'] as const;

/**
 * Reads a JSON or YAML (`.yaml`, `.yml`) config file; unknown keys are an error that lists the valid ones.
 * Relative `data` and `initWeights` are resolved against the file's folder, so that a config file can sit
 * beside its data and be used from anywhere.
 */
export function readConfigFile(file: string, label = file): Values {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new UsageError(`--config: cannot read ${file}${code === 'ENOENT' ? ': no such file' : `: ${(error as Error).message}`}`);
  }
  const yaml = /\.ya?ml$/i.test(file);
  let parsed: unknown;
  if (yaml) {
    let document: ReturnType<typeof parseDocument>;
    try {
      document = parseDocument(text);
    } catch (error) {
      // The parser recurses: a value nested thousands deep overflows its stack.
      throw new UsageError(`--config: ${label} cannot be read as YAML: ${oneLineOf(error)}`);
    }
    // The parser's messages end with a picture of the line; their first line says what and where.
    if (document.errors.length) {
      throw new UsageError(`--config: ${label} is not valid YAML: ${document.errors[0].message.split('\n')[0].replace(/:$/, '')}`);
    }
    try {
      // toJS resolves aliases: the yaml library stops an alias bomb here with a ReferenceError.
      parsed = document.toJS({ maxAliasCount: 100 });
    } catch (error) {
      throw new UsageError(`--config: ${label} cannot be read as YAML: ${oneLineOf(error)}`);
    }
  } else {
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new UsageError(`--config: ${label} is not valid JSON: ${(error as Error).message}`);
    }
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`--config: ${label} must hold ${yaml ? 'a YAML mapping (key: value lines)' : 'a JSON object'}`);
  }
  // A value nested thousands deep is no setting; refused before anything recurses over it.
  checkDepth(parsed, label);
  // Own keys only: 'toString', 'constructor' and '__proto__' are found `in` every object.
  const unknown = Object.keys(parsed).filter((key) => !Object.hasOwn(KEYS, key));
  if (unknown.length) {
    throw new UsageError(`--config: ${label}: unknown key(s) ${unknown.join(', ')}; valid keys: ${CONFIG_KEYS.join(', ')}`);
  }
  const values = { ...parsed } as Values;
  for (const key of FILE_RELATIVE_KEYS) {
    const value = values[key];
    if (typeof value === 'string' && value !== '' && !path.isAbsolute(value)) values[key] = path.join(path.dirname(file), value);
  }
  return values;
}

/**
 * Defaults, then each layer (a resumed run's config, the config file, the flags) over the previous one;
 * every value checked. `layers` name where their values came from, for the messages.
 */
export function resolveConfig(layers: { values: Values; from: 'flag' | string }[]): PretrainConfig {
  const config: Record<string, unknown> = { ...PRETRAIN_DEFAULTS };
  const origin = new Map<string, string>();
  for (const { values, from } of layers) {
    for (const key of CONFIG_KEYS) {
      const raw = values[key];
      if (raw === undefined || raw === null) continue;
      const where = from === 'flag' ? `--${KEYS[key].flag}` : `${key} in ${from}`;
      config[key] = convert(raw, KEYS[key].kind, where);
      origin.set(key, where);
    }
  }
  const where = (key: keyof PretrainConfig) => origin.get(key) ?? `${key} (default)`;
  const resolved = config as unknown as PretrainConfig;
  const wholeAtLeast = (key: keyof PretrainConfig, minimum: number) => {
    const value = resolved[key] as number | undefined;
    if (value !== undefined && !(Number.isInteger(value) && value >= minimum)) {
      throw new UsageError(`${where(key)} is ${value}, expected a whole number >= ${minimum}`);
    }
  };
  wholeAtLeast('batchSize', 1);
  wholeAtLeast('epochs', 1);
  wholeAtLeast('decoderWidth', 1);
  wholeAtLeast('warmupEpochs', 0);
  wholeAtLeast('checkpointEvery', 0);
  wholeAtLeast('previewEvery', 0);
  wholeAtLeast('stemWidth', 1);
  if (!Number.isSafeInteger(resolved.seed)) throw new UsageError(`${where('seed')} is ${resolved.seed}, expected a whole number`);
  if (!(resolved.maskRatio > 0 && resolved.maskRatio < 1)) {
    throw new UsageError(`${where('maskRatio')} is ${resolved.maskRatio}, expected a number between 0 and 1 (exclusive), e.g. 0.6`);
  }
  if (!(resolved.baseLr > 0)) throw new UsageError(`${where('baseLr')} is ${resolved.baseLr}, expected a number > 0`);
  for (const key of ['weightDecay', 'weightDecayEnd'] as const) {
    if (!(resolved[key] >= 0)) throw new UsageError(`${where(key)} is ${resolved[key]}, expected a number >= 0`);
  }
  if (resolved.warmupEpochs !== undefined && resolved.warmupEpochs >= resolved.epochs) {
    throw new UsageError(`${where('warmupEpochs')} is ${resolved.warmupEpochs}, expected fewer than the ${resolved.epochs} epochs of the run`);
  }
  if (!['lamb', 'adamw', 'sgd'].includes(resolved.optimizer)) {
    throw new UsageError(`${where('optimizer')} is '${resolved.optimizer}', expected lamb, adamw or sgd`);
  }
  for (const [key, example] of [
    ['widths', '8,16,32,64'],
    ['dims', '8,16,32,64'],
    ['depths', '1,1,1,1'],
  ] as const) {
    const list = resolved[key];
    if (list !== undefined && (list.length !== 4 || !list.every((value) => Number.isInteger(value) && value >= 1))) {
      throw new UsageError(`${where(key)} is ${list.join(',')}, expected four whole numbers >= 1 (one per stage), e.g. ${example}`);
    }
  }
  // The official recipe of the model for what no layer set (models/__init__.py and utils/arg_util.py).
  const recipe = sparkRecipe(resolved.model);
  resolved.dropPath ??= recipe.dropPathRate;
  resolved.beta2 ??= recipe.beta2;
  resolved.clip ??= recipe.clip;
  resolved.densifyNorm ??= recipe.densifyNorm;
  if (!(resolved.dropPath >= 0 && resolved.dropPath < 1))
    throw new UsageError(`${where('dropPath')} is ${resolved.dropPath}, expected a number in [0, 1), e.g. 0.1`);
  if (!(resolved.beta2 >= 0 && resolved.beta2 < 1))
    throw new UsageError(`${where('beta2')} is ${resolved.beta2}, expected a number in [0, 1), e.g. 0.999`);
  if (!(resolved.clip >= 0)) throw new UsageError(`${where('clip')} is ${resolved.clip}, expected a number >= 0 (0 turns clipping off)`);
  if (!['bn', 'ln', 'none'].includes(resolved.densifyNorm)) {
    throw new UsageError(`${where('densifyNorm')} is '${resolved.densifyNorm}', expected bn, ln or none`);
  }
  resolved.sparsePath ??= 'auto';
  if (!['auto', 'rows', 'dense'].includes(resolved.sparsePath)) {
    throw new UsageError(`${where('sparsePath')} is '${resolved.sparsePath}', expected rows, dense or auto`);
  }
  return resolved;
}

/**
 * `{ height, width }` of the config's input size: N is N x N, 'WxH' is W wide and H high (as image tools
 * write sizes). The value was checked by {@link resolveConfig}.
 */
export function inputSizeOf(config: Pick<PretrainConfig, 'inputSize'>): { height: number; width: number } {
  if (typeof config.inputSize === 'number') return { height: config.inputSize, width: config.inputSize };
  const [width, height] = config.inputSize.split('x').map(Number);
  return { height, width };
}

/** The warm-up actually used: the config's, or SparK's 40 of 1600 epochs scaled down for shorter runs. */
export function warmupEpochsOf(config: PretrainConfig): number {
  return config.warmupEpochs ?? Math.min(40, Math.floor(config.epochs / 40));
}

function oneLineOf(error: unknown): string {
  return String((error as Error)?.message ?? error).split('\n')[0];
}

/** Deepest nesting a config value may have (a list of numbers is depth 2). */
const MAX_CONFIG_DEPTH = 8;

function checkDepth(value: unknown, label: string): void {
  const visit = (item: unknown, depth: number): void => {
    if (typeof item !== 'object' || item === null) return;
    if (depth > MAX_CONFIG_DEPTH)
      throw new UsageError(`--config: ${label} nests values more than ${MAX_CONFIG_DEPTH} deep; settings are numbers, strings and lists`);
    for (const child of Object.values(item)) visit(child, depth + 1);
  };
  visit(value, 1);
}

/** A value as a message shows it: JSON, except numbers JSON cannot write (Infinity, NaN: 'null' would mislead). */
function describeValue(raw: unknown): string {
  if (typeof raw === 'number' && !Number.isFinite(raw)) return Number.isNaN(raw) ? 'NaN (not a number)' : `${raw} (too large)`;
  const text = JSON.stringify(raw, (_key, value) => (typeof value === 'number' && !Number.isFinite(value) ? String(value) : value)) ?? String(raw);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function convert(raw: unknown, kind: Kind, where: string): unknown {
  if (kind === 'size') {
    // 224, '224' or '320x192' (width x height); kept as a number when square-by-one-number, else as 'WxH'.
    const text = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim().toLowerCase() : '';
    const match = /^(\d+)(?:x(\d+))?$/.exec(text);
    const sides = match ? [Number(match[1]), Number(match[2] ?? match[1])] : [];
    if (!match || !sides.every((side) => Number.isSafeInteger(side) && side >= 1)) {
      throw new UsageError(`${where} is ${describeValue(raw)}, expected a whole number >= 1 (e.g. 224) or WIDTHxHEIGHT (e.g. 320x192)`);
    }
    return match[2] === undefined ? sides[0] : `${sides[0]}x${sides[1]}`;
  }
  if (kind === 'string') {
    if (typeof raw !== 'string' || raw === '') throw new UsageError(`${where} is ${describeValue(raw)}, expected a non-empty string`);
    return raw;
  }
  if (kind === 'ints') {
    const parts = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : [raw];
    return parts.map((part) => {
      const value = typeof part === 'number' ? part : Number(String(part).trim());
      if (!Number.isInteger(value))
        throw new UsageError(`${where} is ${describeValue(raw)}, expected whole numbers separated by commas, e.g. 8,16,32,64`);
      return value;
    });
  }
  const value = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  if (!Number.isFinite(value)) throw new UsageError(`${where} is ${describeValue(raw)}, expected a ${kind === 'int' ? 'whole number' : 'number'}`);
  return value;
}

/** The flag values parseArgs gave, as config values (absent flags left out). */
export function flagValues(values: Record<string, unknown>): Values {
  const result: Values = {};
  for (const key of CONFIG_KEYS) {
    const value = values[KEYS[key].flag];
    if (value !== undefined) result[key] = value;
  }
  return result;
}

/** `key value` lines, one per setting, for the terminal. */
export function formatConfig(config: PretrainConfig): string {
  const width = Math.max(...CONFIG_KEYS.map((key) => key.length));
  return CONFIG_KEYS.filter((key) => config[key] !== undefined)
    .map((key) => `  ${key.padEnd(width)}  ${Array.isArray(config[key]) ? (config[key] as number[]).join(',') : String(config[key])}`)
    .join('\n');
}
