// The loss curve of `sparkmim pretrain`: the loss of every step (light) and the mean of every epoch (dark)
// against the iteration, read from the run's metrics.jsonl (so a resumed run's curve covers the whole run),
// drawn into an RGB buffer here (axes, ticks and numbers with a built-in pixel font) and written as a PNG.
import { mkdir, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { loadSharp } from '@sparkmim/trainer/node';
import type Sharp from 'sharp';

/** The curve's file in the run folder. */
export const LOSS_CURVE_FILE = 'loss-curve.png';

/** Size of the picture, and the plot area inside it (the rest holds the axes' numbers). */
export const LOSS_CURVE_SIZE = { width: 640, height: 360 } as const;
export const LOSS_CURVE_PLOT = { left: 64, top: 12, right: 624, bottom: 328 } as const;

const WHITE = [255, 255, 255] as const;
const AXIS = [0, 0, 0] as const;
const STEP_COLOUR = [166, 196, 236] as const;
const EPOCH_COLOUR = [20, 52, 128] as const;

export interface LossHistory {
  /** One per iteration, in order; a repeated iteration (a run resumed from an earlier checkpoint) keeps its last line. */
  steps: { iteration: number; epoch: number; loss: number }[];
  /** Mean loss of each epoch's steps above, with the first and last iteration of those steps. */
  epochs: { epoch: number; firstIteration: number; lastIteration: number; meanLoss: number }[];
}

/** The step losses and epoch means of a metrics.jsonl text (lines of other types, or unreadable ones, are passed over). */
export function lossHistory(jsonl: string): LossHistory {
  const byIteration = new Map<number, { iteration: number; epoch: number; loss: number }>();
  for (const line of jsonl.split('\n')) {
    if (!line.includes('"step"')) continue;
    let record: { type?: unknown; iteration?: unknown; epoch?: unknown; loss?: unknown };
    try {
      record = JSON.parse(line);
    } catch {
      continue; // a line cut short by a quit at once
    }
    const { type, iteration, epoch, loss } = record;
    if (type !== 'step' || typeof iteration !== 'number' || typeof epoch !== 'number') continue;
    // JSON has no NaN: a non-finite loss is written as null.
    byIteration.set(iteration, { iteration, epoch, loss: typeof loss === 'number' ? loss : NaN });
  }
  const steps = [...byIteration.values()].sort((a, b) => a.iteration - b.iteration);
  const epochs: LossHistory['epochs'] = [];
  for (const step of steps) {
    let current = epochs[epochs.length - 1];
    if (!current || current.epoch !== step.epoch) {
      current = { epoch: step.epoch, firstIteration: step.iteration, lastIteration: step.iteration, meanLoss: 0 };
      epochs.push(current);
    }
    current.lastIteration = step.iteration;
  }
  for (const epoch of epochs) {
    const losses = steps.filter((step) => step.epoch === epoch.epoch && Number.isFinite(step.loss)).map((step) => step.loss);
    epoch.meanLoss = losses.length ? losses.reduce((sum, loss) => sum + loss, 0) / losses.length : NaN;
  }
  return { steps, epochs };
}

/**
 * Where an iteration and a loss land in the picture. Each iteration owns a slot of the x axis (so one
 * step still has a width); the y axis spans the finite step losses with a margin.
 */
export function lossCurveScale(history: LossHistory): { x(iteration: number): number; y(loss: number): number; yRange: [number, number] } {
  const { left, top, right, bottom } = LOSS_CURVE_PLOT;
  const first = history.steps.length ? history.steps[0].iteration : 0;
  const last = history.steps.length ? history.steps[history.steps.length - 1].iteration : 0;
  const finite = history.steps.map((step) => step.loss).filter(Number.isFinite);
  let low = finite.length ? Math.min(...finite) : 0;
  let high = finite.length ? Math.max(...finite) : 1;
  const pad = high > low ? 0.05 * (high - low) : Math.max(Math.abs(high) * 0.1, 1e-3);
  low -= pad;
  high += pad;
  const slots = last - first + 1;
  return {
    x: (iteration) => Math.round(left + ((iteration - first + 0.5) / slots) * (right - left)),
    y: (loss) => Math.round(bottom - ((loss - low) / (high - low)) * (bottom - top)),
    yRange: [low, high],
  };
}

/** RGB pixels with the few drawing operations a line chart needs. */
class Canvas {
  readonly pixels: Buffer;

  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.pixels = Buffer.alloc(width * height * 3, WHITE[0]);
  }

  dot(x: number, y: number, colour: readonly number[], size = 1): void {
    const from = -Math.floor((size - 1) / 2);
    for (let dy = from; dy < from + size; dy++) {
      for (let dx = from; dx < from + size; dx++) {
        const px = x + dx;
        const py = y + dy;
        if (px < 0 || py < 0 || px >= this.width || py >= this.height) continue;
        this.pixels.set(colour, (py * this.width + px) * 3);
      }
    }
  }

  line(x0: number, y0: number, x1: number, y1: number, colour: readonly number[], size = 1): void {
    const steps = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
    for (let i = 0; i <= steps; i++) {
      this.dot(Math.round(x0 + ((x1 - x0) * i) / steps), Math.round(y0 + ((y1 - y0) * i) / steps), colour, size);
    }
  }

  /** `text` in the pixel font, `scale` pixels a font pixel; `anchor` says which side of (x, y) it goes. */
  text(text: string, x: number, y: number, anchor: 'right' | 'centre', scale = 2): void {
    const advance = (GLYPH_WIDTH + 1) * scale;
    const width = text.length * advance - scale;
    let cursor = anchor === 'right' ? x - width : x - Math.floor(width / 2);
    const topY = y - Math.floor((GLYPH_HEIGHT * scale) / 2);
    for (const char of text) {
      const rows = GLYPHS[char] ?? GLYPHS['?'];
      rows.forEach((row, gy) => {
        for (let gx = 0; gx < GLYPH_WIDTH; gx++) {
          if (row[gx] === '#') {
            for (let sy = 0; sy < scale; sy++) for (let sx = 0; sx < scale; sx++) this.dot(cursor + gx * scale + sx, topY + gy * scale + sy, AXIS);
          }
        }
      });
      cursor += advance;
    }
  }
}

