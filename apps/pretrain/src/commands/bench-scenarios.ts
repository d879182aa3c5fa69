// The named scenarios of `sparkmim bench`. Shapes follow issue 17's table: the quickstart model, the
// ResNet and ConvNeXt steps at 224 (SparK's ImageNet setting, decoder width 768), dense encoder inference.

/** One thing `sparkmim bench` measures. */
export interface BenchScenario {
  name: string;
  /**
   * `step`: a full SparK training step (forward, backward, AdamW); `inference`: the dense encoder alone;
   * `profile`: one step after a warm-up, its time split by kernel (see `profileScenario` in bench.ts).
   */
  kind: 'step' | 'inference' | 'profile';
  model: string;
  /** Backbone options, as `SparkModel.create` takes them (`stemWidth`, `channels`, `dims`, `depths`). */
  backbone?: Record<string, unknown>;
  decoderWidth?: number;
  inputSize: number;
  batch: number;
  /** Timed repetitions after one untimed warm-up (which also measures peak memory). */
  steps: number;
  description: string;
}

/** The quickstart's model (apps/pretrain/configs/quickstart.json), which most small scenarios time. */
const QUICKSTART_MODEL = {
  model: 'resnet18',
  backbone: { stemWidth: 8, channels: [8, 16, 32, 64], depths: [1, 1, 1, 1] },
  decoderWidth: 32,
} as const satisfies Pick<BenchScenario, 'model' | 'backbone' | 'decoderWidth'>;

export const BENCH_SCENARIOS: readonly BenchScenario[] = [
  {
    name: 'quickstart',
    kind: 'step',
    ...QUICKSTART_MODEL,
    inputSize: 96,
    batch: 8,
    steps: 5,
    description: 'the quickstart model (configs/quickstart.json): ResNet-18 1,1,1,1, widths 8-64, decoder 32, 96x96, batch 8',
  },
  {
    name: 'resnet18-224',
    kind: 'step',
    model: 'resnet18',
    decoderWidth: 768,
    inputSize: 224,
    batch: 8,
    steps: 1,
    description: 'ResNet-18, 224x224, batch 8, decoder 768',
  },
  {
    name: 'resnet50-224',
    kind: 'step',
    model: 'resnet50',
    decoderWidth: 768,
    inputSize: 224,
    batch: 8,
    steps: 1,
    description: 'ResNet-50, 224x224, batch 8, decoder 768',
  },
  {
    name: 'convnext-t-224',
    kind: 'step',
    model: 'convnext_tiny',
    decoderWidth: 768,
    inputSize: 224,
    batch: 8,
    steps: 1,
    description: 'ConvNeXt-T, 224x224, batch 8, decoder 768',
  },
  {
    name: 'resnet50-infer-224',
    kind: 'inference',
    model: 'resnet50',
    inputSize: 224,
    batch: 8,
    steps: 3,
    description: 'dense ResNet-50 encoder forward (no mask), 224x224, batch 8',
  },
  {
    name: 'ci-step',
    kind: 'step',
    ...QUICKSTART_MODEL,
    inputSize: 64,
    batch: 2,
    steps: 1,
    description: 'CI-sized: the quickstart model at 64x64, decoder 32, batch 2',
  },
  {
    name: 'ci-convnext-step',
    kind: 'step',
    model: 'convnext_tiny',
    backbone: { dims: [8, 16, 32, 64], depths: [1, 1, 1, 1] },
    decoderWidth: 32,
    inputSize: 64,
    batch: 2,
    steps: 1,
    description: 'CI-sized: a ConvNeXt with depths 1,1,1,1 and dims 8-64 at 64x64, decoder 32, batch 2',
  },
  {
    name: 'ci-infer',
    kind: 'inference',
    model: QUICKSTART_MODEL.model,
    backbone: QUICKSTART_MODEL.backbone,
    inputSize: 64,
    batch: 2,
    steps: 2,
    description: 'CI-sized: dense encoder inference of the quickstart model at 64x64, batch 2',
  },
  {
    name: 'profile',
    kind: 'profile',
    ...QUICKSTART_MODEL,
    inputSize: 96,
    batch: 8,
    steps: 1,
    description: 'per-kernel time of one quickstart step (GPU timestamps on webgpu, wall time per kernel on cpu/wasm)',
  },
  {
    name: 'resnet18-profile-224',
    kind: 'profile',
    model: 'resnet18',
    decoderWidth: 768,
    inputSize: 224,
    batch: 8,
    steps: 1,
    description: "per-kernel time of one SparK ResNet-18 step, 224x224, batch 8 (issue 17's CPU setting)",
  },
  {
    name: 'resnet50-profile-224',
    kind: 'profile',
    model: 'resnet50',
    decoderWidth: 768,
    inputSize: 224,
    batch: 32,
    steps: 1,
    description: 'per-kernel time of one SparK ResNet-50 step, 224x224, batch 32 (the official throughput setting; for a GPU)',
  },
  {
    name: 'convnext-t-profile-224',
    kind: 'profile',
    model: 'convnext_tiny',
    decoderWidth: 768,
    inputSize: 224,
    batch: 32,
    steps: 1,
    description: 'per-kernel time of one SparK ConvNeXt-T step, 224x224, batch 32 (for a GPU)',
  },
  {
    name: 'ci-profile',
    kind: 'profile',
    ...QUICKSTART_MODEL,
    inputSize: 64,
    batch: 2,
    steps: 1,
    description: 'CI-sized: per-kernel time of one step of the quickstart model at 64x64, batch 2',
  },
];

/** What `--ci` runs: every CI-sized scenario on cpu and wasm, paired (under 2 minutes on 2 cores). */
export const CI_SCENARIOS = ['ci-step', 'ci-convnext-step', 'ci-infer'];
