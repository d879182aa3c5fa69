// The loop over a real folder with broken files (the issue's "a folder with a corrupt JPEG, a text file named
// .png, an empty file and a grayscale image trains, and the run's summary counts what it skipped"): the real
// ImageFolderSource (sharp) and SparkModel (a tiny convnet backbone, 64x64 crops), one epoch of batch 2:
// 4 steps, seconds on either backend.
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import { createTinyConvNet } from '@sparkmim/backbones';
import { describeBackends } from '@sparkmim/test-utils';
import { ImageFolderSource } from '../data/image-folder';
import type { DataSource } from '../data/source';
import { encodePng, makeTempFolder, rampPixels, removeFolder } from '../data/test-images';
import { SparkModel } from '../model/spark-model';
import { Lamb } from '../optim/lamb';
import { paramGroupsFromVariables } from '../optim/param-groups';
import { train } from './loop';
import type { RunSummaryMetrics, StepMetrics } from './metrics';

const SIDE = 64;

/** A JPEG cut in half: a valid header, then the data ends early. */
async function corruptJpeg(): Promise<Buffer> {
  const whole = await sharp(Buffer.from(rampPixels(SIDE, SIDE, 4)), { raw: { width: SIDE, height: SIDE, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
  return whole.subarray(0, Math.floor(whole.length / 2));
}

/** A grayscale ramp (one channel, colour type 0), which the source repeats to RGB. */
function grayPng(): Buffer {
  const samples = Array.from({ length: SIDE * SIDE }, (_, i) => (i % SIDE) * 4);
  return encodePng(samples, SIDE, SIDE, 1);
}

describeBackends('train over an image folder with broken files', () => {
  let folder: string;
  afterEach(() => {
    if (folder) removeFolder(folder);
  });

  it('trains on the good and grayscale images and the summary lists the 3 skipped files', async () => {
    folder = makeTempFolder({
      'colour0.png': encodePng(rampPixels(SIDE, SIDE, 4, 0), SIDE, SIDE, 3),
      'colour1.png': encodePng(rampPixels(SIDE, SIDE, 3, 200), SIDE, SIDE, 3),
      'colour2.png': encodePng(rampPixels(SIDE, SIDE, 2, 90), SIDE, SIDE, 3),
      'colour3.png': encodePng(rampPixels(SIDE, SIDE, 1, 30), SIDE, SIDE, 3),
      'gray.png': grayPng(),
      'corrupt.jpg': await corruptJpeg(),
      'text.png': 'this is a text file, not a PNG',
      'empty.png': '',
    });
    const metricsFile = path.join(folder, 'logs', 'metrics.jsonl');
    const tensorsBefore = tf.memory().numTensors;

    const warned: string[] = [];
    const source = await ImageFolderSource.open(folder, {
      inputSize: SIDE,
      prefetch: 1,
      onSkip: (skipped) => void warned.push(path.basename(skipped.path)),
    });
    // Records which files made it into a batch; forwards everything else, `skipped` included.
    const used = new Set<string>();
    const data: DataSource = {
      size: source.size,
      inputSize: source.inputSize,
      get skipped() {
        return source.skipped;
      },
      async *epochBatches(epoch, options) {
        for await (const batch of source.epochBatches(epoch, options)) {
          for (const index of batch.indices) used.add(path.basename(source.files[index]));
          yield batch;
        }
      },
      dispose: () => source.dispose(),
    };
    const model = new SparkModel({ backbone: createTinyConvNet({ channels: [4, 8, 8, 8], seed: 1 }), decoderWidth: 32, seed: 1 });
    const optimizer = new Lamb(paramGroupsFromVariables(model.namedParameters()), { betas: [0.9, 0.95] });
    const steps: StepMetrics[] = [];

    try {
      const result = await train({ model, optimizer, data, batchSize: 2, epochs: 1, seed: 4, metricsFile, onStep: (m) => void steps.push(m) });

      // 8 files found (the broken ones count in `size`), so 4 batches of 2, each filled with decodable images.
      expect(source.size).toBe(8);
      expect(result).toMatchObject({ stopped: false, steps: 4, progress: { epoch: 1, iterationInEpoch: 0, iteration: 4 } });
      expect(steps.map((m) => m.batchSize)).toEqual([2, 2, 2, 2]);
      expect(steps.every((m) => Number.isFinite(m.loss) && Number.isFinite(m.gradNorm))).toBe(true);
      expect(Number.isFinite(result.lastLoss)).toBe(true);
      // The grayscale image is decoded (to RGB) and trained on, never skipped.
      expect(used.has('gray.png')).toBe(true);
      expect([...used].sort()).toEqual(['colour0.png', 'colour1.png', 'colour2.png', 'colour3.png', 'gray.png']);

      // The summary: exactly the 3 broken files, with their paths and the decoder's reasons.
      const broken = ['corrupt.jpg', 'empty.png', 'text.png'];
      expect(result.skipped).toHaveLength(3);
      expect(result.skipped!.map((skipped) => skipped.path).sort()).toEqual(broken.map((name) => path.join(path.resolve(folder), name)).sort());
      const reasons = Object.fromEntries(result.skipped!.map((skipped) => [path.basename(skipped.path), skipped.reason]));
      // libvips reports a truncated JPEG either as the premature end itself or, when the truncation is first
      // seen as a warning, as sharp's failOn refusal; both are the decoder rejecting this file.
      expect(reasons['corrupt.jpg']).toMatch(/premature end|warning treated as error/i);
      expect(reasons['text.png']).toMatch(/unsupported image format/i);
      expect(reasons['empty.png']).toBe('empty file');
      expect(warned.sort()).toEqual(broken);

      // The metrics file ends with the same summary.
      const lines = fs
        .readFileSync(metricsFile, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line));
      expect(lines.filter((line) => line.type === 'step')).toHaveLength(4);
      const summary = lines[lines.length - 1] as RunSummaryMetrics;
      expect(summary).toMatchObject({
        type: 'summary',
        stopped: false,
        steps: 4,
        epoch: 1,
        iteration: 4,
        lastLoss: result.lastLoss,
        skippedCount: 3,
      });
      expect(summary.skipped).toEqual(result.skipped);
    } finally {
      data.dispose();
      optimizer.dispose();
      model.dispose();
    }
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });
});
