import * as tf from '@tensorflow/tfjs-core';
import type { Initializer } from './module';

// Read once: inside a vm context (jest's test environment) every global lookup such as `Math.log` goes
// through the context's interceptor, which made drawing a ResNet-50's weights 20x slower.
const { cos, imul, log, PI, sin, sqrt } = Math;

/**
 * sparkmim's one seeded generator (mulberry32: a 32-bit state, period 2^32, fast, and plenty for initial
 * weights, patch masks, drop-path coins and data order). The same seed always gives the same sequence, and
 * the position can be saved and restored (`state`), so a resumed run draws what an uninterrupted one would.
 * Without a seed it draws from `Math.random` (and has no state to save).
 *
 * Values are drawn in JS rather than with `tf.random*`: tfjs's seeded ops return the same numbers on every
 * call, so they cannot serve a stream, and its truncated normal always cuts at two standard deviations,
 * while timm's `trunc_normal_` cuts at absolute bounds.
 *
 * (`@sparkmim/masking` keeps a copy of the uniform step, `seededRandom`, because masking depends on no
 * other package of ours; one seed gives the same uniform numbers from both.)
 *
 * @example
 * const random = new SeededRandom(0);
 * const filter = random.truncatedNormal(0.02)([3, 3, 64, 64]); // timm trunc_normal_(std=.02), NHWC filter
 * const coin = random.next(); // in [0, 1)
 * const saved = random.state; // later: random.state = saved
 */
export class SeededRandom {
  /** A uniform number in [0, 1) (a bound function: pass it around as `random`). */
  readonly next: () => number;
  private current: number | undefined;
  private spare: number | undefined;

  constructor(seed?: number) {
    if (seed === undefined) {
      this.next = Math.random;
      return;
    }
    if (!Number.isSafeInteger(seed)) throw new Error(`SeededRandom: seed must be an integer, got ${seed}`);
    this.current = seed >>> 0;
    this.next = () => {
      const state = (this.current! + 0x6d2b79f5) >>> 0;
      this.current = state;
      let mixed = state;
      mixed = imul(mixed ^ (mixed >>> 15), mixed | 1);
      mixed ^= mixed + imul(mixed ^ (mixed >>> 7), mixed | 61);
      return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** The generator's position, an integer in [0, 2^32); only a seeded generator has one. */
  get state(): number {
    if (this.current === undefined) throw new Error('SeededRandom: an unseeded generator (Math.random) has no state to save');
    return this.current;
  }

  /** Moves the generator to a saved position (and forgets a cached normal, which belongs to the old one). */
  set state(value: number) {
    if (this.current === undefined) throw new Error('SeededRandom: an unseeded generator (Math.random) has no state to restore');
    if (!(Number.isInteger(value) && value >= 0 && value < 2 ** 32)) {
      throw new Error(`SeededRandom: state must be an integer in [0, 2^32), got ${value}`);
    }
    this.current = value;
    this.spare = undefined;
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
   * N(0, std²) redrawn until inside `[low, high]`: timm's `trunc_normal_(std, a=low, b=high)`, whose bounds
   * are absolute values (±2 at std 0.02 never cuts in practice; SparK's mask tokens use ±0.02).
   */
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

  /** N(0, std²), untruncated (`nn.init.normal_`; kaiming normal is this with std = gain / sqrt(fan)). */
  normal(std: number): Initializer {
    return (shape) => {
      const values = new Float32Array(sizeOf(shape));
      for (let i = 0; i < values.length; i++) values[i] = this.standardNormal() * std;
      return tf.tensor(values, shape, 'float32');
    };
  }

  /** U(low, high) (`nn.init.uniform_`). */
  uniform(low: number, high: number): Initializer {
    if (!(low <= high)) throw new Error(`uniform: low ${low} must not exceed high ${high}`);
    return (shape) => {
      const values = new Float32Array(sizeOf(shape));
      for (let i = 0; i < values.length; i++) values[i] = low + (high - low) * this.next();
      return tf.tensor(values, shape, 'float32');
    };
  }
}

/**
 * A constant initialiser (zeros for biases, ones for norm weights, 1e-6 for ConvNeXt's layer scale).
 *
 * @example
 * const bias = constant(0)([64]);
 */
export function constant(value: number): Initializer {
  return (shape) => tf.fill(shape, value, 'float32');
}

/**
 * PyTorch's default for conv and linear layers: U(-1/sqrt(fanIn), 1/sqrt(fanIn)), drawn from `random` (a
 * {@link SeededRandom}, or a seed for a fresh one; unseeded by default).
 *
 * @example
 * const conv = new SparseConv2d({ inChannels: 16, outChannels: 32, kernelSize: 3, filterInit: uniformFanIn(16 * 3 * 3, 42) });
 */
export function uniformFanIn(fanIn: number, random: SeededRandom | number = new SeededRandom()): Initializer {
  const bound = 1 / sqrt(fanIn);
  return (typeof random === 'number' ? new SeededRandom(random) : random).uniform(-bound, bound);
}

function sizeOf(shape: number[]): number {
  return shape.reduce((size, dim) => size * dim, 1);
}
