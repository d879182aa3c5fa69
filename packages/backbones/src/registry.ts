import type { StateShapes } from '@sparkmim/sparse-ops';
import { depthsOption, type Backbone } from './backbone';
import { CONVNEXT_VARIANTS, ConvNeXt, type ConvNeXtConfig, type ConvNeXtName, type ConvNeXtOptions } from './convnext';
import { RESNET_VARIANTS, ResNet, type ResNetConfig, type ResNetName, type ResNetOptions } from './resnet';

/** A backbone described by data: which family, and that family's config. */
export type BackboneConfig = ({ kind: 'resnet' } & ResNetConfig) | ({ kind: 'convnext' } & ConvNeXtConfig);

/** The official model names (`--model` of SparK's pre-training script). */
export type BackboneName = ResNetName | ConvNeXtName;

/** Every name {@link createBackbone} accepts. */
export const BACKBONE_NAMES: readonly BackboneName[] = [
  ...(Object.keys(RESNET_VARIANTS) as ResNetName[]),
  ...(Object.keys(CONVNEXT_VARIANTS) as ConvNeXtName[]),
];

/** Options of {@link createBackbone}: those of the ResNet or of the ConvNeXt factories. */
export type BackboneOptions = ResNetOptions | ConvNeXtOptions;

const RESNET_ONLY_OPTIONS = ['stemWidth', 'channels', 'zeroInitLast'] as const;
const CONVNEXT_ONLY_OPTIONS = ['dims', 'layerScaleInit'] as const;

/**
 * The config behind an official model name, with options applied (no weights are made).
 *
 * @example
 * namedBackboneConfig('resnet50'); // { kind: 'resnet', name: 'resnet50', depths: [3, 4, 6, 3], block: 'bottleneck' }
 * namedBackboneConfig('resnet18', { depths: [1, 1, 1, 1] }); // a smaller ResNet-18: one basic block per stage
 */
export function namedBackboneConfig(name: string, options: BackboneOptions = {}): BackboneConfig {
  if (name in RESNET_VARIANTS) {
    rejectOptions(name, options, CONVNEXT_ONLY_OPTIONS);
    const variant = RESNET_VARIANTS[name as ResNetName];
    const { depths, ...rest } = options as ResNetOptions;
    return { kind: 'resnet', name, ...rest, depths: depthsOption('createBackbone', name, depths, variant.depths), block: variant.block };
  }
  if (name in CONVNEXT_VARIANTS) {
    rejectOptions(name, options, RESNET_ONLY_OPTIONS);
    const variant = CONVNEXT_VARIANTS[name as ConvNeXtName];
    const { depths, dims, ...rest } = options as ConvNeXtOptions;
    return { kind: 'convnext', name, ...rest, depths: depthsOption('createBackbone', name, depths, variant.depths), dims: dims ?? variant.dims };
  }
  throw new Error(`createBackbone: unknown model '${name}': expected one of ${BACKBONE_NAMES.join(', ')}`);
}

/**
 * Builds a backbone by its official name: 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152',
 * 'resnet200', 'convnext_tiny', 'convnext_small', 'convnext_base', 'convnext_large'.
 *
 * @example
 * const backbone = createBackbone('convnext_small', { dropPathRate: 0.2, seed: 0 });
 * const small = createBackbone('resnet18', { depths: [1, 1, 1, 1], channels: [16, 32, 64, 128] });
 */
export function createBackbone(name: string, options: BackboneOptions = {}): Backbone {
  return createBackboneFromConfig(namedBackboneConfig(name, options));
}

/**
 * Builds a backbone from a {@link BackboneConfig}, e.g. one read off a checkpoint by
 * {@link backboneConfigFromState}.
 *
 * @example
 * const backbone = createBackboneFromConfig({ kind: 'convnext', depths: [1, 1, 2, 1], dims: [8, 16, 32, 64] });
 */
export function createBackboneFromConfig(config: BackboneConfig): ResNet | ConvNeXt {
  const { kind, ...rest } = config;
  if (kind === 'resnet') return new ResNet(rest as ResNetConfig);
  if (kind === 'convnext') return new ConvNeXt(rest as ConvNeXtConfig);
  throw new Error(`createBackboneFromConfig: unknown kind '${kind as string}': expected 'resnet' or 'convnext'`);
}

/**
 * Reads the architecture off a PyTorch state dict (official names and shapes; only keys under `prefix`
 * count): a timm ResNet (block type from the presence of `conv3`, depth per stage from the largest block
 * index under `layerN`, stem width and stage widths from the conv shapes) or an official ConvNeXt (depths
 * from `stages.i.j`, dims from the stem conv and the depthwise convs, layer scale from `gamma`). What a
 * state dict does not hold (drop-path rate, seed) is left to the caller.
 *
 * @example
 * const config = backboneConfigFromState(checkpoint, { prefix: 'sparse_encoder.sp_cnn.' });
 * const backbone = createBackboneFromConfig({ ...config, dropPathRate: 0.1 });
 * loadTorchState(backbone, checkpoint, { prefix: 'sparse_encoder.sp_cnn.' });
 */
