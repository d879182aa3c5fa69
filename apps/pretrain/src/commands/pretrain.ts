// `sparkmim pretrain`: SparK pre-training of a convnet on a folder of images, with a config file and flags,
// progress on the terminal, previews, checkpoints, resume and Ctrl-C handling. The steps live in pretrain/:
// settings (flags, config, resumed run), run-folder (lock, --overwrite, snapshots), setup (data, schedule,
// starting weights), backend (quiet probing), run (signals, errors), report (the closing lines).
import * as path from 'node:path';
import type { BackendInfo } from '@sparkmim/runtime';
import { batchesPerEpoch, deriveSeeds, type EpochMetrics } from '@sparkmim/trainer';
import { Trainer, writeFileAtomic } from '@sparkmim/trainer/node';
import { oneLine } from './inputs';
import { setUpTrainingBackend, wasmThreadsForRun } from './pretrain/backend';
import { reportRun } from './pretrain/report';
import { checkRunFolder, keepCheckpointCopy, openRunFolder, type RunLock } from './pretrain/run-folder';
import { trainUntilDoneOrStopped } from './pretrain/run';
import { readSettings } from './pretrain/settings';
import { checkResumePosition, openData, runSchedule, savedSettings, startingWeights } from './pretrain/setup';
import { formatConfig, inputSizeOf } from './pretrain-config';
import { LOSS_CURVE_FILE, writeLossCurve } from './pretrain-loss-curve';
import { buildModel, buildOptimizer } from './pretrain-model';
import { previewImages, writePreview } from './pretrain-preview';
import { ProgressReporter } from './pretrain-progress';

