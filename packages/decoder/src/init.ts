import * as tf from '@tensorflow/tfjs-core';
import type { Initializer } from '@sparkmim/sparse-ops';

/**
 * The random numbers behind the official initialisations, from one seeded stream (mulberry32) so that a
 * seed reproduces a whole decoder, or from `Math.random` without a seed. Draws happen in JS rather than
 * with `tf.randomNormal`: tfjs's truncated normal always cuts at two standard deviations, while SparK's
 * `trunc_normal_` cuts at absolute bounds (±2 for the convs, ±0.02 for the mask tokens).
 *
 * @example
 * const random = new InitRandom(0);
 * const filter = random.truncatedNormal(0.02)([3, 3, 64, 64]); // timm trunc_normal_(std=.02)
 */
export class InitRandom {
  private readonly next: () => number;

  constructor(seed?: number) {
    if (seed === undefined) {
      this.next = Math.random;
      return;
    }
    if (!Number.isSafeInteger(seed)) throw new Error(`InitRandom: seed must be an integer, got ${seed}`);
    let state = seed >>> 0;
    this.next = () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let mixed = state;
      mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
      mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
      return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** N(0, std²) redrawn until inside [low, high] (timm's `trunc_normal_` bounds are absolute values). */
  truncatedNormal(std: number, low = -2, high = 2): Initializer {
    if (!(low < 0 && high > 0)) throw new Error(`truncatedNormal: bounds [${low}, ${high}] must contain 0`);
    return (shape) => {
      const values = new Float32Array(sizeOf(shape));
      for (let i = 0; i < values.length; i++) {
        let value: number;
        do value = this.standardNormal() * std;
        while (value < low || value > high);
        values[i] = value;
      }
      return tf.tensor(values, shape, 'float32');
    };
  }

  /** N(0, std²), untruncated. */
  normal(std: number): Initializer {
    return this.truncatedNormal(std, -Infinity, Infinity);
  }

  /** U(low, high). */
  uniform(low: number, high: number): Initializer {
    return (shape) => {
      const values = new Float32Array(sizeOf(shape));
      for (let i = 0; i < values.length; i++) values[i] = low + (high - low) * this.next();
      return tf.tensor(values, shape, 'float32');
    };
  }

  /** Box–Muller; 1 - u keeps the logarithm finite. */
  private standardNormal(): number {
    const radius = Math.sqrt(-2 * Math.log(1 - this.next()));
    return radius * Math.cos(2 * Math.PI * this.next());
  }
}

/** Constant-valued initializer (biases, norm weights). */
export function constant(value: number): Initializer {
  return (shape) => tf.fill(shape, value, 'float32');
}

function sizeOf(shape: number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}
