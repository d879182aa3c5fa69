import type * as tf from '@tensorflow/tfjs-core';
import { describeBackends, goldenFileNames, loadGolden } from '@sparkmim/test-utils';
import { keepCount, patchMaskFromNoise, randomPatchMask, seededRandom } from './index';

/** The visible patch indices of each sample, as sorted lists: a slow, obvious reading of a mask. */
function visibleIndices(values: ArrayLike<number>, batch: number, patchCount: number): number[][] {
  const rows: number[][] = [];
  for (let sample = 0; sample < batch; sample++) {
    const row: number[] = [];
    for (let patch = 0; patch < patchCount; patch++) if (values[sample * patchCount + patch] === 1) row.push(patch);
    rows.push(row);
  }
  return rows;
}

async function readAndDispose(tensor: tf.Tensor): Promise<Float32Array> {
  const values = (await tensor.data()) as Float32Array;
  tensor.dispose();
  return values;
}

describe('keepCount', () => {
  // Expected values printed by Python 3: round(h * w * (1 - r)).
  it.each([
    [4, 4, 0.6, 6],
    [5, 5, 0.5, 12], // 12.5 -> 12 (half to even; Math.round would give 13)
    [3, 9, 0.5, 14], // 13.5 -> 14
    [10, 10, 0.245, 76], // 75.5 -> 76
    [10, 10, 0.255, 74], // 74.5 -> 74
    [2, 5, 0.35, 6], // 6.5 -> 6
    [1, 10, 0.95, 1], // exactly 1/2 on paper, 0.5000000000000004 in floating point, as Python computes it
    [2, 10, 0.675, 6], // 6.499999999999999
    [7, 7, 0.6, 20],
    [14, 14, 0.75, 49],
    [1, 1, 0.4, 1],
    [16, 16, 0.3, 179],
  ])('keepCount(%i, %i, %f) = %i as in Python', (gridH, gridW, maskRatio, expected) => {
    expect(keepCount(gridH, gridW, maskRatio)).toBe(expected);
  });

  it('rejects a mask ratio outside (0, 1)', () => {
    expect(() => keepCount(4, 4, 1.2)).toThrow('keepCount: maskRatio must be in (0, 1), got 1.2');
    expect(() => keepCount(4, 4, 0)).toThrow('keepCount: maskRatio must be in (0, 1), got 0');
    expect(() => keepCount(4, 4, 1)).toThrow('keepCount: maskRatio must be in (0, 1), got 1');
    expect(() => keepCount(4, 4, NaN)).toThrow('keepCount: maskRatio must be in (0, 1), got NaN');
  });

  it('rejects a ratio that keeps no patch', () => {
    expect(() => keepCount(20, 20, 0.99875)).toThrow('keepCount: maskRatio 0.99875 keeps no patch of a 20x20 grid (round(400 * (1 - 0.99875)) = 0)');
    expect(() => keepCount(1, 5, 0.9)).toThrow('keepCount: maskRatio 0.9 keeps no patch of a 1x5 grid');
  });

  it('rejects grids that are not positive integers', () => {
    expect(() => keepCount(0, 4, 0.5)).toThrow('keepCount: gridH must be a positive integer, got 0');
    expect(() => keepCount(4, 2.5, 0.5)).toThrow('keepCount: gridW must be a positive integer, got 2.5');
  });
});

describe('seededRandom', () => {
  it('repeats its sequence for a seed, differs between seeds, and stays in [0, 1)', () => {
    const first = seededRandom(7);
    const again = seededRandom(7);
    const other = seededRandom(8);
    const a = Array.from({ length: 1000 }, first);
    expect(Array.from({ length: 1000 }, again)).toEqual(a);
    expect(Array.from({ length: 1000 }, other)).not.toEqual(a);
    expect(a.every((value) => value >= 0 && value < 1)).toBe(true);
    const mean = a.reduce((sum, value) => sum + value, 0) / a.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05); // 1000 draws: std of the mean is 0.009
  });

  it('keeps the sequence documented in the README (a seed must mean the same masks across releases)', () => {
    expect(seededRandom(42)()).toBe(0.6011037519201636);
  });

  it('rejects a seed that is not an integer', () => {
    expect(() => seededRandom(1.5)).toThrow('seededRandom: seed must be an integer, got 1.5');
  });
});

