/** What one run seed is split into (see {@link deriveSeeds}). */
export interface RunSeeds {
  /** Initial weights of the model. */
  init: number;
  /** The patch masks drawn each step. */
  mask: number;
  /** Shuffling and augmentation of the data source. */
  data: number;
}

// splitmix32's finaliser: nearby inputs give unrelated outputs, so seeds 0, 1, 2 ... give unrelated streams.
function mix(value: number): number {
  let z = value >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * Splits one run seed into independent seeds for initialisation, masks and data, so that a single
 * `--seed` reproduces a whole run while changing, say, the data order leaves the masks alone.
 *
 * @example
 * const seeds = deriveSeeds(0); // { init: ..., mask: ..., data: ... }
 * const model = await SparkModel.create({ backbone: 'resnet50', seed: seeds.init });
 */
export function deriveSeeds(seed: number): RunSeeds {
  if (!Number.isSafeInteger(seed)) throw new Error(`deriveSeeds: seed must be an integer, got ${seed}`);
  const base = mix(seed >>> 0) ^ mix(Math.floor(seed / 2 ** 32) >>> 0);
  return { init: mix(base ^ 0x1), mask: mix(base ^ 0x2), data: mix(base ^ 0x3) };
}
