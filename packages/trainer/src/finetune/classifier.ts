// A classifier on any Backbone, for what comes after pre-training: features, linear probes, fine-tuning.
// The official fine-tuning (downstream_imagenet) puts timm's head on the encoder: global average pool of
// the last feature map, then one linear layer (`fc` on a ResNet; ConvNeXt's `head`, after a norm we leave
// out: the brief here is "pool + linear" on any backbone, and a pooled ConvNeXt map is already layer-normed
// inside its last block).

import * as tf from '@tensorflow/tfjs-core';
import { Linear, createBackboneFromConfig, type Backbone } from '@sparkmim/backbones';
import { SeededRandom, loadTorchState, uniformFanIn, type LoadStateReport, type NamedVariable, type TorchTensorData } from '@sparkmim/sparse-ops';
import { ENCODER_STATE_PREFIX, type TrainableModel } from '../train/trainable';
import { weightsArchitecture, type WeightsFile } from '../model/weights-file';
import { classificationLoss, type ClassificationLossOptions } from './loss';

export interface ClassifierConfig {
  /** The feature extractor; the classifier owns it from now on (disposed with it). */
  backbone: Backbone;
  /** Number of classes (the head's outputs), >= 2. */
  numClasses: number;
  /** Seeds the head's initial weights. Default: unseeded. */
  seed?: number;
  /** The head's parameter prefix. Default `head` for ConvNeXts (the official name), `fc` otherwise (timm's). */
  headName?: string;
}

/**
 * Global average pool of a backbone's last (stride-32) feature map + a linear head, in dense mode (no
 * mask). Parameters keep the backbone's official names, the head's are `fc.weight` / `fc.bias` (timm
 * ResNet) or `head.*` (ConvNeXt), so a state dict is the layout PyTorch fine-tuning writes.
 *
 * @example
 * const classifier = new Classifier({ backbone: resnet18({ seed: 0 }), numClasses: 10, seed: 0 });
 * const logits = classifier.logits(images); // images [B, H, W, 3] → [B, 10]
 * logits.dispose();
 * classifier.dispose();
 */
export class Classifier {
  readonly backbone: Backbone;
  readonly head: Linear;
  readonly numClasses: number;
  readonly headName: string;
  training = true;

  constructor({ backbone, numClasses, seed, headName }: ClassifierConfig) {
    if (!(Number.isInteger(numClasses) && numClasses >= 2)) {
      throw new Error(`Classifier: numClasses must be a whole number >= 2, got ${numClasses}`);
    }
    this.backbone = backbone;
    this.numClasses = numClasses;
    this.headName = headName ?? (backbone.kind === 'convnext' ? 'head' : 'fc');
    const inFeatures = backbone.featureChannels[backbone.featureChannels.length - 1];
    // PyTorch's nn.Linear default: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias (timm's ResNet fc).
    const random = new SeededRandom(seed);
    this.head = new Linear({
      inFeatures,
      outFeatures: numClasses,
      weightInit: uniformFanIn(inFeatures, random),
      biasInit: uniformFanIn(inFeatures, random),
    });
  }

  /** Channels of the pooled features (the last feature map's). */
  get featureSize(): number {
    return this.backbone.featureChannels[this.backbone.featureChannels.length - 1];
  }

  /** `images: [B, H, W, 3]` (ImageNet-normalised, sides multiples of 32) → pooled features `[B, C]`. */
  features(images: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const maps = this.backbone.forward(images);
      const last = maps[maps.length - 1];
      return tf.mean(last, [1, 2]) as tf.Tensor2D;
    });
  }

  /** `images: [B, H, W, 3]` → logits `[B, numClasses]`. */
  logits(images: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => this.head.apply(this.features(images)));
  }

  /** Trainable parameters: the backbone's (official names), then the head's (`fc.*` / `head.*`). */
  namedParameters(): NamedVariable[] {
    return [...this.backbone.namedParameters(), ...this.head.namedParameters(`${this.headName}.`)];
  }

  /** Parameters and buffers, PyTorch `state_dict()` order (backbone, then head). */
  stateEntries(): NamedVariable[] {
    return [...this.backbone.stateEntries(), ...this.head.stateEntries(`${this.headName}.`)];
  }

  /** Training (batch statistics, drop path) or evaluation mode. Returns this. */
  train(training = true): this {
    this.training = training;
    this.backbone.train(training);
    this.head.train(training);
    return this;
  }

  /** Evaluation mode. Returns this. */
  eval(): this {
    return this.train(false);
  }

  /** Freezes (or unfreezes) the backbone: its parameters stop (or start) being trainable, as a linear probe wants. */
  freezeBackbone(frozen = true): void {
    for (const { variable } of this.backbone.namedParameters()) variable.trainable = !frozen;
  }

  /**
   * The model `trainStep` trains for one batch: its loss is the classification loss of `labels`
   * (`[B]` int32 class indices), with label smoothing or BCE as `options` say.
   *
   * @example
   * await trainStep(classifier.lossModel(labels, { labelSmoothing: 0.1 }), adamw, images, { lrWd });
   */
  lossModel(labels: tf.Tensor1D, options: ClassificationLossOptions = {}): TrainableModel {
    return {
      namedParameters: () => this.namedParameters(),
      stateEntries: () => this.stateEntries(),
      train: (training?: boolean) => this.train(training),
      forward: (images: tf.Tensor4D) => tf.tidy(() => classificationLoss(this.logits(images), labels, this.numClasses, options)),
    };
  }

  /**
   * Loads backbone weights (official names, no prefix; a SparK state's `sparse_encoder.sp_cnn.` prefix is
   * removed first). A head in the file (`fc.*`, `head.*`) is loaded only when its shape fits; strict about
   * the backbone's entries.
   */
  loadBackboneState(state: ReadonlyMap<string, TorchTensorData>, { strict = true } = {}): LoadStateReport {
    const hasSparkPrefix = [...state.keys()].some((key) => key.startsWith(ENCODER_STATE_PREFIX));
    const backboneState = new Map<string, TorchTensorData>();
    for (const [key, value] of state) {
      if (hasSparkPrefix) {
        if (key.startsWith(ENCODER_STATE_PREFIX)) backboneState.set(key.slice(ENCODER_STATE_PREFIX.length), value);
      } else backboneState.set(key, value);
    }
    return loadTorchState(this.backbone, backboneState, { strict, caller: 'Classifier.loadBackboneState' });
  }

  /**
   * A classifier whose backbone is built from a weights file's architecture (`readWeightsFile`: our
   * `encoder.safetensors`, a SparK checkpoint, an official `.pth` encoder) and loaded with its weights; a
   * new head of `numClasses`.
   *
   * @example
   * const classifier = Classifier.fromWeights(readWeightsFile(bytes, { source: 'encoder.safetensors' }), { numClasses: 12, seed: 0 });
   */
  static fromWeights(file: WeightsFile, { numClasses, seed }: { numClasses: number; seed?: number }): Classifier {
    const { config } = weightsArchitecture(file);
    const classifier = new Classifier({ backbone: createBackboneFromConfig({ ...config, seed }), numClasses, seed });
    try {
      classifier.loadBackboneState(file.state);
    } catch (error) {
      classifier.dispose();
      throw error;
    }
    return classifier;
  }

  dispose(): void {
    this.backbone.dispose();
    this.head.dispose();
  }
}
