import * as tf from '@tensorflow/tfjs-core';
import { seededRandom } from './random';
import { assertPositiveInteger } from './validate';

/** Python's `round(x)` for a float: the nearest integer, halves to the even one (12.5 -> 12, 13.5 -> 14). */
function roundHalfToEven(value: number): number {
  const floor = Math.floor(value);
  // Exact for any double below 2^52, so a value that is exactly k + 0.5 is seen as a tie, as in CPython.
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function assertMaskRatio(maskRatio: number, caller: string): void {
  if (!(maskRatio > 0 && maskRatio < 1)) {
    throw new Error(`${caller}: maskRatio must be in (0, 1), got ${maskRatio}`);
  }
}

function checkedKeepCount(gridH: number, gridW: number, maskRatio: number, caller: string): number {
  assertPositiveInteger(gridH, 'gridH', caller);
  assertPositiveInteger(gridW, 'gridW', caller);
  assertMaskRatio(maskRatio, caller);
  // Evaluated in the same order and precision as SparK's `round(fmap_h * fmap_w * (1 - mask_ratio))`, so
  // the count matches the official one bit for bit (16 * (1 - 0.6) is 6.4000000000000004 in both).
  const count = roundHalfToEven(gridH * gridW * (1 - maskRatio));
  if (count === 0) {
    throw new Error(
      `${caller}: maskRatio ${maskRatio} keeps no patch of a ${gridH}x${gridW} grid ` +
        `(round(${gridH * gridW} * (1 - ${maskRatio})) = 0); use a smaller ratio or a larger grid`,
    );
  }
  return count;
}

/**
 * How many patches of a `gridH x gridW` grid stay visible at `maskRatio`: `round(gridH * gridW *
 * (1 - maskRatio))` with Python's round-half-to-even, exactly as SparK's `len_keep`.
 *
 * @example
 * keepCount(4, 4, 0.6); // 6
 * keepCount(5, 5, 0.5); // 12 (12.5 rounds to even)
 */
export function keepCount(gridH: number, gridW: number, maskRatio: number): number {
  return checkedKeepCount(gridH, gridW, maskRatio, 'keepCount');
}

/** Rows of noise, one per sample, from either accepted layout. */
function noiseRows(noise: Float32Array | number[] | number[][], patchCount: number, caller: string): ArrayLike<number>[] {
  if (noise.length > 0 && Array.isArray(noise[0])) {
    const rows = noise as number[][];
    rows.forEach((row, sample) => {
      if (row.length !== patchCount) {
        throw new Error(`${caller}: noise row ${sample} must have gridH * gridW = ${patchCount} values, got ${row.length}`);
      }
    });
    return rows;
  }
  const flat = noise as Float32Array | number[];
  if (flat.length === 0 || flat.length % patchCount !== 0) {
    throw new Error(`${caller}: flat noise must hold batch * gridH * gridW values (a positive multiple of ${patchCount}), got ${flat.length}`);
  }
  const rows: ArrayLike<number>[] = [];
  for (let start = 0; start < flat.length; start += patchCount) rows.push(flat.slice(start, start + patchCount));
  return rows;
}

/** 0/1 values `[batch * gridH * gridW]`: in each row, the `keep` patches with the smallest noise are 1. */
function maskValuesFromNoise(rows: ArrayLike<number>[], patchCount: number, keep: number, caller: string): Float32Array {
  const values = new Float32Array(rows.length * patchCount);
  const order = new Array<number>(patchCount);
  rows.forEach((row, sample) => {
    for (let patch = 0; patch < patchCount; patch++) {
      if (Number.isNaN(row[patch])) throw new Error(`${caller}: noise must not be NaN, got NaN in sample ${sample} at patch ${patch}`);
      order[patch] = patch;
    }
    // SparK: `noise.argsort(dim=1)[:, :len_keep]`. Ties (practically never, with continuous noise) go to
    // the lower index, which keeps the result deterministic.
    order.sort((a, b) => row[a] - row[b] || a - b);
    for (let rank = 0; rank < keep; rank++) values[sample * patchCount + order[rank]] = 1;
  });
  return values;
}

/**
 * Builds the patch mask that SparK's `mask()` makes from its noise: per sample, the `keepCount` patches
 * with the smallest noise are visible (1) and the rest are masked (0); the noise is row-major over the grid.
 *
 * @param noise `[B, gridH * gridW]` as rows, or flat (sample after sample), e.g. a golden `mask.noise`.
 * @returns `[B, gridH, gridW, 1]` float32 mask, 1 = visible. The caller owns it.
 *
 * @example
 * const active = patchMaskFromNoise([[0.9, 0.1, 0.5, 0.3]], [2, 2], 2); // [[0, 1], [0, 1]]
 */
export function patchMaskFromNoise(noise: Float32Array | number[] | number[][], [gridH, gridW]: [number, number], keepCount: number): tf.Tensor4D {
  const caller = 'patchMaskFromNoise';
  assertPositiveInteger(gridH, 'gridH', caller);
  assertPositiveInteger(gridW, 'gridW', caller);
  const patchCount = gridH * gridW;
  if (!Number.isInteger(keepCount) || keepCount < 1 || keepCount > patchCount) {
    throw new Error(`${caller}: keepCount must be an integer in [1, ${patchCount}] for a ${gridH}x${gridW} grid, got ${keepCount}`);
  }
  const rows = noiseRows(noise, patchCount, caller);
  const values = maskValuesFromNoise(rows, patchCount, keepCount, caller);
  return tf.tensor4d(values, [rows.length, gridH, gridW, 1], 'float32');
}

/** Where {@link randomPatchMask} draws its noise from. */
export interface RandomPatchMaskOptions {
  /** Makes the mask reproducible: the same seed gives the same mask (a fresh {@link seededRandom} stream). */
  seed?: number;
  /** A source of uniform numbers in [0, 1), e.g. a {@link seededRandom} stream shared across calls. */
  random?: () => number;
}

/**
 * Draws a random patch mask as SparK does: per sample, exactly `keepCount(gridH, gridW, maskRatio)`
 * patches stay visible, chosen uniformly and independently of the other samples.
 *
 * Without `seed` or `random` it uses `Math.random`. The mask is made in JS, then uploaded as one tensor.
 *
 * @returns `[B, gridH, gridW, 1]` float32 mask, 1 = visible, 0 = masked. The caller owns it.
 *
 * @example
 * const active = randomPatchMask(2, [4, 4], 0.6, { seed: 0 }); // 6 visible patches per sample
 */
export function randomPatchMask(
  batch: number,
  [gridH, gridW]: [number, number],
  maskRatio: number,
  { seed, random }: RandomPatchMaskOptions = {},
): tf.Tensor4D {
  const caller = 'randomPatchMask';
  assertPositiveInteger(batch, 'batch', caller);
  const keep = checkedKeepCount(gridH, gridW, maskRatio, caller);
  if (seed !== undefined && random !== undefined) {
    throw new Error(`${caller}: pass either seed or random, not both (got seed ${seed} and a random function)`);
  }
  const draw = random ?? (seed !== undefined ? seededRandom(seed) : Math.random);
  const patchCount = gridH * gridW;
  // One uniform draw per patch, then keep the smallest: the official `torch.rand(B, h*w).argsort(dim=1)`.
  const noise = new Float64Array(batch * patchCount);
  for (let index = 0; index < noise.length; index++) {
    const value = draw();
    if (!Number.isFinite(value)) throw new Error(`${caller}: random() must return a finite number in [0, 1), got ${value}`);
    noise[index] = value;
  }
  const rows: Float64Array[] = [];
  for (let start = 0; start < noise.length; start += patchCount) rows.push(noise.subarray(start, start + patchCount));
  const values = maskValuesFromNoise(rows, patchCount, keep, caller);
  return tf.tensor4d(values, [batch, gridH, gridW, 1], 'float32');
}
