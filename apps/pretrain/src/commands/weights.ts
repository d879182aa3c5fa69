// The one way the CLI reads weights: safetensors or any `.pth` of the official SparK release (a full
// checkpoint dict, a bare SparK state, timm ResNet or official ConvNeXt encoder weights), told apart by
// their contents. Every problem, a hostile file included, is one line and exit code 2.
import { readWeightsFile, sparkModelFromWeights, type SparkModel, type SparkModelFromWeightsOptions, type WeightsFile } from '@sparkmim/trainer';
import { UsageError } from '../errors';
import { oneLine, readBytes } from './inputs';

/**
 * Reads `--option FILE` as a weights file of any kind; `stripPrefix` keeps only the keys under it, removed.
 *
 * @example
 * const weights = await readWeightsOption('weights', 'res50_withdecoder_1kpretrained_spark_style.pth');
 */
export async function readWeightsOption(option: string, file: string, stripPrefix?: string): Promise<WeightsFile> {
  const bytes = await readBytes(option, file);
  try {
    return readWeightsFile(bytes, { source: file, stripPrefix });
  } catch (error) {
    throw new UsageError(`--${option}: ${oneLine((error as Error).message)}`);
  }
}

/**
 * A SparkModel from weights read by {@link readWeightsOption}: a full SparK state as it is, encoder-only
 * weights with a new decoder. A state that does not fit is a usage error.
 *
 * @example
 * const model = await modelFromWeightsOption('weights', weights, { maskRatio: 0.6 });
 */
export async function modelFromWeightsOption(option: string, weights: WeightsFile, options: SparkModelFromWeightsOptions = {}): Promise<SparkModel> {
  try {
    return await sparkModelFromWeights(weights, options);
  } catch (error) {
    throw new UsageError(`--${option}: ${oneLine((error as Error).message)}`);
  }
}
