// Slow, obvious loop versions of SparK's patchify and loss (spark.py), in float64, for the tests only
// (not exported by index.ts, so not part of the package).

/** SparK's patchify by loops: out[b][hh * w + ww][(pi * p + qj) * C + c] = x[b][hh * p + pi][ww * p + qj][c]. */
export function patchifyReference(values: ArrayLike<number>, [batch, height, width, channels]: number[], p: number): number[] {
  return patchIndices([batch, height, width, channels], p).map((index) => values[index]);
}

/** For each element of the patchified tensor, in order, its flat NHWC index in the image. */
export function patchIndices([batch, height, width, channels]: number[], p: number): number[] {
  const gridH = height / p;
  const gridW = width / p;
  const indices: number[] = [];
  for (let b = 0; b < batch; b++)
    for (let hh = 0; hh < gridH; hh++)
      for (let ww = 0; ww < gridW; ww++)
        for (let pi = 0; pi < p; pi++)
          for (let qj = 0; qj < p; qj++)
            for (let c = 0; c < channels; c++) indices.push(((b * height + hh * p + pi) * width + ww * p + qj) * channels + c);
  return indices;
}

export interface LossReference {
  loss: number;
  /** d loss / d reconstruction, flat NHWC. */
  gradient: number[];
  /** unpatchify(rec * std + mean), flat NHWC (the raw reconstruction without normalisation). */
  pixels: number[];
}

/**
 * SparK's loss written out: per patch mean, unbiased variance, target, mean squared error; the average over
 * masked patches; and its gradient with respect to the reconstruction, derived by hand:
 * d loss / d rec[k] = 2 (rec[k] - target[k]) / N * (1 - active) / (sum(1 - active) + 1e-8).
 */
export function sparkLossReference(
  reconstruction: ArrayLike<number>,
  images: ArrayLike<number>,
  active: ArrayLike<number>,
  shape: number[],
  p: number,
  normalizeTarget = true,
): LossReference {
  const indices = patchIndices(shape, p);
  const patchLength = p * p * shape[3];
  const patchCount = indices.length / patchLength;
  const gradient = new Array<number>(indices.length).fill(0);
  const pixels = new Array<number>(indices.length).fill(0);
  let maskedCount = 0;
  for (let patch = 0; patch < patchCount; patch++) maskedCount += 1 - active[patch];
  const denominator = maskedCount + 1e-8;
  let loss = 0;
  for (let patch = 0; patch < patchCount; patch++) {
    const at = indices.slice(patch * patchLength, (patch + 1) * patchLength);
    const x = at.map((index) => images[index]);
    const mean = normalizeTarget ? x.reduce((sum, value) => sum + value, 0) / patchLength : 0;
    const variance = x.reduce((sum, value) => sum + (value - mean) ** 2, 0) / (patchLength - 1);
    const std = normalizeTarget ? Math.sqrt(variance + 1e-6) : 1;
    const weight = 1 - active[patch];
    let squaredError = 0;
    at.forEach((index, k) => {
      const target = (x[k] - mean) / std;
      const difference = reconstruction[index] - target;
      squaredError += difference * difference;
      gradient[index] = ((2 * difference) / patchLength) * (weight / denominator);
      pixels[index] = reconstruction[index] * std + mean;
    });
    loss += (squaredError / patchLength) * weight;
  }
  return { loss: loss / denominator, gradient, pixels };
}
