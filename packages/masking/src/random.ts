/**
 * A seeded source of uniform numbers in [0, 1) (mulberry32: 32-bit state, period 2^32, fast, and plenty
 * for choosing which patches to hide); the same seed always gives the same sequence.
 *
 * A twin of `SeededRandom` in @sparkmim/sparse-ops (sparkmim's one generator, with normals, initialisers
 * and a saveable state): masking depends on no other package of ours, so it keeps this uniform step. One
 * seed gives the same numbers from both; a test in sparse-ops checks the two against each other.
 *
 * @example
 * const random = seededRandom(42);
 * const first = randomPatchMask(8, [7, 7], 0.6, { random }); // successive calls continue one stream
 * const second = randomPatchMask(8, [7, 7], 0.6, { random });
 */
export function seededRandom(seed: number): () => number {
  if (!Number.isSafeInteger(seed)) {
    throw new Error(`seededRandom: seed must be an integer, got ${seed}`);
  }
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = state;
    mixed = Math.imul(mixed ^ (mixed >>> 15), mixed | 1);
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61);
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}
