import type * as tf from '@tensorflow/tfjs-core';

/** Accuracy figures of a classifier over a set of images. */
export interface ClassificationMetrics {
  /** Images counted. */
  count: number;
  /** Fraction whose highest logit is the true class, in [0, 1]. */
  top1: number;
  /** Fraction whose true class is among the five highest logits (all of them when K <= 5). */
  top5: number;
  /** Mean cross-entropy (no smoothing) of the true class. */
  loss: number;
  /** `confusion[trueClass][predictedClass]` = count of images. */
  confusion: number[][];
}

/**
 * Accumulates top-1 / top-5 accuracy, mean cross-entropy and a confusion matrix over batches of logits
 * (on the host: a few numbers per image). Ties are broken towards the lower class index, as torch's
 * `argmax` / `topk` on CPU do.
 *
 * @example
 * const meter = new ClassificationMeter(10);
 * meter.add(await logits.data(), labelsArray); // logits [B, 10] flattened, labels B ints
 * meter.result(); // { count, top1, top5, loss, confusion }
 */
export class ClassificationMeter {
  private count = 0;
  private correct1 = 0;
  private correct5 = 0;
  private lossSum = 0;
  private readonly confusion: number[][];

  constructor(readonly numClasses: number) {
    if (!(Number.isInteger(numClasses) && numClasses >= 2)) throw new Error(`ClassificationMeter: numClasses must be >= 2, got ${numClasses}`);
    this.confusion = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  }

  /** `logits`: B·K values, row-major `[B, K]`; `labels`: B class indices. */
  add(logits: ArrayLike<number>, labels: ArrayLike<number>): void {
    const K = this.numClasses;
    if (logits.length !== labels.length * K) {
      throw new Error(
        `ClassificationMeter.add: expected ${labels.length} x ${K} = ${labels.length * K} logits for ${labels.length} labels, got ${logits.length}`,
      );
    }
    for (let row = 0; row < labels.length; row++) {
      const label = labels[row];
      if (!(Number.isInteger(label) && label >= 0 && label < K))
        throw new Error(`ClassificationMeter.add: label ${label} is not a class index in [0, ${K - 1}]`);
      const values = Array.from({ length: K }, (_, k) => logits[row * K + k]);
      let best = 0;
      for (let k = 1; k < K; k++) if (values[k] > values[best]) best = k;
      // Rank of the true class: classes strictly above it, or equal and earlier (lower index wins ties).
      const rank = values.filter((value, k) => value > values[label] || (value === values[label] && k < label)).length;
      const max = values[best];
      const logSumExp = max + Math.log(values.reduce((sum, value) => sum + Math.exp(value - max), 0));
      this.count++;
      if (best === label) this.correct1++;
      if (rank < 5) this.correct5++;
      this.lossSum += logSumExp - values[label];
      this.confusion[label][best]++;
    }
  }

  result(): ClassificationMetrics {
    const n = Math.max(this.count, 1);
    return {
      count: this.count,
      top1: this.correct1 / n,
      top5: this.correct5 / n,
      loss: this.lossSum / n,
      confusion: this.confusion.map((row) => [...row]),
    };
  }
}

/** A batch of labelled images: `images [B, H, W, 3]` (ImageNet-normalised) and `labels` (B class indices). */
export interface LabelledBatch {
  images: tf.Tensor4D;
  labels: ArrayLike<number>;
}

/**
 * Evaluates `logitsOf` (e.g. `(x) => classifier.logits(x)` in eval mode) over batches; disposes nothing
 * it did not make (the caller owns the batches' images).
 *
 * @example
 * classifier.eval();
 * const metrics = await evaluateLogits((x) => classifier.logits(x), batches, classifier.numClasses);
 */
export async function evaluateLogits(
  logitsOf: (images: tf.Tensor4D) => tf.Tensor2D,
  batches: Iterable<LabelledBatch> | AsyncIterable<LabelledBatch>,
  numClasses: number,
): Promise<ClassificationMetrics> {
  const meter = new ClassificationMeter(numClasses);
  for await (const { images, labels } of batches) {
    const logits = logitsOf(images);
    try {
      meter.add(await logits.data(), labels);
    } finally {
      logits.dispose();
    }
  }
  return meter.result();
}
