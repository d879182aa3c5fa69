// `sparkmim pretrain`: SparK pre-training of a convnet on a folder of images, with a config file and flags,
// progress on the terminal, previews, checkpoints, resume and Ctrl-C handling.
import { copyFile, mkdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { keepCount } from '@sparkmim/masking';
import { setupBackend, setupFastestBackend, type BackendInfo } from '@sparkmim/runtime';
import {
  AdamW,
  Lamb,
  NonFiniteLossError,
  Sgd,
  SparkModel,
  batchesPerEpoch,
  defaultBetas,
  deriveSeeds,
  paramGroupsFromVariables,
  sparkSchedule,
  type EpochMetrics,
  type Optimizer,
} from '@sparkmim/trainer';
import {
  ENCODER_WEIGHTS_FILE,
  CHECKPOINT_MANIFEST,
  ImageFolderError,
  ImageFolderSource,
  Trainer,
  initFromWeights,
  readCheckpointManifest,
  resumeFromCheckpoint,
  writeFileAtomic,
  type CheckpointManifest,
} from '@sparkmim/trainer/node';
import { UsageError } from '../errors';
import { oneLine } from './inputs';
import {
  CONFIG_FLAG_OPTIONS,
  CONFIG_KEYS,
  flagValues,
  formatConfig,
  readConfigFile,
  resolveConfig,
  warmupEpochsOf,
  type PretrainConfig,
} from './pretrain-config';
import { LOSS_CURVE_FILE, writeLossCurve } from './pretrain-loss-curve';
import { previewImages, writePreview } from './pretrain-preview';
import { ProgressReporter, formatDuration } from './pretrain-progress';

export const PRETRAIN_HELP = `usage: sparkmim pretrain --data FOLDER [options]
       sparkmim pretrain --config FILE [options]

SparK pre-training (masked image modelling) of a convnet on a folder of images (.jpg, .jpeg, .png, .webp,
searched recursively). Settings come from the defaults, then --config, then the flags; the resolved settings
are printed and saved as config.json in the run folder.

First run: --config apps/pretrain/configs/quickstart.json trains a small ResNet-18 on the 320 embedded sample
images (apps/pretrain/data/sample-images) at 96x96 for 4 epochs: about 7 minutes on 2 CPU cores.

  --config FILE            settings as JSON or YAML (.yaml, .yml), keys named as the flags in camelCase
                           (inputSize, batchSize, ...); an unknown key is an error; data and initWeights in a
                           config file are relative to the file (out stays relative to the current folder)
  --data FOLDER            the images
  --model NAME             resnet18, resnet34, resnet50 (default), resnet101, resnet152, resnet200,
                           convnext_tiny, convnext_small, convnext_base, convnext_large
  --stem-width N           ResNet: stem channels (default 64)
  --widths A,B,C,D         ResNet: channels of the four stages (default 64,128,256,512)
  --dims A,B,C,D           ConvNeXt: channels of the four stages
  --depths A,B,C,D         blocks of the four stages (ResNet layers, ConvNeXt stages), e.g. 1,1,1,1 for a
                           small resnet18 (default: the model's, e.g. 2,2,2,2 for resnet18)
  --decoder-width N        decoder channels at the smallest map (default 768)
  --input-size N           image size, a multiple of the model's downsample ratio, 32 (default 224)
  --mask-ratio X           fraction of patches hidden, in (0, 1) (default 0.6)
  --batch-size N           images per step (default 64)
  --epochs N               epochs of the whole run (default 1600)
  --base-lr X              learning rate per 256 images (default 2e-4); peak lr = base-lr x batch-size / 256
  --warmup-epochs N        linear warm-up (default 40, or epochs/40 rounded down for shorter runs)
  --weight-decay X         weight decay at the start (default 0.04), cosine to
  --weight-decay-end X     the weight decay at the end (default 0.2)
  --optimizer NAME         lamb (default), adamw or sgd; gradients clipped at norm 5
  --backend NAME           cpu, wasm, webgpu, tensorflow, tensorflow-gpu; default: the fastest available
  --seed N                 run seed: initialisation, masks, data order and augmentation (default 0)
  --out FOLDER             run folder (default runs/<model>-<date>-<time>; when resuming, the run resumed)
  --resume RUN             continue a run: its folder (or its checkpoint.json) gives the settings, weights,
                           optimiser state and position; flags still override (e.g. more --epochs)
  --init-weights FILE      start from these model weights (safetensors: a full SparK state dict or
                           encoder-only weights) at epoch 0
  --checkpoint-every N     also keep a copy of the checkpoint every N epochs in checkpoints/epoch-NNNN
                           (default 0: only the latest, rewritten after every epoch)
  --preview-every N        preview grid every N epochs and after the last (default 10; 0: only the last)
  -h, --help               this text

The run folder holds checkpoint.json with model.*.safetensors and optimizer.*.safetensors (the full
checkpoint, official SparK names), encoder.safetensors (the encoder alone, timm names, for fine-tuning),
metrics.jsonl (one JSON line per step and per epoch, and a summary), loss-curve.png (drawn at the end of
each run from metrics.jsonl: the loss of every step, light, and the mean of every epoch, dark, against the
iteration), previews/epoch-NNNN.png (rows: fixed images; columns: input, masked, reconstruction,
reconstruction with the visible patches) and config.json.

Ctrl-C once: finish the step, save a checkpoint and exit (continue with --resume); twice: quit at once.
`;

/** Images in each preview grid, and the seed of their order, augmentation and mask (the same every time). */
const PREVIEW_COUNT = 4;
const PREVIEW_SEED = 20230101;

/** What a resumed run starts from: its folder and manifest (settings in `config`). */
async function checkpointFolderOf(resume: string): Promise<{ dir: string; manifest: CheckpointManifest }> {
  let dir = resume;
  try {
    if (!(await stat(resume)).isDirectory()) dir = path.dirname(resume);
  } catch {
    throw new UsageError(`--resume: ${resume} does not exist (expected a run folder or its ${CHECKPOINT_MANIFEST})`);
  }
  try {
    return { dir, manifest: await readCheckpointManifest(dir) };
  } catch (error) {
    throw new UsageError(`--resume: ${oneLine((error as Error).message)}`);
  }
}

function defaultRunFolder(model: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return path.join('runs', `${model}-${stamp}`);
}

function buildModel(config: PretrainConfig, seed: number): SparkModel {
  const backbone: Record<string, unknown> = {};
  if (config.stemWidth !== undefined) backbone.stemWidth = config.stemWidth;
  if (config.widths !== undefined) backbone.channels = config.widths;
  if (config.dims !== undefined) backbone.dims = config.dims;
  if (config.depths !== undefined) backbone.depths = config.depths;
  let model: SparkModel;
  try {
    model = SparkModel.create(config.model, { backbone, decoderWidth: config.decoderWidth, maskRatio: config.maskRatio, seed });
  } catch (error) {
    const message = oneLine((error as Error).message).replace(/^(SparkModel\.create|createBackbone): /, '');
    if (message.startsWith('unknown model')) throw new UsageError(`--model: ${message}`);
    throw new UsageError(`--model ${config.model}: cannot build it: ${message.replace('option(s) channels', 'option(s) widths')}`);
  }
  const ratio = model.downsampleRatio;
  if (config.inputSize % ratio !== 0) {
    model.dispose();
    const lower = Math.floor(config.inputSize / ratio) * ratio;
    const suggestion = lower > 0 ? `${lower} or ${lower + ratio}` : `${ratio}`;
    throw new UsageError(`--input-size is ${config.inputSize}, which is not a multiple of ${config.model}'s downsample ratio ${ratio} (use ${suggestion})`);
  }
  // The mask must keep at least one patch and hide at least one, or there is nothing to encode or to learn.
  const grid = config.inputSize / ratio;
  let kept: number;
  try {
    kept = keepCount(grid, grid, config.maskRatio);
  } catch {
    kept = 0;
  }
  if (kept === 0 || kept === grid * grid) {
    model.dispose();
    throw new UsageError(
      `--input-size ${config.inputSize} gives a ${grid}x${grid} grid of ${ratio}-pixel patches, of which --mask-ratio ${config.maskRatio} ` +
        `${kept === 0 ? 'keeps none' : 'hides none'}: use a larger --input-size (e.g. ${Math.max(2, grid + 1) * ratio}) or another --mask-ratio`,
    );
  }
  return model;
}

function buildOptimizer(config: PretrainConfig, model: SparkModel): Optimizer {
  const groups = paramGroupsFromVariables(model.namedParameters());
  // SparK passes --clip 5 to every optimiser; betas follow the model family as in its arg_util.py.
  const betas = defaultBetas(config.model);
  if (config.optimizer === 'adamw') return new AdamW(groups, { betas, maxGradNorm: 5 });
  if (config.optimizer === 'sgd') return new Sgd(groups, { maxGradNorm: 5 });
  return new Lamb(groups, { betas, maxGradNorm: 5 });
}

/** Copies the latest checkpoint of `runDir` (rewritten every epoch) to a folder of its own. */
async function keepCheckpointCopy(runDir: string, target: string): Promise<void> {
  const manifest = await readCheckpointManifest(runDir);
  await mkdir(target, { recursive: true });
  for (const file of [manifest.files.model, manifest.files.optimizer, ENCODER_WEIGHTS_FILE]) {
    await copyFile(path.join(runDir, file), path.join(target, file)).catch((error: { code?: string }) => {
      if (error.code !== 'ENOENT' || file !== ENCODER_WEIGHTS_FILE) throw error;
    });
  }
  // The manifest last, as the trainer does: a folder with a manifest holds a whole checkpoint.
  await copyFile(path.join(runDir, CHECKPOINT_MANIFEST), path.join(target, CHECKPOINT_MANIFEST));
}

const epochTag = (epochsDone: number) => `epoch-${String(epochsDone).padStart(4, '0')}`;

/** Runs `sparkmim pretrain`; returns the exit code. */
export async function pretrainCommand(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      options: { ...CONFIG_FLAG_OPTIONS, config: { type: 'string' }, resume: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }).values;
  } catch (error) {
    throw new UsageError(`pretrain: ${oneLine((error as Error).message)} (run 'sparkmim pretrain --help')`);
  }
  if (values.help) {
    process.stdout.write(PRETRAIN_HELP);
    return 0;
  }

  // Settings: defaults < a resumed run's < the config file's < the flags.
  const layers: Parameters<typeof resolveConfig>[0] = [];
  let resumed: { dir: string; manifest: CheckpointManifest } | undefined;
  if (typeof values.resume === 'string') {
    if (values['init-weights'] !== undefined) throw new UsageError('--resume and --init-weights exclude each other: a resumed run has its weights already');
    resumed = await checkpointFolderOf(values.resume);
    const saved = Object.fromEntries(Object.entries(resumed.manifest.config).filter(([key]) => (CONFIG_KEYS as string[]).includes(key)));
    // The resumed run's weights come from its checkpoint, not from the file it was initialised with.
    delete saved.initWeights;
    layers.push({ values: saved, from: path.join(resumed.dir, CHECKPOINT_MANIFEST) });
  }
  if (typeof values.config === 'string') layers.push({ values: readConfigFile(values.config), from: values.config });
  layers.push({ values: flagValues(values), from: 'flag' });
  const config = resolveConfig(layers);
  if (config.data === undefined) throw new UsageError("pretrain needs --data FOLDER, a folder of images (run 'sparkmim pretrain --help')");
  config.out ??= resumed?.dir ?? defaultRunFolder(config.model);
  const out = config.out;

  const backend: BackendInfo = config.backend === 'auto' ? await setupFastestBackend() : await setupBackend(config.backend);
  if (!backend.canTrain) throw new UsageError(`--backend ${backend.name} cannot train (no gradients): use cpu, webgpu, tensorflow or tensorflow-gpu`);

  const seeds = deriveSeeds(config.seed);
  const model = buildModel(config, seeds.init);
  const disposables: { dispose(): void }[] = [model];
  try {
    let source: ImageFolderSource;
    let skippedWhileRunning = 0;
    let progress: ProgressReporter | undefined;
    // Files skipped while the folder is opened are reported once it opens: when none decodes, the
    // error alone (one line) says so.
    let heldWarnings: string[] | undefined = [];
    const warn = (line: string) => {
      progress?.clear();
      process.stderr.write(line);
    };
    try {
      source = await ImageFolderSource.open(config.data, {
        inputSize: config.inputSize,
        onSkip: (skipped) => {
          skippedWhileRunning++;
          const line = `sparkmim: skipped ${skipped.path}: ${oneLine(skipped.reason)}\n`;
          if (heldWarnings) heldWarnings.push(line);
          else warn(line);
        },
      });
    } catch (error) {
      if (error instanceof ImageFolderError) throw new UsageError(`--data: ${oneLine(error.message)}`);
      throw error;
    }
    heldWarnings.forEach(warn);
    heldWarnings = undefined;
    disposables.push(source);
    const optimizer = buildOptimizer(config, model);
    disposables.push(optimizer);

    const iterationsPerEpoch = batchesPerEpoch(source.size, { batchSize: config.batchSize });
    const warmupEpochs = warmupEpochsOf(config);
    let schedule: ReturnType<typeof sparkSchedule>;
    try {
      schedule = sparkSchedule({
      batchSize: config.batchSize,
      iterationsPerEpoch,
      epochs: config.epochs,
      warmupEpochs,
      baseLr: config.baseLr,
      weightDecay: config.weightDecay,
      weightDecayEnd: config.weightDecayEnd,
      });
    } catch (error) {
      throw new UsageError(`--warmup-epochs ${warmupEpochs} with --epochs ${config.epochs}: ${oneLine((error as Error).message)}`);
    }

    let manifest: CheckpointManifest | undefined;
    if (resumed) {
      try {
        manifest = await resumeFromCheckpoint(resumed.dir, { model, optimizer });
      } catch (error) {
        throw new UsageError(`--resume: ${resumed.dir} does not fit the settings (${oneLine((error as Error).message)})`);
      }
    } else if (config.initWeights !== undefined) {
      try {
        await initFromWeights(model, config.initWeights);
      } catch (error) {
        throw new UsageError(`--init-weights: ${oneLine((error as Error).message)}`);
      }
    }

    await mkdir(out, { recursive: true });
    await writeFileAtomic(path.join(out, 'config.json'), new TextEncoder().encode(JSON.stringify(config, CONFIG_KEYS, 2) + '\n'));
    process.stdout.write(`sparkmim pretrain: ${out}\n${formatConfig(config)}\n`);
    process.stdout.write(
      `backend ${backend.name}${backend.adapter?.description ? ` (${backend.adapter.description})` : ''}; ${source.size} images, ` +
        `${iterationsPerEpoch} steps per epoch; peak lr ${schedule.peakLr.toExponential(2)}, ${warmupEpochs} warm-up epochs\n`,
    );
    const startEpoch = manifest?.progress.epoch ?? 0;
    if (manifest && (startEpoch >= config.epochs)) {
      process.stdout.write(`nothing to do: ${resumed!.dir} already ran ${startEpoch} of ${config.epochs} epochs (raise --epochs to continue)\n`);
      return 0;
    }
    if (manifest) {
      const { epoch, iterationInEpoch } = manifest.progress;
      process.stdout.write(`resuming ${resumed!.dir} at epoch ${epoch + 1}${iterationInEpoch ? `, batch ${iterationInEpoch + 1}` : ''}\n`);
    }

    const previews = await previewImages(source, PREVIEW_COUNT, PREVIEW_SEED);
    disposables.push(previews);
    const previewFiles: string[] = [];

    progress = new ProgressReporter(process.stdout, config.epochs, iterationsPerEpoch, config.epochs * iterationsPerEpoch);
    const epochs: EpochMetrics[] = [];
    const trainer = new Trainer({
      model,
      optimizer,
      data: source,
      batchSize: config.batchSize,
      epochs: config.epochs,
      schedule,
      seed: config.seed,
      resume: manifest,
      checkpointDir: out,
      config: { ...config },
      metricsFile: path.join(out, 'metrics.jsonl'),
      onStep: (metrics) => progress!.step(metrics),
      onEpochEnd: async (metrics) => {
        epochs.push(metrics);
        const epochsDone = metrics.epoch + 1;
        progress!.epoch(metrics, epochsDone * iterationsPerEpoch);
        if (config.checkpointEvery > 0 && epochsDone % config.checkpointEvery === 0) {
          await keepCheckpointCopy(out, path.join(out, 'checkpoints', epochTag(epochsDone)));
        }
        if ((config.previewEvery > 0 && epochsDone % config.previewEvery === 0) || epochsDone === config.epochs) {
          previewFiles.push(await writePreview(model, previews, PREVIEW_SEED, path.join(out, 'previews', `${epochTag(epochsDone)}.png`)));
        }
      },
    });

    // First Ctrl-C: finish the step, save, return; a second one: quit at once.
    let interrupts = 0;
    const onInterrupt = () => {
      interrupts++;
      progress!.clear();
      if (interrupts === 1) {
        process.stderr.write('sparkmim: stopping after this step and saving a checkpoint (Ctrl-C again to quit at once)\n');
        trainer.stop();
      } else {
        process.stderr.write('sparkmim: quit without saving\n');
        process.exit(130);
      }
    };
    process.on('SIGINT', onInterrupt);
    const started = performance.now();
    let result;
    try {
      result = await trainer.run();
    } catch (error) {
      progress.clear();
      if (error instanceof NonFiniteLossError) throw new UsageError(oneLine(error.message));
      throw error;
    } finally {
      process.off('SIGINT', onInterrupt);
    }
    const seconds = (performance.now() - started) / 1000;
    // From the metrics file, not this run's steps alone: a resumed run's curve covers the whole run.
    let lossCurve: string | undefined;
    try {
      lossCurve = await writeLossCurve(path.join(out, 'metrics.jsonl'), path.join(out, LOSS_CURVE_FILE));
    } catch (error) {
      process.stderr.write(`sparkmim: could not draw ${LOSS_CURVE_FILE}: ${oneLine((error as Error).message)}\n`);
    }

    const skipped = result.skipped?.length ?? skippedWhileRunning;
    const images = result.steps * config.batchSize;
    const meanLoss = (metrics: EpochMetrics | undefined) => (metrics ? metrics.meanLoss.toFixed(4) : '-');
    const { epoch, iterationInEpoch, iteration } = result.progress;
    process.stdout.write(
      `${result.stopped ? 'stopped' : 'done'}: ${epochs.length} epoch(s) run (now at ${epoch} of ${config.epochs}), ${result.steps} steps, ` +
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
    return 0;
  } finally {
    for (const item of disposables.reverse()) item.dispose();
  }
}
