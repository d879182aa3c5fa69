import { augmentationRandom, batchesPerEpoch, epochPermutation, hashSeed, indexAt, planEpoch } from './source';

describe('batchesPerEpoch', () => {
  it('rounds up by default (the last batch is filled) and down with dropLast', () => {
    expect(batchesPerEpoch(1000, { batchSize: 64 })).toBe(16);
    expect(batchesPerEpoch(1000, { batchSize: 64, dropLast: true })).toBe(15);
    expect(batchesPerEpoch(1024, { batchSize: 64 })).toBe(16);
    expect(batchesPerEpoch(1024, { batchSize: 64, dropLast: true })).toBe(16);
    expect(batchesPerEpoch(3, { batchSize: 8 })).toBe(1);
  });

  it('says what it expected for bad sizes', () => {
    expect(() => batchesPerEpoch(10, { batchSize: 0 })).toThrow('batchesPerEpoch: batchSize is 0, expected a whole number >= 1');
    expect(() => batchesPerEpoch(-1, { batchSize: 2 })).toThrow('batchesPerEpoch: size is -1, expected a whole number >= 0');
  });
});

describe('epochPermutation', () => {
  it('is a permutation, the same for a (seed, epoch) and different across epochs and seeds', () => {
    const order = epochPermutation(100, 7, 3);
    expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(epochPermutation(100, 7, 3)).toEqual(order);
    expect(epochPermutation(100, 7, 4)).not.toEqual(order);
    expect(epochPermutation(100, 8, 3)).not.toEqual(order);
  });

  it('puts every element in every place about equally often', () => {
    // 4 elements, 8000 (seed, epoch) pairs: each cell of the 4 x 4 table expects 2000 (sd about 39).
    const counts = Array.from({ length: 4 }, () => [0, 0, 0, 0]);
    for (let epoch = 0; epoch < 8000; epoch++) {
      epochPermutation(4, 123, epoch).forEach((element, place) => (counts[element][place] += 1));
    }
    for (const row of counts) for (const count of row) expect(Math.abs(count - 2000)).toBeLessThan(200);
  });

  it('handles empty and single-element datasets', () => {
    expect(Array.from(epochPermutation(0, 1, 0))).toEqual([]);
    expect(Array.from(epochPermutation(1, 1, 0))).toEqual([0]);
  });
});

describe('hashSeed and augmentationRandom', () => {
  it('gives unrelated 32-bit seeds for nearby inputs, negative and large ones included', () => {
    const seeds = new Set<number>();
    for (let a = -5; a < 5; a++) for (let b = 0; b < 10; b++) seeds.add(hashSeed(a, b));
    expect(seeds.size).toBe(100);
    expect(hashSeed(2 ** 40, 1)).not.toBe(hashSeed(0, 1));
    for (const seed of seeds) expect(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32).toBe(true);
  });

  it('repeats the stream of an image and differs between images', () => {
    const first = augmentationRandom(1, 2, 3, 4);
    const again = augmentationRandom(1, 2, 3, 4);
    const other = augmentationRandom(1, 2, 3, 5);
    const values = [first(), first()];
    expect([again(), again()]).toEqual(values);
    expect(other()).not.toBe(values[0]);
  });
});

describe('planEpoch', () => {
  it('reads the order cyclically, so the last batch is filled from the start (the official filling)', () => {
    const plan = planEpoch('test', 10, 0, { batchSize: 4, seed: 5 });
    expect(plan.batchCount).toBe(3);
    // Batch 2 covers positions 8..11: order[8], order[9], then order[0], order[1].
    expect([8, 9, 10, 11].map((position) => indexAt(plan, position))).toEqual([plan.order[8], plan.order[9], plan.order[0], plan.order[1]]);
  });

  it('says what it expected for bad arguments', () => {
    expect(() => planEpoch('source.epochBatches', 10, -1, { batchSize: 2 })).toThrow(
      'source.epochBatches: epoch is -1, expected a whole number >= 0',
    );
    expect(() => planEpoch('source.epochBatches', 10, 0, { batchSize: 2.5 })).toThrow(
      'source.epochBatches: batchSize is 2.5, expected a whole number >= 1',
    );
    expect(() => planEpoch('source.epochBatches', 10, 0, { batchSize: 2, seed: 0.5 })).toThrow(
      'source.epochBatches: seed is 0.5, expected an integer',
    );
    expect(() => planEpoch('source.epochBatches', 10, 0, { batchSize: 16, dropLast: true })).toThrow(
      'source.epochBatches: batchSize 16 is larger than the 10 images and dropLast is set, so an epoch has no batches',
    );
    expect(() => planEpoch('source.epochBatches', 10, 0, { batchSize: 4, startBatch: 4 })).toThrow(
      'source.epochBatches: startBatch is 4, expected a whole number in [0, 3]',
    );
  });
});
