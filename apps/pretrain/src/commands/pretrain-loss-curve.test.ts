import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { LOSS_CURVE_PLOT, LOSS_CURVE_SIZE, drawLossCurve, lossCurveScale, lossHistory, writeLossCurve } from './pretrain-loss-curve';

const step = (iteration: number, epoch: number, loss: number | null) =>
  JSON.stringify({ type: 'step', epoch, iterationInEpoch: iteration % 2, iteration, loss, lr: 1e-4 });

// Two epochs of two steps, then a run resumed from the checkpoint of epoch 1 after a quit without saving:
// iteration 2 and 3 again (the later lines count), and a line cut short by the quit.
const METRICS = [
  step(0, 0, 1.0),
  step(1, 0, 0.8),
  JSON.stringify({ type: 'epoch', epoch: 0, steps: 2, meanLoss: 0.9 }),
  step(2, 1, 0.7),
  '{"type":"step","epoch":1,"iter',
  step(2, 1, 0.6),
  step(3, 1, 0.4),
  JSON.stringify({ type: 'epoch', epoch: 1, steps: 2, meanLoss: 0.5 }),
  step(4, 2, null),
  step(5, 2, 0.3),
  JSON.stringify({ type: 'summary', stopped: false, steps: 4 }),
].join('\n');

const WHITE = [255, 255, 255];

function pixelAt(pixels: Uint8Array, x: number, y: number): number[] {
  const at = (y * LOSS_CURVE_SIZE.width + x) * 3;
  return [pixels[at], pixels[at + 1], pixels[at + 2]];
}

describe('loss curve', () => {
  it('reads every step of metrics.jsonl once (the last line of a repeated iteration) and averages each epoch over its steps', () => {
    const history = lossHistory(METRICS);
    expect(history.steps.map((s) => [s.iteration, s.epoch, s.loss])).toEqual([
      [0, 0, 1.0],
      [1, 0, 0.8],
      [2, 1, 0.6],
      [3, 1, 0.4],
      [4, 2, NaN],
      [5, 2, 0.3],
    ]);
    expect(history.epochs.map((e) => [e.epoch, e.firstIteration, e.lastIteration])).toEqual([
      [0, 0, 1],
      [1, 2, 3],
      [2, 4, 5],
    ]);
    const means = history.epochs.map((e) => e.meanLoss);
    expect(means[0]).toBeCloseTo(0.9, 12);
    expect(means[1]).toBeCloseTo(0.5, 12);
    // The non-finite loss is left out of its epoch's mean.
    expect(means[2]).toBeCloseTo(0.3, 12);
  });

  it('draws the steps (light) and the epoch means (dark) on axes, lower losses lower, and writes a PNG of that size', async () => {
    const history = lossHistory(METRICS);
    const pixels = drawLossCurve(history);
    expect(pixels.length).toBe(LOSS_CURVE_SIZE.width * LOSS_CURVE_SIZE.height * 3);
    const scale = lossCurveScale(history);
    // Every finite step is on the curve.
    for (const { iteration, loss } of history.steps.filter((s) => Number.isFinite(s.loss))) {
      expect({ iteration, pixel: pixelAt(pixels, scale.x(iteration), scale.y(loss)) }).not.toEqual({ iteration, pixel: WHITE });
    }
    // The axes are drawn; the plot's top right corner (losses above every step, past the last epoch's level) is blank.
    const { left, top, right, bottom } = LOSS_CURVE_PLOT;
    expect(pixelAt(pixels, left, bottom)).toEqual([0, 0, 0]);
    expect(pixelAt(pixels, Math.round((left + right) / 2), bottom)).toEqual([0, 0, 0]);
    expect(pixelAt(pixels, right - 2, top + 2)).toEqual(WHITE);
    // Dark pixels in the column of each epoch's middle: the first epoch's mean (0.9) above the second's (0.5).
    const darkRows = (x: number) => {
      const rows: number[] = [];
      for (let y = top; y < bottom; y++) if (Math.max(...pixelAt(pixels, x, y)) < 140) rows.push(y);
      return rows;
    };
    const middle = (e: (typeof history.epochs)[number]) => Math.round((scale.x(e.firstIteration) + scale.x(e.lastIteration)) / 2);
    const [first, second, third] = history.epochs.map((e) => darkRows(middle(e)));
    expect(first.length).toBeGreaterThan(0);
    expect(Math.max(...first)).toBeLessThan(Math.min(...second));
    expect(Math.max(...second)).toBeLessThan(Math.min(...third));

    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-loss-curve-'));
    try {
      const metricsFile = path.join(folder, 'metrics.jsonl');
      fs.writeFileSync(metricsFile, `${METRICS}\n`);
      const file = path.join(folder, 'loss-curve.png');
      expect(await writeLossCurve(metricsFile, file)).toBe(file);
      const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
      expect({ format: (await sharp(file).metadata()).format, width: info.width, height: info.height, channels: info.channels }).toEqual({
        format: 'png',
        ...LOSS_CURVE_SIZE,
        channels: 3,
      });
      expect(Buffer.compare(data, pixels)).toBe(0);
      // Nothing to draw without steps.
      fs.writeFileSync(metricsFile, `${JSON.stringify({ type: 'summary', stopped: true, steps: 0 })}\n`);
      expect(await writeLossCurve(metricsFile, path.join(folder, 'empty.png'))).toBeUndefined();
      expect(fs.existsSync(path.join(folder, 'empty.png'))).toBe(false);
    } finally {
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });
});
