// Reusing @sparkmim/sparse-ops outside SparK: completing a partially observed 2-D occupancy grid.
//
// A robot has seen only some 2x2 blocks of a 16x16 occupancy map (1 = obstacle). A small sparse encoder
// reads only the observed cells: its convolutions and norms never mix unobserved cells in, and batch-norm
// statistics come from observed cells alone, so the features do not depend on what the unobserved cells
// hold (they are exactly zero there). `densify` then fills the unobserved cells with a learned vector and
// a small dense decoder predicts occupancy everywhere; the loss is taken on the unobserved cells only.
//
// Run it: node scripts/run-ts.mjs packages/sparse-ops/examples/run-occupancy-inpainting.ts [backend]
import * as tf from '@tensorflow/tfjs-core';
import { ActiveSites, densify, Module, SparseBatchNorm2d, SparseConv2d, SparseLayerNorm, uniformFanIn } from '@sparkmim/sparse-ops';

export interface InpaintingOptions {
  /** Training steps (Adam). Default 60. */
  steps?: number;
  /** Maps per batch. Default 8. */
  batchSize?: number;
  /** Map side in cells (a multiple of 2). Default 16. */
  size?: number;
  /** Fraction of 2x2 blocks observed. Default 0.5. */
  observedFraction?: number;
  learningRate?: number;
  seed?: number;
  /** Progress lines (e.g. console.log). */
  log?: (line: string) => void;
}

export interface InpaintingResult {
  /** Cross-entropy on unobserved cells before and after training (held-out batch). */
  initialLoss: number;
  finalLoss: number;
  /** Accuracy on unobserved cells of the trained model, and of guessing the most common observed value. */
  holeAccuracy: number;
  baselineAccuracy: number;
  /** Largest |encoder feature| at an unobserved cell: 0, the encoder is sparse. */
  encoderLeakage: number;
}

/** Deterministic uniform numbers in [0, 1). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Maps of a few random boxes and walls: `[B, size, size]` 0/1, and which 2x2 blocks were observed. */
function makeBatch(batchSize: number, size: number, observedFraction: number, next: () => number) {
  const grid = new Float32Array(batchSize * size * size);
  for (let b = 0; b < batchSize; b++) {
    for (let box = 0; box < 4; box++) {
      const top = Math.floor(next() * size);
      const left = Math.floor(next() * size);
      const height = 3 + Math.floor(next() * size * 0.4);
      const width = 3 + Math.floor(next() * size * 0.4);
      for (let i = top; i < Math.min(size, top + height); i++) {
        for (let j = left; j < Math.min(size, left + width); j++) grid[(b * size + i) * size + j] = 1;
      }
    }
  }
  const blocks = size / 2;
  const observed = Array.from({ length: batchSize * blocks * blocks }, () => (next() < observedFraction ? 1 : 0));
  return { grid, observed, blocks };
}

/** Sparse encoder (sees observed cells only), densify, dense decoder. */
class OccupancyCompleter extends Module {
  readonly conv1: SparseConv2d;
  readonly bn1: SparseBatchNorm2d;
  readonly conv2: SparseConv2d;
  readonly ln2: SparseLayerNorm;
  readonly maskToken: tf.Variable;
  readonly decoder1: SparseConv2d;
  readonly decoder2: SparseConv2d;

  constructor(width: number, seed: number) {
    super();
    const conv = (inChannels: number, outChannels: number, kernelSize: number, offset: number) =>
      new SparseConv2d({
        inChannels,
        outChannels,
        kernelSize,
        pad: Math.floor(kernelSize / 2),
        filterInit: uniformFanIn(inChannels * kernelSize * kernelSize, seed + offset),
        biasInit: uniformFanIn(inChannels * kernelSize * kernelSize, seed + offset + 1),
      });
    this.conv1 = this.registerModule('conv1', conv(2, width, 3, 0));
    this.bn1 = this.registerModule('bn1', new SparseBatchNorm2d({ channels: width }));
    this.conv2 = this.registerModule('conv2', conv(width, width, 3, 2));
    this.ln2 = this.registerModule('ln2', new SparseLayerNorm({ channels: width }));
    this.maskToken = this.registerParameter('mask_token', tf.zeros([width]), 'token');
    this.decoder1 = this.registerModule('decoder1', conv(width, width, 3, 4));
    this.decoder2 = this.registerModule('decoder2', conv(width, 1, 3, 6));
  }

  /** Sparse features: `[B, H, W, width]`, zero at unobserved cells. */
  encode(cells: tf.Tensor4D, active: ActiveSites): tf.Tensor4D {
    return tf.tidy(() => {
      const hidden = tf.relu(this.bn1.apply(this.conv1.apply(cells, { active }), { active }));
      return tf.relu(this.ln2.apply(this.conv2.apply(hidden, { active }), { active }));
    });
  }

