// The optimiser of a SparK run, one factory for `sparkmim pretrain` and `sparkmim train-steps`.
import { AdamW, Lamb, Sgd, paramGroupsFromVariables, type Optimizer, type SparkModel } from '@sparkmim/trainer';

export const OPTIMIZER_NAMES = ['lamb', 'adamw', 'sgd'] as const;
export type OptimizerName = (typeof OPTIMIZER_NAMES)[number];

export interface OptimizerSettings {
  /** Adam's (beta1, beta2): SparK uses (0.9, 0.95) for ResNets and (0.9, 0.999) for ConvNeXts. */
  betas: [number, number];
  /** Largest global gradient norm; 0 turns clipping off. */
  clip: number;
}

/**
 * LAMB (SparK's), AdamW or SGD (momentum 0.9, Nesterov) over SparK's parameter groups, with gradients
 * clipped to `clip`. LAMB's clip is part of its step, as in the official code; 0 makes its bound infinite.
 *
 * @example
 * const optimizer = sparkOptimizer('lamb', model, { betas: [0.9, 0.95], clip: 5 });
 */
export function sparkOptimizer(name: OptimizerName, model: SparkModel, { betas, clip }: OptimizerSettings): Optimizer {
  const groups = paramGroupsFromVariables(model.namedParameters());
  const maxGradNorm = clip > 0 ? clip : undefined;
  switch (name) {
    case 'lamb':
      return new Lamb(groups, { betas, maxGradNorm: maxGradNorm ?? Infinity });
    case 'adamw':
      return new AdamW(groups, { betas, maxGradNorm });
    case 'sgd':
      return new Sgd(groups, { momentum: 0.9, nesterov: true, maxGradNorm });
  }
}
