import { loadTorchState, torchShapeOf, type Module, type TorchTensorData } from '@sparkmim/sparse-ops';
import { describeBackends, goldenFileNames, loadGolden } from '@sparkmim/test-utils';
import {
  BACKBONE_NAMES,
  backboneConfigFromState,
  createBackbone,
  createBackboneFromConfig,
  convnextTiny,
  namedBackboneConfig,
  resnet18,
  type BackboneConfig,
} from './index';

const ENCODER_PREFIX = 'sparse_encoder.sp_cnn.';

/** A module's state as PyTorch names and shapes (what a checkpoint header holds), without reading data. */
function stateShapes(module: Module, prefix = ''): Map<string, { shape: number[] }> {
  return new Map(module.stateEntries(prefix).map((entry) => [entry.name, { shape: torchShapeOf(entry.variable.shape, entry.layout) }]));
}

/** The file's `param.*` entries under their official names. */
function goldenState(file: string): Map<string, TorchTensorData> {
  const golden = loadGolden(file);
  const state = new Map<string, TorchTensorData>();
  for (const key of golden.keys('param.')) state.set(key.slice('param.'.length), golden.get(key));
  return state;
}

describe('namedBackboneConfig', () => {
  it('knows the official names', () => {
    expect(BACKBONE_NAMES).toEqual([
      'resnet18',
      'resnet34',
      'resnet50',
      'resnet101',
      'resnet152',
      'resnet200',
      'convnext_tiny',
      'convnext_small',
      'convnext_base',
      'convnext_large',
    ]);
  });

  it('has timm depths and block types and the official ConvNeXt depths and widths', () => {
    const summary = BACKBONE_NAMES.map((name) => {
      const config = namedBackboneConfig(name);
      return config.kind === 'resnet' ? [name, config.block, config.depths] : [name, config.depths, config.dims];
    });
    expect(summary).toEqual([
      ['resnet18', 'basic', [2, 2, 2, 2]],
      ['resnet34', 'basic', [3, 4, 6, 3]],
      ['resnet50', 'bottleneck', [3, 4, 6, 3]],
      ['resnet101', 'bottleneck', [3, 4, 23, 3]],
      ['resnet152', 'bottleneck', [3, 8, 36, 3]],
      ['resnet200', 'bottleneck', [3, 24, 36, 3]],
      ['convnext_tiny', [3, 3, 9, 3], [96, 192, 384, 768]],
      ['convnext_small', [3, 3, 27, 3], [96, 192, 384, 768]],
      ['convnext_base', [3, 3, 27, 3], [128, 256, 512, 1024]],
      ['convnext_large', [3, 3, 27, 3], [192, 384, 768, 1536]],
    ]);
  });

  it('applies options and keeps the depths of the name', () => {
    expect(namedBackboneConfig('resnet50', { stemWidth: 8, channels: [4, 8, 16, 32], dropPathRate: 0.1, seed: 3 })).toEqual({
      kind: 'resnet',
      name: 'resnet50',
      depths: [3, 4, 6, 3],
      block: 'bottleneck',
      stemWidth: 8,
      channels: [4, 8, 16, 32],
      dropPathRate: 0.1,
      seed: 3,
    });
    expect(namedBackboneConfig('convnext_base', { dims: [8, 16, 32, 64] })).toMatchObject({ depths: [3, 3, 27, 3], dims: [8, 16, 32, 64] });
  });

  it('takes other depths: a smaller model of the same family', () => {
    expect(namedBackboneConfig('resnet18', { depths: [1, 1, 1, 1] })).toMatchObject({ kind: 'resnet', depths: [1, 1, 1, 1], block: 'basic' });
    expect(namedBackboneConfig('convnext_tiny', { depths: [1, 1, 2, 1] })).toMatchObject({ depths: [1, 1, 2, 1], dims: [96, 192, 384, 768] });
  });

  it("rejects depths that are not four whole numbers >= 1, naming the variant's", () => {
    expect(() => createBackbone('resnet18', { depths: [1, 1, 1] })).toThrow(
      "createBackbone: depths of 'resnet18' must be four whole numbers >= 1 (blocks per stage; resnet18 has [2, 2, 2, 2]), got [1, 1, 1]",
    );
    expect(() => createBackbone('convnext_small', { depths: [1, 0, 1, 1] })).toThrow(
      "createBackbone: depths of 'convnext_small' must be four whole numbers >= 1 (blocks per stage; convnext_small has [3, 3, 27, 3]), got [1, 0, 1, 1]",
    );
    expect(() => createBackbone('resnet50', { depths: 2 } as never)).toThrow(
      "depths of 'resnet50' must be four whole numbers >= 1 (blocks per stage; resnet50 has [3, 4, 6, 3]), got 2",
    );
    expect(() => convnextTiny({ depths: [1, 1, 1.5, 1] })).toThrow("convnext_tiny: depths of 'convnext_tiny' must be four whole numbers >= 1");
  });

  it('rejects an unknown name, listing the valid ones', () => {
    expect(() => createBackbone('resnet19')).toThrow(
      "createBackbone: unknown model 'resnet19': expected one of resnet18, resnet34, resnet50, resnet101, resnet152, resnet200, convnext_tiny, convnext_small, convnext_base, convnext_large",
    );
    expect(() => createBackbone('convnext-tiny')).toThrow("unknown model 'convnext-tiny'");
  });

  it('rejects options of the other family', () => {
    expect(() => createBackbone('convnext_tiny', { stemWidth: 32 } as never)).toThrow(
      "createBackbone: option(s) stemWidth do not apply to 'convnext_tiny'",
    );
    expect(() => createBackbone('resnet18', { dims: [8, 16, 32, 64] } as never)).toThrow("option(s) dims do not apply to 'resnet18'");
  });

  it('rejects malformed configs', () => {
    expect(() => createBackboneFromConfig({ kind: 'resnet', depths: [2, 2, 2], block: 'basic' })).toThrow(
      'resnet: depths must be 4 positive integers (blocks per stage), got [2, 2, 2]',
    );
    expect(() => createBackboneFromConfig({ kind: 'convnext', depths: [1, 1, 1, 1], dims: [8, 16, 0, 64] })).toThrow(
      'convnext: dims must be 4 positive integers (channels per stage), got [8, 16, 0, 64]',
    );
    expect(() => createBackboneFromConfig({ kind: 'vit' } as never)).toThrow("unknown kind 'vit'");
  });
});

