// The model and optimiser of `sparkmim pretrain`: a named backbone or the user's own from an ES module, the
// official per-model recipe (drop path, beta2, clip, densify norm; resolved in pretrain-config.ts), and
// square or rectangular input sizes.
import { access } from 'node:fs/promises';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import * as backbones from '@sparkmim/backbones';
import { backboneFromModule, type Backbone } from '@sparkmim/backbones';
import { keepCount } from '@sparkmim/masking';
import * as sparseOps from '@sparkmim/sparse-ops';
import { SparkModel, type Optimizer, type SparkModelConfig } from '@sparkmim/trainer';
import { UsageError } from '../errors';
import { oneLine } from './inputs';
import { sparkOptimizer } from './optimizer';
import { inputSizeOf, type PretrainConfig } from './pretrain-config';

/** Whether `--model` names a file (an ES module) rather than a backbone of the registry. */
export function isModulePath(model: string): boolean {
  return /^(\.{1,2}[\\/]|\/|[A-Za-z]:[\\/]|file:)/.test(model) || /\.(m?js|cjs)$/.test(model);
}

/**
 * The backbone of a module file: `export default` of a Backbone or of a function (or class) of
 * `{ tf, sparseOps, backbones, seed }`, which are this program's copies (a file of its own importing
 * tfjs would get another engine). Errors are one line naming the file.
 */
export async function loadBackboneFile(file: string, seed: number): Promise<Backbone> {
  const absolute = path.resolve(file.startsWith('file:') ? new URL(file).pathname : file);
  try {
    await access(absolute);
  } catch {
    throw new UsageError(
      `--model ${file}: no such file (a model name, e.g. resnet50, or the path of an ES module whose default export is a Backbone)`,
    );
  }
  let namespace: unknown;
  try {
    // A file URL where Node needs one (Windows drive letters); elsewhere the absolute path, which both Node's
    // ESM loader and a CommonJS test runner's transformed import() accept.
    namespace = await import(/* @vite-ignore */ process.platform === 'win32' ? pathToFileURL(absolute).href : absolute);
  } catch (error) {
    throw new UsageError(`--model ${file}: cannot load it as an ES module: ${oneLine((error as Error).message ?? String(error))}`);
  }
  try {
    return backboneFromModule(namespace, { tf, sparseOps: { ...sparseOps }, backbones: { ...backbones }, seed }, file);
  } catch (error) {
    throw new UsageError(`--model ${oneLine((error as Error).message)}`);
  }
}

/** `--input-size` as the message shows it: N, or WxH. */
function sizeLabel(config: PretrainConfig): string {
  return String(config.inputSize);
}

/** Throws unless the input size suits the model: sides multiples of its ratio, a mask that keeps and hides patches. */
function checkInputSize(config: PretrainConfig, model: SparkModel, name: string): void {
  const ratio = model.downsampleRatio;
  const { height, width } = inputSizeOf(config);
  for (const [axis, side] of typeof config.inputSize === 'number'
    ? [['', height] as const]
    : ([
        ['width', width],
        ['height', height],
      ] as const)) {
    if (side % ratio === 0) continue;
    const lower = Math.floor(side / ratio) * ratio;
    const suggestion = lower > 0 ? `${lower} or ${lower + ratio}` : `${ratio}`;
    const what = axis ? `${sizeLabel(config)}: its ${axis} ${side} is` : `${side}, which is`;
    throw new UsageError(`--input-size is ${what} not a multiple of ${name}'s downsample ratio ${ratio} (use ${suggestion})`);
  }
  // The mask must keep at least one patch and hide at least one, or there is nothing to encode or to learn.
  const [gridH, gridW] = [height / ratio, width / ratio];
  let kept: number;
  try {
    kept = keepCount(gridH, gridW, config.maskRatio);
  } catch {
    kept = 0;
  }
  if (kept === 0 || kept === gridH * gridW) {
    const larger = typeof config.inputSize === 'number' ? `${Math.max(2, gridH + 1) * ratio}` : `${(gridW + 1) * ratio}x${(gridH + 1) * ratio}`;
    throw new UsageError(
      `--input-size ${sizeLabel(config)} gives a ${gridH}x${gridW} grid of ${ratio}-pixel patches, of which --mask-ratio ${config.maskRatio} ` +
        `${kept === 0 ? 'keeps none' : 'hides none'}: use a larger --input-size (e.g. ${larger}) or another --mask-ratio`,
    );
  }
}

/**
 * The SparK model of a run: the named backbone (with --depths, --widths, --dims, --stem-width) or the module
 * file's, with the resolved drop path and densify norm; the input size checked against it.
 */
export async function buildModel(config: PretrainConfig, seed: number): Promise<SparkModel> {
  const fromFile = isModulePath(config.model);
  const backboneOptions: Record<string, unknown> = {};
  if (config.stemWidth !== undefined) backboneOptions.stemWidth = config.stemWidth;
  if (config.widths !== undefined) backboneOptions.channels = config.widths;
  if (config.dims !== undefined) backboneOptions.dims = config.dims;
  if (config.depths !== undefined) backboneOptions.depths = config.depths;
  const densifyNorm = config.densifyNorm as SparkModelConfig['densifyNorm'];
  const sparsePath = (config.sparsePath ?? 'auto') as SparkModelConfig['sparsePath'];
  let model: SparkModel;
  if (fromFile) {
    const given = ['stemWidth', 'widths', 'dims', 'depths'].filter((key) => config[key as keyof PretrainConfig] !== undefined);
    if (given.length)
      throw new UsageError(`--model ${config.model}: ${given.join(', ')} apply to the named models only (the module builds its own backbone)`);
    if (config.dropPath) {
      throw new UsageError(
        `--model ${config.model}: --drop-path applies to the named models only (a module's backbone does its own stochastic depth)`,
      );
    }
    const backbone = await loadBackboneFile(config.model, seed);
    try {
      model = new SparkModel({ backbone, decoderWidth: config.decoderWidth, maskRatio: config.maskRatio, densifyNorm, sparsePath, seed });
    } catch (error) {
      backbone.dispose();
      throw new UsageError(`--model ${config.model}: ${oneLine((error as Error).message)}`);
    }
  } else {
    try {
      model = SparkModel.create(config.model, {
        backbone: { ...backboneOptions, dropPathRate: config.dropPath ?? 0 },
        decoderWidth: config.decoderWidth,
        maskRatio: config.maskRatio,
        densifyNorm,
        sparsePath,
        seed,
      });
    } catch (error) {
      const message = oneLine((error as Error).message).replace(/^(SparkModel\.create|createBackbone): /, '');
      if (message.startsWith('unknown model')) throw new UsageError(`--model: ${message} (or the path of an ES module, e.g. ./my-convnet.js)`);
      throw new UsageError(`--model ${config.model}: cannot build it: ${message.replace('option(s) channels', 'option(s) widths')}`);
    }
  }
  try {
    checkInputSize(config, model, fromFile ? path.basename(config.model) : config.model);
  } catch (error) {
    model.dispose();
    throw error;
  }
  return model;
}

/**
 * The optimiser of a run: LAMB (SparK's), AdamW or SGD over SparK's parameter groups, betas (0.9, beta2),
 * gradients clipped to `clip` (0: not clipped; LAMB clips inside its step, as the official one).
 */
export function buildOptimizer(config: PretrainConfig, model: SparkModel): Optimizer {
  return sparkOptimizer(config.optimizer, model, { betas: [0.9, config.beta2 ?? 0.999], clip: config.clip ?? 5 });
}
