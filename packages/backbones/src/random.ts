import * as tf from '@tensorflow/tfjs-core';
import type { Initializer } from '@sparkmim/sparse-ops';

// Read once: inside a vm context (jest's test environment) every global lookup such as `Math.log` goes
// through the context's interceptor, which made drawing a ResNet-50's weights 20x slower.
const { abs, cos, imul, log, PI, sin, sqrt } = Math;

/**
 * One stream of random numbers for a backbone: its initial weights and its drop-path draws. Seeded
 * (mulberry32) it reproduces a whole model and its stochastic depth; without a seed it uses `Math.random`.
 * Values are drawn in JS rather than with `tf.random*`, whose seeded ops return the same numbers on every
 * call and so cannot serve a stream.
 *
 * @example
 * const random = new BackboneRandom(0);
 * const filter = random.normal(0.02)([7, 7, 3, 64]);
 * const coin = random.next(); // in [0, 1)
 */
export class BackboneRandom {
  /** A uniform number in [0, 1). */
  readonly next: () => number;
  private spare: number | undefined;

  constructor(seed?: number) {
    if (seed === undefined) {
      this.next = Math.random;
      return;
    }
    if (!Number.isSafeInteger(seed)) throw new Error(`BackboneRandom: seed must be an integer, got ${seed}`);
    let state = seed >>> 0;
    this.next = () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let mixed = state;
      mixed = imul(mixed ^ (mixed >>> 15), mixed | 1);
      mixed ^= mixed + imul(mixed ^ (mixed >>> 7), mixed | 61);
      return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** A standard normal number (Box-Muller; the second number of each pair is kept for the next call). */
  standardNormal(): number {
    if (this.spare !== undefined) {
      const value = this.spare;
      this.spare = undefined;
      return value;
    }
    let u = this.next();
    while (u === 0) u = this.next();
    const radius = sqrt(-2 * log(u));
    const angle = 2 * PI * this.next();
    this.spare = radius * sin(angle);
    return radius * cos(angle);
  }

  /**
   * N(0, std²), redrawn outside `[-bound, bound]` when a bound is given (timm's `trunc_normal_` bounds are
   * absolute values: ±2 at std 0.02 never cuts in practice, which is why ConvNeXt's init is effectively
   * a plain normal).
   */
  normal(std: number, bound = Infinity): Initializer {
    return (shape) => {
      const values = new Float32Array(sizeOf(shape));
      for (let i = 0; i < values.length; i++) {
        let value: number;
        do value = this.standardNormal() * std;
        while (abs(value) > bound);
        values[i] = value;
      }
      return tf.tensor(values, shape, 'float32');
    };
  }

  /** U(-bound, bound): PyTorch's default for conv and linear layers with bound 1/sqrt(fanIn). */
  uniform(bound: number): Initializer {
    return (shape) => {
      const values = new Float32Array(sizeOf(shape));
      for (let i = 0; i < values.length; i++) values[i] = (2 * this.next() - 1) * bound;
      return tf.tensor(values, shape, 'float32');
    };
  }
}

/** A constant initialiser (zeros for biases, 1e-6 for layer scale, ...). */
export function constant(value: number): Initializer {
  return (shape) => tf.fill(shape, value, 'float32');
}

function sizeOf(shape: number[]): number {
  return shape.reduce((size, dim) => size * dim, 1);
}