describeBackends('randomPatchMask', () => {
  it('keeps exactly keepCount patches per sample, as a float32 [B, h, w, 1] mask of 0s and 1s', async () => {
    const mask = randomPatchMask(5, [3, 4], 0.6, { seed: 1 });
    expect(mask.shape).toEqual([5, 3, 4, 1]);
    expect(mask.dtype).toBe('float32');
    const values = await readAndDispose(mask);
    expect(Array.from(values).every((value) => value === 0 || value === 1)).toBe(true);
    const expectedKeep = Math.round(12 * 0.4); // 4.8 -> 5, no tie
    for (const row of visibleIndices(values, 5, 12)) expect(row).toHaveLength(expectedKeep);
  });

  it('is reproducible from a seed and differs between seeds and between samples', async () => {
    const first = await readAndDispose(randomPatchMask(4, [4, 4], 0.6, { seed: 42 }));
    const again = await readAndDispose(randomPatchMask(4, [4, 4], 0.6, { seed: 42 }));
    const other = await readAndDispose(randomPatchMask(4, [4, 4], 0.6, { seed: 43 }));
    expect(Array.from(again)).toEqual(Array.from(first));
    expect(Array.from(other)).not.toEqual(Array.from(first));
    const rows = visibleIndices(first, 4, 16);
    // 8008 masks per sample: four equal draws by chance is far below 1e-9.
    expect(new Set(rows.map((row) => row.join(','))).size).toBeGreaterThan(1);
  });

  it('keeps the patches with the smallest draws of a caller-provided random source', async () => {
    const draws = [0.9, 0.1, 0.5, 0.3, /* sample 2 */ 0.2, 0.8, 0.05, 0.6];
    let next = 0;
    const mask = randomPatchMask(2, [2, 2], 0.5, { random: () => draws[next++] });
    expect(next).toBe(8); // one draw per patch
    expect(Array.from(await readAndDispose(mask))).toEqual([0, 1, 0, 1, 1, 0, 1, 0]);
  });

  it('chooses every patch equally often', async () => {
    // 4000 samples of a 3x3 grid keeping 4: each patch is visible with probability 4/9.
    const batch = 4000;
    const values = await readAndDispose(randomPatchMask(batch, [3, 3], 0.5, { random: seededRandom(2024) }));
    const counts = new Array<number>(9).fill(0);
    for (const row of visibleIndices(values, batch, 9)) for (const patch of row) counts[patch]++;
    const expected = (batch * 4) / 9;
    const std = Math.sqrt(batch * (4 / 9) * (5 / 9));
    for (const count of counts) expect(Math.abs(count - expected)).toBeLessThan(5 * std);
  });

  it('names the bad argument', () => {
    expect(() => randomPatchMask(2, [4, 4], 1.2)).toThrow('randomPatchMask: maskRatio must be in (0, 1), got 1.2');
    expect(() => randomPatchMask(2, [4, 4], -0.1)).toThrow('randomPatchMask: maskRatio must be in (0, 1), got -0.1');
    expect(() => randomPatchMask(2, [20, 20], 0.99875)).toThrow('randomPatchMask: maskRatio 0.99875 keeps no patch of a 20x20 grid');
    expect(() => randomPatchMask(0, [4, 4], 0.6)).toThrow('randomPatchMask: batch must be a positive integer, got 0');
    expect(() => randomPatchMask(1.5, [4, 4], 0.6)).toThrow('randomPatchMask: batch must be a positive integer, got 1.5');
    expect(() => randomPatchMask(2, [4, -4], 0.6)).toThrow('randomPatchMask: gridW must be a positive integer, got -4');
    expect(() => randomPatchMask(2, [4, 4], 0.6, { seed: 1, random: Math.random })).toThrow('randomPatchMask: pass either seed or random, not both');
    expect(() => randomPatchMask(1, [2, 2], 0.5, { random: () => NaN })).toThrow(
      'randomPatchMask: random() must return a finite number in [0, 1), got NaN',
    );
  });
});

describeBackends('patchMaskFromNoise', () => {
  it('accepts rows or flat noise', async () => {
    const fromRows = patchMaskFromNoise(
      [
        [0.9, 0.1, 0.5, 0.3],
        [0.2, 0.8, 0.05, 0.6],
      ],
      [2, 2],
      2,
    );
    const fromFlat = patchMaskFromNoise(new Float32Array([0.9, 0.1, 0.5, 0.3, 0.2, 0.8, 0.05, 0.6]), [2, 2], 2);
    expect(fromRows.shape).toEqual([2, 2, 2, 1]);
    expect(Array.from(await readAndDispose(fromRows))).toEqual([0, 1, 0, 1, 1, 0, 1, 0]);
    expect(Array.from(await readAndDispose(fromFlat))).toEqual([0, 1, 0, 1, 1, 0, 1, 0]);
  });

  it('names the bad argument', () => {
    expect(() => patchMaskFromNoise([[0.1, 0.2, 0.3]], [2, 2], 2)).toThrow(
      'patchMaskFromNoise: noise row 0 must have gridH * gridW = 4 values, got 3',
    );
    expect(() => patchMaskFromNoise([0.1, 0.2, 0.3, 0.4, 0.5], [2, 2], 2)).toThrow(
      'patchMaskFromNoise: flat noise must hold batch * gridH * gridW values (a positive multiple of 4), got 5',
    );
    expect(() => patchMaskFromNoise([0.1, 0.2, 0.3, 0.4], [2, 2], 5)).toThrow(
      'patchMaskFromNoise: keepCount must be an integer in [1, 4] for a 2x2 grid, got 5',
    );
    expect(() => patchMaskFromNoise([0.1, NaN, 0.3, 0.4], [2, 2], 2)).toThrow(
      'patchMaskFromNoise: noise must not be NaN, got NaN in sample 0 at patch 1',
    );
  });

  for (const fileName of goldenFileNames()) {
    it(`reproduces the official mask from its noise (${fileName})`, async () => {
      const golden = loadGolden(fileName);
      const maskRatio = Number(/mask_ratio=([0-9.eE+-]+)/.exec(golden.metadata.spark_ctor)?.[1] ?? 0.6); // SparK's default
      const [gridH, gridW] = golden.metadata.fmap.split('x').map(Number);
      const keep = keepCount(gridH, gridW, maskRatio);
      expect(keep).toBe(Number(golden.metadata.len_keep));
      const noise = golden.get('mask.noise');
      const active = golden.get('active'); // NCHW [B, 1, f, f]: with C = 1 its flat order is NHWC's
      expect(active.shape).toEqual([noise.shape[0], 1, gridH, gridW]);
      const mask = patchMaskFromNoise(noise.data, [gridH, gridW], keep);
      expect(mask.shape).toEqual([noise.shape[0], gridH, gridW, 1]);
      expect(Array.from(await readAndDispose(mask))).toEqual(Array.from(active.data));
    });
  }
});
