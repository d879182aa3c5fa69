/**
 * A seeded stream of uniform numbers in [0, 1) whose position can be saved and restored, so a resumed run
 * draws the same masks as one that never stopped. The generator is mulberry32 (the same as
 * `seededRandom` of @sparkmim/masking: one seed gives the same numbers from both); its whole state is one
 * 32-bit integer, stored in checkpoints.
 *
 * @example
 * const random = new TrainingRandom(7);
 * const mask = randomPatchMask(8, [7, 7], 0.6, { random: random.next });
 * const saved = random.state; // later: random.state = saved
 */
export class TrainingRandom {
  private current: number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new Error(`TrainingRandom: seed must be an integer, got ${seed}`);
    this.current = seed >>> 0;
  }

  /** The next uniform number in [0, 1) (a bound function: pass it around as `random`). */
  readonly next = (): number => {
    this.current = (this.current + 0x6d2b79f5) >>> 0;
    let mixed = this.current;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };

  /** The generator's position: an integer in [0, 2^32). */
  get state(): number {
    return this.current;
  }

  set state(value: number) {
    if (!(Number.isInteger(value) && value >= 0 && value < 2 ** 32)) {
      throw new Error(`TrainingRandom: state must be an integer in [0, 2^32), got ${value}`);
    }
    this.current = value;
  }
}

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
