import { describeBackends } from '@sparkmim/test-utils';
import { convnextBase, convnextLarge, convnextSmall, convnextTiny, createConvNeXt, type ConvNeXt } from './index';

describeBackends('ConvNeXt', () => {
  it('has the official parameter count at full width (ConvNeXt-T 27,818,592 without final norm and head)', () => {
    const model = convnextTiny({ seed: 0 });
    // 28,589,128 published, less the head (768 x 1000 + 1000) and the final norm (2 x 768).
    expect(model.namedParameters().reduce((sum, entry) => sum + entry.variable.size, 0)).toBe(27_818_592);
    expect(model.featureChannels).toEqual([96, 192, 384, 768]);
    expect(model.namedBuffers()).toEqual([]);
    model.dispose();
  });

  it('names every model by its depths and widths, with the official state names', async () => {
    const summary: Record<string, unknown> = {};
    for (const factory of [convnextTiny, convnextSmall, convnextBase, convnextLarge]) {
      const model: ConvNeXt = factory({ dims: [4, 4, 4, 4] });
      summary[model.name] = model.stages.items.map((stage) => stage.length);
      model.dispose();
    }
    expect(summary).toEqual({
      convnext_tiny: [3, 3, 9, 3],
      convnext_small: [3, 3, 27, 3],
      convnext_base: [3, 3, 27, 3],
      convnext_large: [3, 3, 27, 3],
    });

    const model = createConvNeXt({ depths: [1, 1, 1, 1], dims: [4, 8, 12, 16], seed: 0 });
    const names = model.stateEntries().map((entry) => entry.name);
    expect(names.slice(0, 8)).toEqual([
      'downsample_layers.0.0.weight',
      'downsample_layers.0.0.bias',
      'downsample_layers.0.1.weight',
      'downsample_layers.0.1.bias',
      'downsample_layers.1.0.weight',
      'downsample_layers.1.0.bias',
      'downsample_layers.1.1.weight',
      'downsample_layers.1.1.bias',
    ]);
    // A block's own parameter (gamma) comes before its children's, as in PyTorch's state_dict().
    expect(names.slice(16, 25)).toEqual([
      'stages.0.0.gamma',
      'stages.0.0.dwconv.weight',
      'stages.0.0.dwconv.bias',
      'stages.0.0.norm.weight',
      'stages.0.0.norm.bias',
      'stages.0.0.pwconv1.weight',
      'stages.0.0.pwconv1.bias',
      'stages.0.0.pwconv2.weight',
      'stages.0.0.pwconv2.bias',
    ]);
    // Layer scale starts at 1e-6 (official default); biases at 0.
    const block = model.stages.items[0].items[0];
    expect(Array.from(await block.gamma!.data())).toEqual(Array(4).fill(Math.fround(1e-6)));
    expect(Array.from(await block.pwconv1.bias!.data())).toEqual(Array(16).fill(0));
    model.dispose();

    const withoutScale = createConvNeXt({ depths: [1, 1, 1, 1], dims: [4, 8, 12, 16], layerScaleInit: 0 });
    expect(withoutScale.stateEntries().some((entry) => entry.name.endsWith('gamma'))).toBe(false);
    withoutScale.dispose();
  });
});
