import { recipeFamily, sparkRecipe, SPARK_DROP_PATH_RATES } from './recipe';

// The official table, copied from SparK (commit a63e386):
// pretrain/models/__init__.py, pretrain_default_model_kwargs:
//   'resnet50': dict(drop_path_rate=0.05), 'resnet101': dict(drop_path_rate=0.08),
//   'resnet152': dict(drop_path_rate=0.10), 'resnet200': dict(drop_path_rate=0.15),
//   'convnext_small': dict(sparse=True, drop_path_rate=0.2), 'convnext_base': dict(sparse=True, drop_path_rate=0.3),
//   'convnext_large': dict(sparse=True, drop_path_rate=0.4)
// (resnet18, resnet34 and convnext_tiny are built by timm's / convnext.py's defaults: drop_path_rate=0.)
// pretrain/utils/arg_util.py: clip = 5.; if is_resnet: ada = ada or 0.95, densify_norm = 'bn';
//   if is_convnext: ada = ada or 0.999, densify_norm = 'ln'.
const OFFICIAL: Record<string, [dropPath: number, beta2: number, clip: number, densifyNorm: string]> = {
  resnet18: [0, 0.95, 5, 'bn'],
  resnet34: [0, 0.95, 5, 'bn'],
  resnet50: [0.05, 0.95, 5, 'bn'],
  resnet101: [0.08, 0.95, 5, 'bn'],
  resnet152: [0.1, 0.95, 5, 'bn'],
  resnet200: [0.15, 0.95, 5, 'bn'],
  convnext_tiny: [0, 0.999, 5, 'ln'],
  convnext_small: [0.2, 0.999, 5, 'ln'],
  convnext_base: [0.3, 0.999, 5, 'ln'],
  convnext_large: [0.4, 0.999, 5, 'ln'],
};

describe('sparkRecipe', () => {
  it.each(Object.entries(OFFICIAL))(
    '%s: drop path, beta2, clip and densify norm of the official code',
    (model, [dropPathRate, beta2, clip, densifyNorm]) => {
      expect(sparkRecipe(model)).toEqual({ dropPathRate, beta2, clip, densifyNorm });
    },
  );

  it('has a drop-path entry exactly for the models of the official table', () => {
    expect(Object.keys(SPARK_DROP_PATH_RATES).sort()).toEqual(
      Object.keys(OFFICIAL)
        .filter((model) => OFFICIAL[model][0] > 0)
        .sort(),
    );
  });

  it('tells the family as arg_util.py does, and gives a custom convnet no drop path', () => {
    expect(recipeFamily('cnx_tiny')).toBe('convnext');
    expect(recipeFamily('./my-convnet.js')).toBe('custom');
    expect(sparkRecipe('./my-convnet.js')).toEqual({ dropPathRate: 0, beta2: 0.999, clip: 5, densifyNorm: 'bn' });
    // A custom module that declares itself a ConvNeXt gets the ConvNeXt betas and norm.
    expect(sparkRecipe('./my-convnet.js', 'convnext')).toEqual({ dropPathRate: 0, beta2: 0.999, clip: 5, densifyNorm: 'ln' });
    // 'toString' is not a model: the table is not read through the prototype.
    expect(sparkRecipe('toString').dropPathRate).toBe(0);
  });
});