describeBackends('named backbones with other depths', () => {
  const blocks = (module: Module, pattern: RegExp) => [
    ...new Set(
      module
        .stateEntries()
        .map((entry) => pattern.exec(entry.name)?.[1])
        .filter(Boolean),
    ),
  ];

  it('build one block per stage, or any other count, under the official names', () => {
    const resnet = createBackbone('resnet18', { depths: [1, 1, 1, 1], stemWidth: 4, channels: [4, 4, 8, 8], seed: 0 });
    const resnetBlocks = blocks(resnet, /^(layer\d\.\d+)\./);
    resnet.dispose();
    expect(resnetBlocks).toEqual(['layer1.0', 'layer2.0', 'layer3.0', 'layer4.0']);
    const convnext = convnextTiny({ depths: [1, 1, 2, 1], dims: [4, 4, 8, 8], seed: 0 });
    const convnextBlocks = blocks(convnext, /^(stages\.\d\.\d+)\./);
    convnext.dispose();
    expect(convnextBlocks).toEqual(['stages.0.0', 'stages.1.0', 'stages.2.0', 'stages.2.1', 'stages.3.0']);
    // The named factories take the option as createBackbone does.
    const factory = resnet18({ depths: [1, 2, 1, 1], stemWidth: 4, channels: [4, 4, 8, 8] });
    const factoryDepths = factory.config.depths;
    factory.dispose();
    expect(factoryDepths).toEqual([1, 2, 1, 1]);
  });
});

