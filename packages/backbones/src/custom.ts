import * as tf from '@tensorflow/tfjs-core';
import { Module } from '@sparkmim/sparse-ops';
import type { Backbone } from './backbone';

/**
 * What a backbone module's factory gets (see {@link backboneFromModule}): the caller's copies of tfjs-core
 * and of the sparkmim libraries, so that a user's file needs no imports of its own. A bundled program (the
 * `sparkmim` CLI) carries its own copy of tfjs-core; a model built from another copy would run in another
 * engine, so build every layer from these.
 */
export interface BackboneModuleContext {
  /** tfjs-core as the caller uses it. */
  tf: typeof tf;
  /** `@sparkmim/sparse-ops` (Module, SparseConv2d, SparseBatchNorm2d, ...). */
  sparseOps: Record<string, unknown>;
  /** `@sparkmim/backbones` (createTinyConvNet, checkBackboneInput, withActiveSites, ...). */
  backbones: Record<string, unknown>;
  /** The run's initialisation seed: use it for reproducible weights. */
  seed?: number;
}

const MODULE_METHODS = ['forward', 'namedParameters', 'stateEntries', 'train', 'eval', 'dispose'] as const;
const KINDS = ['resnet', 'convnext', 'custom'];

/**
 * The backbone a JavaScript module describes: its default export is either a {@link Backbone} or a
 * function (or class) that takes a {@link BackboneModuleContext} and returns one. The result is checked
 * against the contract ({@link checkBackboneContract}), so a malformed module fails here with one line naming
 * what is wrong rather than deep inside training.
 *
 * @param namespace what `await import(file)` returned
 * @param source the file, for messages
 *
 * @example
 * // my-convnet.js
 * export default ({ backbones, seed }) => backbones.createTinyConvNet({ channels: [8, 16, 32, 64], seed });
 * // the caller
 * const backbone = backboneFromModule(await import(url), { tf, sparseOps, backbones, seed: 0 }, 'my-convnet.js');
 */
export function backboneFromModule(namespace: unknown, context: BackboneModuleContext, source: string): Backbone {
  const exported = typeof namespace === 'object' && namespace !== null ? (namespace as { default?: unknown }).default : undefined;
  if (exported === undefined) {
    throw new Error(
      `${source}: no default export; expected \`export default\` of a Backbone or of a function ({ tf, sparseOps, backbones, seed }) => Backbone`,
    );
  }
  let candidate: unknown = exported;
  if (typeof exported === 'function') {
    const isClass = /^class[\s{]/.test(Function.prototype.toString.call(exported));
    try {
      candidate = isClass
        ? new (exported as new (context: BackboneModuleContext) => unknown)(context)
        : (exported as (context: BackboneModuleContext) => unknown)(context);
    } catch (error) {
      throw new Error(`${source}: its default export threw: ${(error as Error).message ?? String(error)}`);
    }
  }
  checkBackboneContract(candidate, source);
  return candidate;
}

/**
 * Throws one line naming the first way `candidate` breaks the {@link Backbone} contract: not a sparse-ops
 * `Module` (of this copy), a missing method, an unknown `kind`, a downsample ratio other than 32, not four
 * feature channels, or a forward pass (run once on a `[1, 64, 64, 3]` zero image in evaluation mode) that does
 * not return four maps at strides 4, 8, 16 and 32 with those channels. A candidate that fails is disposed.
 *
 * @example
 * checkBackboneContract(myNet, 'my-convnet.js'); // 'my-convnet.js: forward returned 3 feature maps, expected 4 ...'
 */
export function checkBackboneContract(candidate: unknown, source: string): asserts candidate is Backbone {
  const fail = (problem: string): never => {
    if (candidate instanceof Module) candidate.dispose();
    throw new Error(`${source}: ${problem}`);
  };
  if (typeof candidate !== 'object' || candidate === null)
    fail(`the default export gave ${candidate === null ? 'null' : typeof candidate}, expected a Backbone (an object)`);
  const object = candidate as Record<string, unknown>;
  for (const method of MODULE_METHODS) {
    if (typeof object[method] !== 'function')
      fail(`the backbone has no method ${method}() (a Backbone extends sparse-ops' Module and has forward(x, { active }))`);
  }
  if (!(candidate instanceof Module)) {
    fail(
      "the backbone is not a Module of this program's @sparkmim/sparse-ops: build it from the factory's context (context.sparseOps.Module, its layers) rather than from an import of your own",
    );
  }
  const backbone = candidate as Backbone;
  if (!KINDS.includes(backbone.kind)) fail(`kind is ${JSON.stringify(backbone.kind)}, expected 'resnet', 'convnext' or 'custom'`);
  if (backbone.downsampleRatio !== 32) {
    fail(`downsampleRatio is ${JSON.stringify(backbone.downsampleRatio)}, expected 32 (SparK's decoder upsamples the last map 32 times)`);
  }
  const channels = backbone.featureChannels;
  if (!Array.isArray(channels) || channels.length !== 4 || !channels.every((width) => Number.isInteger(width) && width >= 1)) {
    fail(`featureChannels is ${JSON.stringify(channels)}, expected 4 positive whole numbers (one per feature map, largest map first)`);
  }
  // One small forward pass: the maps the decoder will be fed. Evaluation mode leaves batch-norm statistics alone.
  const wasTraining = backbone.training;
  const size = 2 * backbone.downsampleRatio;
  const probe = tf.zeros([1, size, size, 3]) as tf.Tensor4D;
  let maps: unknown;
  try {
    backbone.eval();
    maps = backbone.forward(probe);
  } catch (error) {
    probe.dispose();
    fail(`forward([1, ${size}, ${size}, 3]) threw: ${(error as Error).message ?? String(error)}`);
  } finally {
    backbone.train(wasTraining);
  }
  probe.dispose();
  const tensors = Array.isArray(maps) ? maps.filter((map): map is tf.Tensor => map instanceof tf.Tensor) : [];
  const problem = mapsProblem(maps, size, channels);
  tf.dispose(tensors);
  if (problem) fail(problem);
}

function mapsProblem(maps: unknown, size: number, channels: readonly number[]): string | undefined {
  if (!Array.isArray(maps) || !maps.every((map) => map instanceof tf.Tensor)) {
    return `forward returned ${Array.isArray(maps) ? 'an array holding non-tensors' : typeof maps}, expected an array of 4 tensors`;
  }
  if (maps.length !== 4) {
    return `forward returned ${maps.length} feature map(s), expected 4 (strides 4, 8, 16, 32; largest first)`;
  }
  for (let i = 0; i < 4; i++) {
    const side = size / 2 ** (i + 2);
    const expected = [1, side, side, channels[i]];
    const shape = (maps[i] as tf.Tensor).shape;
    if (shape.length !== 4 || shape.some((dim, axis) => dim !== expected[axis])) {
      return `feature map ${i} of a [1, ${size}, ${size}, 3] input is [${shape.join(', ')}], expected [${expected.join(', ')}] (stride ${2 ** (i + 2)}, featureChannels[${i}] = ${channels[i]})`;
    }
  }
  return undefined;
}
