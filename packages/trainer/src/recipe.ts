import type { DensifyNormKind } from '@sparkmim/decoder';

/**
 * The pre-training settings the official SparK code picks per model (`pretrain/models/__init__.py`'s
 * `pretrain_default_model_kwargs` and `utils/arg_util.py`), so that a run reproduces the official recipe
 * unless told otherwise.
 */
export interface SparkRecipe {
  /**
   * Stochastic depth of the encoder (timm's `drop_path_rate`): the rate of the last block, growing linearly
   * from 0 at the first.
   */
  dropPathRate: number;
  /** LAMB's / AdamW's second beta (the official `--ada`). The first beta is always 0.9. */
  beta2: number;
  /** Gradients are clipped to this global L2 norm; 0 turns clipping off (the official `--clip`, 5). */
  clip: number;
  /** The densify norm (`densify_norm`): batch norm for ResNets, layer norm for ConvNeXts. */
  densifyNorm: DensifyNormKind;
}

/**
 * `drop_path_rate` of `pretrain_default_model_kwargs` (official `models/__init__.py`); every other model
 * (resnet18, resnet34, convnext_tiny, your own) pre-trains without drop path.
 */
export const SPARK_DROP_PATH_RATES: Readonly<Record<string, number>> = {
  resnet50: 0.05,
  resnet101: 0.08,
  resnet152: 0.1,
  resnet200: 0.15,
  convnext_small: 0.2,
  convnext_base: 0.3,
  convnext_large: 0.4,
};

/** The family of a model as the official `arg_util.py` tells it from the name, or from a backbone's `kind`. */
export type RecipeFamily = 'resnet' | 'convnext' | 'custom';

/**
 * The family of a model name, by the official rule: a name containing 'resnet' is a ResNet (checked first,
 * as `arg_util.py` applies its ResNet defaults first), one containing 'convnext' or 'cnx' a ConvNeXt.
 *
 * @example
 * recipeFamily('resnet50'); // 'resnet'
 * recipeFamily('./my-convnet.js'); // 'custom'
 */
export function recipeFamily(model: string): RecipeFamily {
  if (model.includes('resnet')) return 'resnet';
  if (model.includes('convnext') || model.includes('cnx')) return 'convnext';
  return 'custom';
}

/**
 * The official pre-training settings of a model: drop path from `pretrain_default_model_kwargs` (0 where it
 * has no entry), beta2 0.95 for ResNets and 0.999 for ConvNeXts, clip 5, densify norm 'bn' for ResNets and
 * 'ln' for ConvNeXts. A custom convnet (neither family) gets drop path 0, beta2 0.999 and 'bn': the official
 * `arg_util.py` sets neither for it (it leaves `ada` at 0, an Adam without a second-moment average, and
 * `densify_norm` empty, no norm), so these are this package's choices, the Adam default and
 * {@link SparkModel}'s default norm. `family` overrides what the name says (e.g. a backbone's `kind`).
 *
 * @example
 * sparkRecipe('resnet50'); // { dropPathRate: 0.05, beta2: 0.95, clip: 5, densifyNorm: 'bn' }
 * sparkRecipe('convnext_small'); // { dropPathRate: 0.2, beta2: 0.999, clip: 5, densifyNorm: 'ln' }
 */
export function sparkRecipe(model: string, family: RecipeFamily = recipeFamily(model)): SparkRecipe {
  const dropPathRate = Object.hasOwn(SPARK_DROP_PATH_RATES, model) ? SPARK_DROP_PATH_RATES[model] : 0;
  if (family === 'resnet') return { dropPathRate, beta2: 0.95, clip: 5, densifyNorm: 'bn' };
  if (family === 'convnext') return { dropPathRate, beta2: 0.999, clip: 5, densifyNorm: 'ln' };
  return { dropPathRate, beta2: 0.999, clip: 5, densifyNorm: 'bn' };
}
