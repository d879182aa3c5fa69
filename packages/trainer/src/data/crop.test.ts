import { seededRandom } from '@sparkmim/masking';
import { randomResizedCropParams, roundHalfToEven } from './crop';

// torchvision's RandomResizedCrop.get_params (torchvision/transforms/transforms.py), line by line, with
// torch's generator replaced by `random` (uniform_(a, b) = a + (b - a) u; randint(0, n) = floor(u n)):
//
//   area = height * width
//   log_ratio = torch.log(torch.tensor(ratio))
//   for _ in range(10):
//       target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
//       aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
//       w = int(round(math.sqrt(target_area * aspect_ratio)))
//       h = int(round(math.sqrt(target_area / aspect_ratio)))
//       if 0 < w <= width and 0 < h <= height:
//           i = torch.randint(0, height - h + 1, size=(1,)).item()
//           j = torch.randint(0, width - w + 1, size=(1,)).item()
//           return i, j, h, w
//   in_ratio = float(width) / float(height)
//   if in_ratio < min(ratio): w = width; h = int(round(w / min(ratio)))
//   elif in_ratio > max(ratio): h = height; w = int(round(h * max(ratio)))
//   else: w = width; h = height
//   i = (height - h) // 2; j = (width - w) // 2
function pythonRound(x: number): number {
  // Python 3 rounds ties to even.
  const nearest = Math.round(x);
  return Math.abs(x % 1) === 0.5 && nearest % 2 !== 0 ? nearest - 1 : nearest;
}

function referenceGetParams(height: number, width: number, scale: [number, number], ratio: [number, number], random: () => number) {
  const area = height * width;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (scale[0] + (scale[1] - scale[0]) * random());
    const aspectRatio = Math.exp(logRatio[0] + (logRatio[1] - logRatio[0]) * random());
    const w = pythonRound(Math.sqrt(targetArea * aspectRatio));
    const h = pythonRound(Math.sqrt(targetArea / aspectRatio));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const i = Math.floor(random() * (height - h + 1));
      const j = Math.floor(random() * (width - w + 1));
      return { top: i, left: j, height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(...ratio)) h = pythonRound(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = pythonRound(h * Math.max(...ratio));
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

function countingRandom(random: () => number) {
  const counter = {
    draws: 0,
    next: () => {
      counter.draws++;
      return random();
    },
  };
  return counter;
}

describe('randomResizedCropParams', () => {
  it('matches a line-by-line reference of torchvision get_params on one shared random sequence', () => {
    const sizes: [number, number][] = [
      [375, 500],
      [500, 375],
      [224, 224],
      [32, 32],
      [7, 300],
      [300, 7],
      [1, 1],
      [2, 3],
    ];
    const settings: { scale: [number, number]; ratio: [number, number] }[] = [
      { scale: [0.67, 1], ratio: [3 / 4, 4 / 3] },
      { scale: [0.08, 1], ratio: [3 / 4, 4 / 3] },
      { scale: [0.9, 1], ratio: [2, 3] },
    ];
    for (const [height, width] of sizes) {
      for (const { scale, ratio } of settings) {
        const ours = countingRandom(seededRandom(height * 1000 + width));
        const theirs = countingRandom(seededRandom(height * 1000 + width));
        for (let draw = 0; draw < 200; draw++) {
          expect(randomResizedCropParams(height, width, ours.next, { scale, ratio })).toEqual(
            referenceGetParams(height, width, scale, ratio, theirs.next),
          );
        }
        // Same number of draws: later images' augmentation stays aligned with torchvision's order.
        expect(ours.draws).toBe(theirs.draws);
      }
    }
  });

  it("keeps SparK's crops within scale (0.67, 1) and ratio (3/4, 4/3), positions uniform", () => {
    const random = seededRandom(2024);
    const [height, width] = [375, 500];
    let areaSum = 0;
    let leftFractionSum = 0;
    const samples = 4000;
    for (let draw = 0; draw < samples; draw++) {
      const box = randomResizedCropParams(height, width, random);
      const areaFraction = (box.height * box.width) / (height * width);
      // Rounding w and h moves the area by at most about (w + h) / 2 pixels.
      expect(areaFraction).toBeGreaterThan(0.67 - (box.width + box.height) / (2 * height * width));
      expect(box.width / box.height).toBeGreaterThan((3 / 4) * 0.98);
      expect(box.width / box.height).toBeLessThan((4 / 3) * 1.02);
      expect(box.top + box.height).toBeLessThanOrEqual(height);
      expect(box.left + box.width).toBeLessThanOrEqual(width);
      areaSum += areaFraction;
      if (box.width < width) leftFractionSum += box.left / (width - box.width);
      else leftFractionSum += 0.5;
    }
    // Accepted areas are uniform in [0.67, 1] except where the crop no longer fits (large area, extreme
    // ratio), which trims the top of the range: the mean lies a little under 0.835.
    expect(areaSum / samples).toBeGreaterThan(0.78);
    expect(areaSum / samples).toBeLessThan(0.84);
    expect(Math.abs(leftFractionSum / samples - 0.5)).toBeLessThan(0.03);
  });

  it('falls back to the centre crop clamped to the ratio range after 10 rejected attempts (20 draws)', () => {
    // A 10 x 10 image cannot hold a crop of ratio 2 and full area: every attempt has w = round(sqrt(200)) = 14 > 10.
    const random = countingRandom(seededRandom(3));
    expect(randomResizedCropParams(10, 10, random.next, { scale: [1, 1], ratio: [2, 2] })).toEqual({ top: 2, left: 0, height: 5, width: 10 });
    expect(random.draws).toBe(20);
    // Very wide: the attempts never fit 10 rows; fallback h = 10, w = round(10 * 4/3) = 13, centred.
    expect(randomResizedCropParams(10, 1000, seededRandom(1), { scale: [0.67, 1] })).toEqual({ top: 0, left: 493, height: 10, width: 13 });
    // Very tall: w = 10, h = round(10 / (3/4)) = round(13.33) = 13.
    expect(randomResizedCropParams(1000, 10, seededRandom(1), { scale: [0.67, 1] })).toEqual({ top: 493, left: 0, height: 13, width: 10 });
    // Image ratio within the range: the whole image (every attempt draws ratio ~2: w = round(sqrt(18)) = 4 > 3).
    expect(randomResizedCropParams(3, 3, () => 0.999999, { scale: [1, 1], ratio: [0.5, 2] })).toEqual({ top: 0, left: 0, height: 3, width: 3 });
  });

  it('returns the whole image for scale (1, 1) and ratio (1, 1) on a square', () => {
    expect(randomResizedCropParams(32, 32, seededRandom(9), { scale: [1, 1], ratio: [1, 1] })).toEqual({ top: 0, left: 0, height: 32, width: 32 });
  });

  it('says what it expected for bad arguments', () => {
    expect(() => randomResizedCropParams(0, 5, Math.random)).toThrow('randomResizedCropParams: imageHeight is 0, expected a whole number >= 1');
    expect(() => randomResizedCropParams(5, 5, Math.random, { scale: [1, 0.5] })).toThrow(
      'randomResizedCropParams: scale is (1, 0.5), expected 0 < min <= max',
    );
    expect(() => randomResizedCropParams(5, 5, Math.random, { ratio: [0, 1] })).toThrow(
      'randomResizedCropParams: ratio is (0, 1), expected 0 < min <= max',
    );
  });
});

describe('roundHalfToEven', () => {
  it('rounds as Python round()', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, 2.5001, 3].map((x) => roundHalfToEven(x) + 0)).toEqual([0, 2, 2, 0, -2, 2, 3, 3]);
  });
});
