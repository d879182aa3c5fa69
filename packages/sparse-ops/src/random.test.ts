import * as tf from '@tensorflow/tfjs-core';
import { seededRandom } from '@sparkmim/masking';
import { describeBackends } from '@sparkmim/test-utils';
import { SeededRandom, constant, uniformFanIn } from './random';

// mulberry32 written out in BigInt arithmetic, independent of the Math.imul form under test.
function mulberry32Reference(seed: number): () => number {
  const mask = (1n << 32n) - 1n;
  const mul = (a: bigint, b: bigint): bigint => (a * b) & mask;
  let state = BigInt(seed >>> 0);
  return () => {
    state = (state + 0x6d2b79f5n) & mask;
    let mixed = state;
    mixed = mul(mixed ^ (mixed >> 15n), mixed | 1n);
    mixed = (mixed ^ ((mixed + mul(mixed ^ (mixed >> 7n), mixed | 61n)) & mask)) & mask;
    return Number((mixed ^ (mixed >> 14n)) & mask) / 4294967296;
  };
}

describe('SeededRandom', () => {
  it('draws mulberry32: the same numbers as a BigInt reference, for several seeds', () => {
    for (const seed of [0, 1, 42, 2 ** 31 + 5, 123456789]) {
      const random = new SeededRandom(seed);
      const reference = mulberry32Reference(seed);
      for (let i = 0; i < 200; i++) expect(random.next()).toBe(reference());
    }
  });

  it("gives the same uniform numbers as masking's twin, seededRandom", () => {
    const random = new SeededRandom(7);
    const twin = seededRandom(7);
    for (let i = 0; i < 100; i++) expect(random.next()).toBe(twin());
  });

  it('saves and restores its position, and a restored generator repeats the same draws', () => {
    const random = new SeededRandom(3);
    for (let i = 0; i < 10; i++) random.next();
    const saved = random.state;
    const ahead = [random.next(), random.next(), random.standardNormal(), random.next()];
    random.state = saved;
    expect([random.next(), random.next(), random.standardNormal(), random.next()]).toEqual(ahead);
  });

  it('rejects bad seeds and states, and an unseeded generator has no state', () => {
    expect(() => new SeededRandom(0.5)).toThrow('SeededRandom: seed must be an integer, got 0.5');
    expect(() => {
      new SeededRandom(1).state = 2 ** 32;
    }).toThrow('SeededRandom: state must be an integer in [0, 2^32), got 4294967296');
    expect(() => new SeededRandom().state).toThrow('an unseeded generator (Math.random) has no state to save');
  });

  it('draws standard normals with mean 0 and variance 1', () => {
    const random = new SeededRandom(11);
    const count = 20000;
    let sum = 0;
    let sumOfSquares = 0;
    for (let i = 0; i < count; i++) {
      const value = random.standardNormal();
      sum += value;
      sumOfSquares += value * value;
    }
    const mean = sum / count;
    // 5 standard errors: a correct generator fails this about once in two million runs.
    expect(Math.abs(mean)).toBeLessThan(5 / Math.sqrt(count));
    expect(Math.abs(sumOfSquares / count - mean * mean - 1)).toBeLessThan(5 * Math.sqrt(2 / count));
  });
});

describeBackends('SeededRandom initialisers', () => {
  it('truncatedNormal keeps every value inside its absolute bounds and has the asked spread', async () => {
    const drawn = new SeededRandom(5).truncatedNormal(1, -0.5, 0.5)([4000]);
    const values = Array.from(await drawn.data());
    drawn.dispose();
    expect(Math.max(...values)).toBeLessThanOrEqual(0.5);
    expect(Math.min(...values)).toBeGreaterThanOrEqual(-0.5);
    // The variance of N(0, 1) cut at ±0.5 is 1 - 2·0.5·φ(0.5)/(2Φ(0.5) - 1) ≈ 0.0796.
    const variance = values.reduce((sum, value) => sum + value * value, 0) / values.length;
    expect(variance).toBeCloseTo(0.0796, 2);
  });

  it('normal, uniform, uniformFanIn and constant give the asked distributions and shapes', async () => {
    const [normal, uniform, fanIn, filled] = tf.tidy(() => [
      new SeededRandom(1).normal(0.02)([3, 3, 8, 16]),
      new SeededRandom(2).uniform(-3, -1)([1000]),
      uniformFanIn(16, 9)([500]),
      constant(1e-6)([2, 5]),
    ]);
    expect(normal!.shape).toEqual([3, 3, 8, 16]);
    const normalValues = Array.from(await normal!.data());
    const std = Math.sqrt(normalValues.reduce((sum, value) => sum + value * value, 0) / normalValues.length);
    expect(std).toBeCloseTo(0.02, 2);
    const uniformValues = Array.from(await uniform!.data());
    expect(Math.min(...uniformValues)).toBeGreaterThanOrEqual(-3);
    expect(Math.max(...uniformValues)).toBeLessThan(-1);
    const fanInValues = Array.from(await fanIn!.data());
    expect(Math.max(...fanInValues.map(Math.abs))).toBeLessThanOrEqual(0.25);
    expect(Array.from(await filled!.data())).toEqual(new Array(10).fill(Math.fround(1e-6)));
    tf.dispose([normal!, uniform!, fanIn!, filled!]);
  });

  it('the same seed gives the same initial weights', async () => {
    const [first, second] = tf.tidy(() => [new SeededRandom(4).truncatedNormal(0.02)([64]), new SeededRandom(4).truncatedNormal(0.02)([64])]);
    expect(Array.from(await first!.data())).toEqual(Array.from(await second!.data()));
    tf.dispose([first!, second!]);
  });
});
