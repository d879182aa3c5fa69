/**
 * SparK's Adam betas for a backbone (`utils/arg_util.py`): (0.9, 0.95) for ResNets, (0.9, 0.999) for
 * ConvNeXts. `backbone` is a model name as SparK's `--model` takes it: it contains `resnet`, or
 * `convnext` / `cnx`. Other convnets: pick betas yourself (SparK has no default for them).
 *
 * @example
 * defaultBetas('resnet50'); // [0.9, 0.95]
 * defaultBetas('convnext_small'); // [0.9, 0.999]
 */
export function defaultBetas(backbone: string): [number, number] {
  // ResNet first: arg_util.py sets `ada = ada or 0.95` before `ada = ada or 0.999`, so it wins a tie.
  if (backbone.includes('resnet')) return [0.9, 0.95];
  if (backbone.includes('convnext') || backbone.includes('cnx')) return [0.9, 0.999];
  throw new Error(
    `defaultBetas: no SparK default for backbone '${backbone}': expected a name containing 'resnet', 'convnext' or 'cnx' ` +
      '(for other convnets pass betas explicitly, e.g. [0.9, 0.999])',
  );
}