export function backboneConfigFromState(state: StateShapes, { prefix = '' }: { prefix?: string } = {}): BackboneConfig {
  const shapes = new Map<string, readonly number[]>();
  for (const [key, { shape }] of state) {
    if (key.startsWith(prefix)) shapes.set(key.slice(prefix.length), shape);
  }
  if (shapes.has('conv1.weight') || shapes.has('layer1.0.conv1.weight')) return resnetConfigFromShapes(shapes, prefix);
  if (shapes.has('downsample_layers.0.0.weight') || shapes.has('stages.0.0.dwconv.weight')) {
    return convnextConfigFromShapes(shapes, prefix);
  }
  const sample = [...shapes.keys()].slice(0, 5);
  throw new Error(
    `backboneConfigFromState: no timm ResNet keys (conv1.weight, layer1.0.conv1.weight) and no official ConvNeXt keys ` +
      `(downsample_layers.0.0.weight, stages.0.0.dwconv.weight) under prefix '${prefix}'; found ${shapes.size} keys` +
      (sample.length ? ` such as ${sample.join(', ')}` : ''),
  );
}

function resnetConfigFromShapes(shapes: Map<string, readonly number[]>, prefix: string): BackboneConfig {
  const caller = 'backboneConfigFromState';
  const shapeOf = (key: string): readonly number[] => {
    const shape = shapes.get(key);
    if (!shape) throw new Error(`${caller}: ResNet state under '${prefix}' lacks '${key}'`);
    return shape;
  };
  const stem = shapeOf('conv1.weight');
  if (stem.length !== 4 || stem[1] !== 3 || stem[2] !== 7 || stem[3] !== 7) {
    throw new Error(`${caller}: expected timm's 7x7 stem conv1.weight [stemWidth, 3, 7, 7], got [${stem.join(', ')}] (deep stems are not supported)`);
  }
  const depths = [1, 2, 3, 4].map((stage) => blockCount(shapes, new RegExp(`^layer${stage}\\.(\\d+)\\.`), `layer${stage}`, prefix));
  const block = shapes.has('layer1.0.conv3.weight') ? 'bottleneck' : 'basic';
  const channels = [1, 2, 3, 4].map((stage) => shapeOf(`layer${stage}.0.conv1.weight`)[0]);
  if (block === 'bottleneck') {
    channels.forEach((planes, i) => {
      const out = shapeOf(`layer${i + 1}.0.conv3.weight`)[0];
      if (out !== 4 * planes) {
        throw new Error(`${caller}: layer${i + 1}.0.conv3.weight has ${out} output channels, expected 4 x ${planes} (timm's bottleneck expansion)`);
      }
    });
  }
  return { kind: 'resnet', depths, block, stemWidth: stem[0], channels };
}

function convnextConfigFromShapes(shapes: Map<string, readonly number[]>, prefix: string): BackboneConfig {
  const caller = 'backboneConfigFromState';
  const shapeOf = (key: string): readonly number[] => {
    const shape = shapes.get(key);
    if (!shape) throw new Error(`${caller}: ConvNeXt state under '${prefix}' lacks '${key}'`);
    return shape;
  };
  const depths = [0, 1, 2, 3].map((stage) => blockCount(shapes, new RegExp(`^stages\\.${stage}\\.(\\d+)\\.`), `stages.${stage}`, prefix));
  const dims = [0, 1, 2, 3].map((stage) => {
    const dwconv = shapeOf(`stages.${stage}.0.dwconv.weight`);
    if (dwconv.length !== 4 || dwconv[1] !== 1 || dwconv[2] !== 7 || dwconv[3] !== 7) {
      throw new Error(`${caller}: expected stages.${stage}.0.dwconv.weight [dim, 1, 7, 7], got [${dwconv.join(', ')}]`);
    }
    return dwconv[0];
  });
  const stem = shapeOf('downsample_layers.0.0.weight');
  if (stem[0] !== dims[0]) {
    throw new Error(`${caller}: downsample_layers.0.0.weight [${stem.join(', ')}] does not match stage 0 width ${dims[0]}`);
  }
  // Layer scale's initial value is not in the state; any positive value builds the `gamma` parameters.
  const layerScaleInit = shapes.has('stages.0.0.gamma') ? 1e-6 : 0;
  return { kind: 'convnext', depths, dims, layerScaleInit };
}

/** 1 + the largest block index matched by `pattern`; throws when the stage is empty. */
function blockCount(shapes: Map<string, readonly number[]>, pattern: RegExp, stage: string, prefix: string): number {
  let largest = -1;
  for (const key of shapes.keys()) {
    const match = pattern.exec(key);
    if (match) largest = Math.max(largest, Number(match[1]));
  }
  if (largest < 0) throw new Error(`backboneConfigFromState: no blocks under '${prefix}${stage}.'`);
  return largest + 1;
}

function rejectOptions(name: string, options: object, invalid: readonly string[]): void {
  const given = invalid.filter((key) => key in options);
  if (given.length) throw new Error(`createBackbone: option(s) ${given.join(', ')} do not apply to '${name}'`);
}
