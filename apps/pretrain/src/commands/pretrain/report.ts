// What `sparkmim pretrain` prints when a run ends: the summary line, how to continue a stopped run, and
// what the run folder holds.
import * as path from 'node:path';
import type { EpochMetrics } from '@sparkmim/trainer';
import { CHECKPOINT_MANIFEST, ENCODER_WEIGHTS_FILE, type TrainResult } from '@sparkmim/trainer/node';
import { LOSS_CURVE_FILE } from '../pretrain-loss-curve';
import { formatDuration } from '../pretrain-progress';

export interface RunReport {
  result: TrainResult;
  out: string;
  epochsOfRun: number;
  batchSize: number;
  /** The epochs this call ran. */
  epochs: EpochMetrics[];
  seconds: number;
  skippedCount: number;
  lossCurve?: string;
  previewFiles: string[];
}

export function reportRun({ result, out, epochsOfRun, batchSize, epochs, seconds, skippedCount, lossCurve, previewFiles }: RunReport): void {
  const skipped = result.skipped?.length ?? skippedCount;
  const images = result.steps * batchSize;
  const meanLoss = (metrics: EpochMetrics | undefined) => (metrics ? metrics.meanLoss.toFixed(4) : '-');
  const { epoch, iterationInEpoch, iteration } = result.progress;
  process.stdout.write(
    `${result.stopped ? 'stopped' : 'done'}: ${epochs.length} epoch(s) run (now at ${epoch} of ${epochsOfRun}), ${result.steps} steps, ` +
      `mean loss ${meanLoss(epochs[0])} (first epoch) -> ${meanLoss(epochs[epochs.length - 1])} (last epoch), ` +
      `${skipped} files skipped, ${formatDuration(seconds)}, ${(images / seconds).toFixed(1)} images/s\n`,
  );
  if (result.stopped) {
    process.stdout.write(
      `checkpoint at epoch ${epoch + 1}, batch ${iterationInEpoch + 1} (iteration ${iteration}) saved in ${out}; continue with: sparkmim pretrain --resume ${out}\n`,
    );
  }
  process.stdout.write(
    `run folder ${out}: ${CHECKPOINT_MANIFEST} (full checkpoint), ${ENCODER_WEIGHTS_FILE}, metrics.jsonl${lossCurve ? `, ${LOSS_CURVE_FILE}` : ''}, config.json` +
      `${previewFiles.length ? `, previews/ (last: ${path.basename(previewFiles[previewFiles.length - 1])})` : ''}\n`,
  );
}