export const PRETRAIN_HELP = `usage: sparkmim pretrain --data FOLDER [options]
       sparkmim pretrain --config FILE [options]

SparK pre-training (masked image modelling) of a convnet on a folder of images (.jpg, .jpeg, .png, .webp,
searched recursively). Settings come from the defaults, then --config, then the flags; the resolved settings
are printed and saved as config.json in the run folder.

First run: --config apps/pretrain/configs/quickstart.json trains a small ResNet-18 on the 320 embedded sample
images (apps/pretrain/data/sample-images) at 96x96 for 4 epochs: about 30 seconds on wasm, 2 CPU cores.

  --config FILE            settings as JSON or YAML (.yaml, .yml), keys named as the flags in camelCase
                           (inputSize, batchSize, ...); an unknown key is an error; data and initWeights in a
                           config file are relative to the file (out stays relative to the current folder)
  --data FOLDER            the images
  --model NAME|FILE        resnet18, resnet34, resnet50 (default), resnet101, resnet152, resnet200,
                           convnext_tiny, convnext_small, convnext_base, convnext_large; or your own convnet:
                           an ES module (./my-convnet.js) whose default export is a Backbone or a function
                           ({ tf, sparseOps, backbones, seed }) => Backbone (build it from those: they are
                           this program's copies); see the backbones package README
  --stem-width N           ResNet: stem channels (default 64)
  --widths A,B,C,D         ResNet: channels of the four stages (default 64,128,256,512)
  --dims A,B,C,D           ConvNeXt: channels of the four stages
  --depths A,B,C,D         blocks of the four stages (ResNet layers, ConvNeXt stages), e.g. 1,1,1,1 for a
                           small resnet18 (default: the model's, e.g. 2,2,2,2 for resnet18)
  --decoder-width N        decoder channels at the smallest map (default 768)
  --input-size N|WxH       image size: N for N x N (default 224) or WIDTHxHEIGHT, e.g. 320x192; sides
                           multiples of the model's downsample ratio, 32
  --mask-ratio X           fraction of patches hidden, in (0, 1) (default 0.6)
  --batch-size N           images per step (default 64)
  --epochs N               epochs of the whole run (default 1600)
  --base-lr X              learning rate per 256 images (default 2e-4); peak lr = base-lr x batch-size / 256
  --warmup-epochs N        linear warm-up (default 40, or epochs/40 rounded down for shorter runs)
  --weight-decay X         weight decay at the start (default 0.04), cosine to
  --weight-decay-end X     the weight decay at the end (default 0.2)
  --optimizer NAME         lamb (default), adamw or sgd
  --drop-path X            stochastic depth of the encoder, in [0, 1) (default: the model's, below)
  --beta2 X                the optimiser's second beta, SparK's --ada (default: the model's, below)
  --clip X                 clip gradients to this global norm; 0 turns clipping off (default 5)
  --densify-norm NAME      bn, ln or none: the norm of the densify layers (default: the model's, below)
  --sparse-path NAME       rows, dense or auto: the encoder on the visible sites only as rows (ResNets and
                           ConvNeXts; ~2x faster on wasm at 224), or masked ops over whole maps; auto
                           (default): rows for a ResNet or ConvNeXt of 64+ channels (not the quickstart's)
                           on wasm or cpu, else dense
  --backend NAME           cpu, wasm, webgpu, tensorflow, tensorflow-gpu; default: the fastest available
  --seed N                 run seed: initialisation, masks, data order and augmentation (default 0)
  --out FOLDER             run folder (default runs/<model>-<date>-<time>); a folder that holds a run is
                           refused (resume it, or pass --overwrite)
  --overwrite              replace the run in --out: its checkpoint, metrics, previews are deleted first
  --resume RUN             continue a run in its folder RUN (or the folder of RUN/checkpoint.json, e.g. a
                           checkpoints/epoch-NNNN snapshot): settings, weights, optimiser state and position
                           come from it and it is the folder written; flags still override (e.g. --epochs)
  --init-weights FILE      start from these model weights (safetensors: a full SparK state dict or
                           encoder-only weights) at epoch 0
  --checkpoint-every N     also keep a copy of the checkpoint every N epochs in checkpoints/epoch-NNNN
                           (default 0: only the latest, rewritten after every epoch)
  --preview-every N        preview grid every N epochs and after the last (default 10; 0: only the last)
  --verbose                show what probing the backends printed (Dawn's messages)
  -h, --help               this text

The run folder holds checkpoint.json with model.*.safetensors and optimizer.*.safetensors (the full
checkpoint, official SparK names), encoder.safetensors (the encoder alone, timm names, for fine-tuning),
metrics.jsonl (one JSON line per step and per epoch, and a summary), loss-curve.png (drawn at the end of
each run from metrics.jsonl: the loss of every step, light, and the mean of every epoch, dark, against the
iteration), previews/epoch-NNNN.png (rows: fixed images; columns: input, masked, reconstruction,
reconstruction with the visible patches) and config.json.

Defaults per model, as the official SparK code sets them (models/__init__.py, utils/arg_util.py):
  model              drop-path  beta2  clip  densify-norm
  resnet18, 34       0          0.95   5     bn
  resnet50           0.05       0.95   5     bn
  resnet101          0.08       0.95   5     bn
  resnet152          0.1        0.95   5     bn
  resnet200          0.15       0.95   5     bn
  convnext_tiny      0          0.999  5     ln
  convnext_small     0.2        0.999  5     ln
  convnext_base      0.3        0.999  5     ln
  convnext_large     0.4        0.999  5     ln
  a module file      0          0.999  5     bn
config.json records the values used.

Paths saved with a run (data, initWeights in config.json and checkpoint.json) are relative to its folder.
A run holds run.lock (its pid) while it runs: a second run on the same folder is refused; a lock whose
process is gone (killed) is taken over. Every checkpoint is written file by file, its manifest last: a kill
at any moment leaves the previous checkpoint whole, and --resume continues from it.

Ctrl-C or SIGTERM once: finish the step, save a checkpoint and exit (continue with --resume); twice: quit
at once without saving.
`;

/** Images in each preview grid, and the seed of their order, augmentation and mask (the same every time). */
const PREVIEW_COUNT = 4;
const PREVIEW_SEED = 20230101;

const epochTag = (epochsDone: number) => `epoch-${String(epochsDone).padStart(4, '0')}`;