/** A 3x5 pixel font for the axes' numbers. */
const GLYPH_WIDTH = 3;
const GLYPH_HEIGHT = 5;
const GLYPHS: Record<string, string[]> = {
  '0': ['###', '#.#', '#.#', '#.#', '###'],
  '1': ['.#.', '##.', '.#.', '.#.', '###'],
  '2': ['###', '..#', '###', '#..', '###'],
  '3': ['###', '..#', '.##', '..#', '###'],
  '4': ['#.#', '#.#', '###', '..#', '..#'],
  '5': ['###', '#..', '###', '..#', '###'],
  '6': ['###', '#..', '###', '#.#', '###'],
  '7': ['###', '..#', '.#.', '.#.', '.#.'],
  '8': ['###', '#.#', '###', '#.#', '###'],
  '9': ['###', '#.#', '###', '..#', '###'],
  '.': ['...', '...', '...', '...', '.#.'],
  '-': ['...', '...', '###', '...', '...'],
  '+': ['...', '.#.', '###', '.#.', '...'],
  e: ['...', '###', '#.#', '##.', '.##'],
  '?': ['###', '..#', '.##', '...', '.#.'],
};

/** Numbers short enough for the axis: 3 significant digits. */
function tickLabel(value: number): string {
  if (value === 0) return '0';
  const text = Math.abs(value) >= 1e-3 && Math.abs(value) < 1e5 ? String(Number(value.toPrecision(3))) : value.toExponential(1);
  return text;
}

/** Draws the curve of `history` into RGB pixels of {@link LOSS_CURVE_SIZE}. */
export function drawLossCurve(history: LossHistory): Buffer {
  const { width, height } = LOSS_CURVE_SIZE;
  const { left, top, right, bottom } = LOSS_CURVE_PLOT;
  const canvas = new Canvas(width, height);
  const scale = lossCurveScale(history);

  // Axes with five ticks each, numbered.
  canvas.line(left, top, left, bottom, AXIS);
  canvas.line(left, bottom, right, bottom, AXIS);
  const [low, high] = scale.yRange;
  for (let i = 0; i <= 4; i++) {
    const value = low + ((high - low) * i) / 4;
    const y = scale.y(value);
    canvas.line(left - 4, y, left, y, AXIS);
    canvas.text(tickLabel(value), left - 8, y, 'right');
  }
  const first = history.steps[0]?.iteration ?? 0;
  const last = history.steps[history.steps.length - 1]?.iteration ?? 0;
  const xTicks = [...new Set([0, 1, 2, 3, 4].map((i) => Math.round(first + ((last - first) * i) / 4)))];
  for (const iteration of xTicks) {
    const x = scale.x(iteration);
    canvas.line(x, bottom, x, bottom + 4, AXIS);
    canvas.text(String(iteration), x, bottom + 14, 'centre');
  }

  // Step losses, light, joined in order; a non-finite loss breaks the line.
  let previous: { x: number; y: number } | undefined;
  for (const step of history.steps) {
    if (!Number.isFinite(step.loss)) {
      previous = undefined;
      continue;
    }
    const point = { x: scale.x(step.iteration), y: scale.y(step.loss) };
    if (previous) canvas.line(previous.x, previous.y, point.x, point.y, STEP_COLOUR);
    else canvas.dot(point.x, point.y, STEP_COLOUR, 3);
    previous = point;
  }

  // Epoch means, dark: a level over each epoch's iterations, joined to the next epoch's level.
  let end: { x: number; y: number } | undefined;
  for (const epoch of history.epochs) {
    if (!Number.isFinite(epoch.meanLoss)) {
      end = undefined;
      continue;
    }
    const y = scale.y(epoch.meanLoss);
    const x0 = scale.x(epoch.firstIteration - 0.5);
    const x1 = scale.x(epoch.lastIteration + 0.5);
    if (end) canvas.line(end.x, end.y, x0, y, EPOCH_COLOUR, 2);
    canvas.line(x0, y, x1, y, EPOCH_COLOUR, 2);
    end = { x: x1, y };
  }
  return canvas.pixels;
}

/**
 * Reads `metricsFile` and writes its loss curve to `file` as a PNG of {@link LOSS_CURVE_SIZE}. Returns the
 * file, or undefined when the metrics hold no step (nothing to draw).
 */
export async function writeLossCurve(metricsFile: string, file: string): Promise<string | undefined> {
  const history = lossHistory(await readFile(metricsFile, 'utf8'));
  if (!history.steps.length) return undefined;
  const pixels = drawLossCurve(history);
  await mkdir(path.dirname(file), { recursive: true });
  const sharp = await loadSharp<typeof Sharp>('sparkmim pretrain (loss curve)');
  await sharp(pixels, { raw: { width: LOSS_CURVE_SIZE.width, height: LOSS_CURVE_SIZE.height, channels: 3 } })
    .png()
    .toFile(file);
  return file;
}