describeBackends('backboneConfigFromState', () => {
  const roundTrips: BackboneConfig[] = [
    { kind: 'resnet', depths: [1, 2, 1, 3], block: 'basic', stemWidth: 8, channels: [8, 12, 16, 20] },
    // stem width != first stage width: layer1.0 gets a downsample even with basic blocks.
    { kind: 'resnet', depths: [2, 1, 1, 1], block: 'basic', stemWidth: 6, channels: [4, 8, 8, 16] },
    { kind: 'resnet', depths: [1, 1, 2, 1], block: 'bottleneck', stemWidth: 8, channels: [2, 4, 6, 8] },
    { kind: 'convnext', depths: [1, 2, 1, 1], dims: [4, 8, 12, 16], layerScaleInit: 1e-6 },
    { kind: 'convnext', depths: [1, 1, 1, 2], dims: [4, 4, 8, 8], layerScaleInit: 0 },
  ];
  for (const config of roundTrips) {
    const label = config.kind === 'resnet' ? `${config.block} ResNet ${config.depths}` : `ConvNeXt ${config.depths} gamma=${config.layerScaleInit}`;
    it(`reads the architecture back from the state of a ${label}`, () => {
      const model = createBackboneFromConfig({ ...config, seed: 0 });
      const derived = backboneConfigFromState(stateShapes(model, 'prefix.'), { prefix: 'prefix.' });
      model.dispose();
      expect(derived).toEqual(config);
    });
  }

  for (const file of goldenFileNames()) {
    it(`${file}: builds a model whose state fits param.${ENCODER_PREFIX}* exactly, in PyTorch's parameter order`, () => {
      const golden = loadGolden(file);
      const state = goldenState(file);
      const model = createBackboneFromConfig(backboneConfigFromState(state, { prefix: ENCODER_PREFIX }));
      expect(model.featureChannels).toEqual(golden.keys('enc.').map((key) => golden.get(key).shape[1]));
      const report = loadTorchState(model, state, { prefix: ENCODER_PREFIX });
      expect(report).toEqual({ missing: [], unexpected: [] });
      // named_parameters() order: what the optimizer's parameter groups and grad_norms are listed in.
      const officialOrder = (JSON.parse(golden.metadata.param_names) as string[]).filter((name) => name.startsWith(ENCODER_PREFIX));
      expect(model.namedParameters(ENCODER_PREFIX).map((entry) => entry.name)).toEqual(officialOrder);
      model.dispose();
    });
  }

  it('rejects weights for another architecture (strict load lists the differences)', () => {
    const files = goldenFileNames();
    const resnetFile = files.find((file) => loadGolden(file).keys(`param.${ENCODER_PREFIX}layer1.`).length > 0);
    const convnextFile = files.find((file) => loadGolden(file).keys(`param.${ENCODER_PREFIX}stages.`).length > 0);
    if (!resnetFile || !convnextFile) throw new Error('this test needs a ResNet and a ConvNeXt golden file');
    const resnetState = goldenState(resnetFile);
    const convnextState = goldenState(convnextFile);

    const resnet = createBackboneFromConfig(backboneConfigFromState(resnetState, { prefix: ENCODER_PREFIX }));
    expect(() => loadTorchState(resnet, convnextState, { prefix: ENCODER_PREFIX })).toThrow(
      /the state dict does not fit the model\n(.|\n)*missing keys:\n {2}sparse_encoder\.sp_cnn\.conv1\.weight(.|\n)*unexpected keys:\n {2}sparse_encoder\.sp_cnn\.downsample_layers\.0\.0\.bias/,
    );
    // Same family, other depth and widths: mis-shaped and missing keys.
    const deeper = backboneConfigFromState(resnetState, { prefix: ENCODER_PREFIX }) as Extract<BackboneConfig, { kind: 'resnet' }>;
    const other = createBackboneFromConfig({ ...deeper, depths: deeper.depths.map((depth) => depth + 1), stemWidth: deeper.stemWidth! + 1 });
    expect(() => loadTorchState(other, resnetState, { prefix: ENCODER_PREFIX })).toThrow(
      /mis-shaped keys:\n {2}sparse_encoder\.sp_cnn\.conv1\.weight: expected \[\d+, 3, 7, 7\], got \[\d+, 3, 7, 7\](.|\n)*missing keys:(.|\n)*layer1\.\d+\.conv1\.weight/,
    );
    const convnext = createBackboneFromConfig(backboneConfigFromState(convnextState, { prefix: ENCODER_PREFIX }));
    expect(() => loadTorchState(convnext, resnetState, { prefix: ENCODER_PREFIX })).toThrow(
      /unexpected keys:(.|\n)*sparse_encoder\.sp_cnn\.bn1\.bias/,
    );
    resnet.dispose();
    other.dispose();
    convnext.dispose();
  });

  it('says what it looked for when the state holds neither architecture', () => {
    const state = new Map([['encoder.blocks.0.attn.qkv.weight', { shape: [96, 32] }]]);
    expect(() => backboneConfigFromState(state)).toThrow(
      "backboneConfigFromState: no timm ResNet keys (conv1.weight, layer1.0.conv1.weight) and no official ConvNeXt keys (downsample_layers.0.0.weight, stages.0.0.dwconv.weight) under prefix ''; found 1 keys such as encoder.blocks.0.attn.qkv.weight",
    );
    expect(() => backboneConfigFromState(state, { prefix: 'sparse_encoder.sp_cnn.' })).toThrow("under prefix 'sparse_encoder.sp_cnn.'; found 0 keys");
    const deepStem = new Map([
      ['conv1.weight', { shape: [32, 3, 3, 3] }],
      ['layer1.0.conv1.weight', { shape: [64, 64, 3, 3] }],
    ]);
    expect(() => backboneConfigFromState(deepStem)).toThrow("expected timm's 7x7 stem conv1.weight [stemWidth, 3, 7, 7], got [32, 3, 3, 3]");
  });
});