/** Runs `sparkmim pretrain`; returns the exit code. */
export async function pretrainCommand(argv: string[]): Promise<number> {
  // Everything the user gave is checked first: flags, config, resumed run, run folder, data; only then is a
  // backend set up and a file written.
  const settings = await readSettings(argv, PRETRAIN_HELP);
  if (!settings) return 0;
  const { config, out, resumed } = settings;
  await checkRunFolder(out, { resume: resumed !== undefined, overwrite: settings.overwrite });

  const disposables: { dispose(): void }[] = [];
  let lock: RunLock | undefined;
  try {
    let progress: ProgressReporter | undefined;
    const warn = (line: string) => {
      progress?.clear();
      process.stderr.write(line);
    };
    const data = await openData(config, warn);
    const { source } = data;
    disposables.push(source);
    const iterationsPerEpoch = batchesPerEpoch(source.size, { batchSize: config.batchSize });
    if (resumed) checkResumePosition(resumed, iterationsPerEpoch, source.size, config);
    const { schedule, warmupEpochs } = runSchedule(config, iterationsPerEpoch);

    const backend: BackendInfo = await setUpTrainingBackend(config.backend, {
      verbose: settings.verbose,
      threads: wasmThreadsForRun({ ...config, inputSize: inputSizeOf(config) }),
    });
    const model = await buildModel(config, deriveSeeds(config.seed).init);
    disposables.push(model);
    data.showHeldWarnings();
    const optimizer = buildOptimizer(config, model);
    disposables.push(optimizer);

    // From here on the run folder is this process's: created, locked, cleared with --overwrite.
    lock = await openRunFolder(out, { resume: resumed !== undefined, overwrite: settings.overwrite });
    const manifest = await startingWeights(settings, model, optimizer);
    const saved = savedSettings(config, out);
    await writeFileAtomic(path.join(out, 'config.json'), new TextEncoder().encode(`${JSON.stringify(saved, null, 2)}\n`));
    process.stdout.write(`sparkmim pretrain: ${out}\n${formatConfig(config)}\n`);
    process.stdout.write(
      `backend ${backend.name}${backend.adapter?.description ? ` (${backend.adapter.description})` : ''}; ${source.size} images, ` +
        `${iterationsPerEpoch} steps per epoch; peak lr ${schedule.peakLr.toExponential(2)}, ${warmupEpochs} warm-up epochs` +
        `${(backend.threads ?? 1) > 1 ? `; ${backend.threads} wasm threads` : ''}\n`,
    );
    if (manifest && manifest.progress.epoch >= config.epochs) {
      process.stdout.write(`nothing to do: ${out} already ran ${manifest.progress.epoch} of ${config.epochs} epochs (raise --epochs to continue)\n`);
      return 0;
    }
    if (manifest) {
      const { epoch, iterationInEpoch } = manifest.progress;
      process.stdout.write(`resuming ${out} at epoch ${epoch + 1}${iterationInEpoch ? `, batch ${iterationInEpoch + 1}` : ''}\n`);
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
      config: saved,
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

    const started = performance.now();
    const result = await trainUntilDoneOrStopped(trainer, out, () => progress!.clear());
    const seconds = (performance.now() - started) / 1000;
    // From the metrics file, not this run's steps alone: a resumed run's curve covers the whole run.
    let lossCurve: string | undefined;
    try {
      lossCurve = await writeLossCurve(path.join(out, 'metrics.jsonl'), path.join(out, LOSS_CURVE_FILE));
    } catch (error) {
      process.stderr.write(`sparkmim: could not draw ${LOSS_CURVE_FILE}: ${oneLine((error as Error).message)}\n`);
    }
    reportRun({
      result,
      out,
      epochsOfRun: config.epochs,
      batchSize: config.batchSize,
      epochs,
      seconds,
      skippedCount: data.skippedCount(),
      lossCurve,
      previewFiles,
    });
    return 0;
  } finally {
    for (const item of disposables.reverse()) item.dispose();
    lock?.release();
  }
}
