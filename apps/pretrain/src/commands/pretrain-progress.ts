// Progress of `sparkmim pretrain` on the terminal: on a TTY one line per epoch, rewritten after every step;
// elsewhere (a log file, a pipe) one plain line per finished epoch.
import type { EpochMetrics, StepMetrics } from '@sparkmim/trainer';

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** `1h02m`, `3m05s`, `12s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const whole = Math.max(0, Math.round(seconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = whole % 60;
  if (hours > 0) return `${hours}h${String(minutes).padStart(2, '0')}m`;
  if (minutes > 0) return `${minutes}m${String(rest).padStart(2, '0')}s`;
  return `${rest}s`;
}

export class ProgressReporter {
  private liveLine = false;
  private stepSeconds = 0;
  private steps = 0;
  private lastLr = NaN;

  /** @param totalIterations the run's iterations (epochs × batches per epoch), for the ETA */
  constructor(
    private readonly out: ProgressStream,
    private readonly epochs: number,
    private readonly batchesPerEpoch: number,
    private readonly totalIterations: number,
  ) {}

  private eta(iterationsDone: number): string {
    if (this.steps === 0) return '?';
    return formatDuration((this.stepSeconds / this.steps) * (this.totalIterations - iterationsDone));
  }

  step(metrics: StepMetrics): void {
    this.steps++;
    this.stepSeconds += metrics.seconds;
    this.lastLr = metrics.lr;
    if (!this.out.isTTY) return;
    const epochWidth = String(this.epochs).length;
    const line =
      `epoch ${String(metrics.epoch + 1).padStart(epochWidth)}/${this.epochs}  batch ${metrics.iterationInEpoch + 1}/${this.batchesPerEpoch}` +
      `  loss ${metrics.loss.toFixed(4)}  lr ${metrics.lr.toExponential(2)}  ${metrics.imagesPerSecond.toFixed(1)} img/s  ETA ${this.eta(metrics.iteration + 1)}`;
    this.out.write(`\r\x1b[2K${line}`);
    this.liveLine = true;
  }

  epoch(metrics: EpochMetrics, iterationsDone: number): void {
    const epochWidth = String(this.epochs).length;
    const line =
      `epoch ${String(metrics.epoch + 1).padStart(epochWidth)}/${this.epochs}  loss ${metrics.meanLoss.toFixed(4)} (mean)  lr ${this.lastLr.toExponential(2)}` +
      `  ${metrics.imagesPerSecond.toFixed(1)} img/s  ${formatDuration(metrics.seconds)}  ETA ${this.eta(iterationsDone)}`;
    this.clear();
    this.out.write(`${line}\n`);
  }

  /** Ends a live line, so that a message can follow on its own line. */
  clear(): void {
    if (this.liveLine) this.out.write('\r\x1b[2K');
    this.liveLine = false;
  }
}