  /** Occupancy logits `[B, H, W, 1]` everywhere. */
  apply(cells: tf.Tensor4D, active: ActiveSites): tf.Tensor4D {
    return tf.tidy(() => {
      const dense = densify(this.encode(cells, active), active, this.maskToken as tf.Tensor1D);
      // No mask: the decoder's convs are ordinary dense convs.
      return this.decoder2.apply(tf.relu(this.decoder1.apply(dense)));
    });
  }
}

/**
 * Trains the completer on random maps and reports its accuracy on the unobserved cells of a held-out
 * batch. Creates and frees all its tensors (needs a tfjs backend with gradients set up by the caller).
 *
 * @example
 * const { holeAccuracy, baselineAccuracy } = await runOccupancyInpainting({ steps: 60, log: console.log });
 */
export async function runOccupancyInpainting(options: InpaintingOptions = {}): Promise<InpaintingResult> {
  const { steps = 60, batchSize = 8, size = 16, observedFraction = 0.5, learningRate = 0.01, seed = 7, log = () => {} } = options;
  const next = random(seed);
  const model = new OccupancyCompleter(8, seed);
  const optimizer = tf.train.adam(learningRate);
  const trainable = model.namedParameters().map(({ variable }) => variable);

  /** Inputs (observed value and an "observed" channel), targets, and the observed blocks of a batch. */
  const prepare = () => {
    const { grid, observed, blocks } = makeBatch(batchSize, size, observedFraction, next);
    const active = ActiveSites.fromArray(observed, [batchSize, blocks, blocks]);
    const tensors = tf.tidy(() => {
      const target = tf.tensor4d(grid, [batchSize, size, size, 1]);
      const seen = active.at(size, size);
      // Unobserved cells are zero in both channels: the encoder must not learn from them.
      const cells = tf.concat([tf.mul(target, seen), seen], 3) as tf.Tensor4D;
      const holes = tf.sub(1, seen);
      return { target, cells, holes };
    });
    return { active, ...tensors };
  };
  type Batch = ReturnType<typeof prepare>;
  const holeLoss = (batch: Batch) =>
    tf.tidy(() => {
      const logits = model.apply(batch.cells, batch.active);
      const perCell = tf.losses.sigmoidCrossEntropy(batch.target, logits, batch.holes, 0, tf.Reduction.NONE);
      return tf.div(tf.sum(perCell), tf.maximum(tf.sum(batch.holes), 1)) as tf.Scalar;
    });
  const readHoleLoss = async (batch: Batch) => {
    const loss = holeLoss(batch);
    const value = (await loss.data())[0];
    loss.dispose();
    return value;
  };
  const release = (batch: Batch) => {
    tf.dispose([batch.target, batch.cells, batch.holes]);
    batch.active.dispose();
  };

  const heldOut = prepare();
  try {
    model.eval();
    const initialLoss = await readHoleLoss(heldOut);
    model.train();
    for (let step = 1; step <= steps; step++) {
      const batch = prepare();
      const loss = optimizer.minimize(() => holeLoss(batch), true, trainable);
      if (step % 20 === 0 || step === steps) log(`step ${step}: hole loss ${(await loss!.data())[0].toFixed(4)}`);
      loss?.dispose();
      release(batch);
    }

    model.eval();
    const finalLoss = await readHoleLoss(heldOut);
    const [correct, holeCount, occupiedSeen, seenCount, leakage] = tf.tidy(() => {
      const predicted = tf.cast(tf.greater(model.apply(heldOut.cells, heldOut.active), 0), 'float32');
      const seen = tf.sub(1, heldOut.holes);
      const features = model.encode(heldOut.cells, heldOut.active);
      return [
        tf.sum(tf.mul(tf.cast(tf.equal(predicted, heldOut.target), 'float32'), heldOut.holes)),
        tf.sum(heldOut.holes),
        tf.sum(tf.mul(heldOut.target, seen)),
        tf.sum(seen),
        tf.max(tf.abs(tf.mul(features, heldOut.holes))),
      ];
    });
    const [correctCount, holes, occupied, seen, encoderLeakage] = await Promise.all(
      [correct, holeCount, occupiedSeen, seenCount, leakage].map(async (tensor) => (await tensor.data())[0]),
    );
    tf.dispose([correct, holeCount, occupiedSeen, seenCount, leakage]);
    // The baseline guesses the majority value of the observed cells for every hole.
    const guessOccupied = occupied > seen / 2;
    const targets = await heldOut.target.data();
    const holeMask = await heldOut.holes.data();
    let baselineCorrect = 0;
    for (let i = 0; i < targets.length; i++) if (holeMask[i] === 1 && (targets[i] === 1) === guessOccupied) baselineCorrect++;
    return {
      initialLoss,
      finalLoss,
      holeAccuracy: correctCount / holes,
      baselineAccuracy: baselineCorrect / holes,
      encoderLeakage,
    };
  } finally {
    release(heldOut);
    optimizer.dispose();
    model.dispose();
  }
}
