import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { setupBackend } from '@sparkmim/runtime';
import { SparkModel, decodeSafetensors } from '@sparkmim/trainer';
import { runCli } from '../testing/run-cli';
import { LOSS_CURVE_SIZE, drawLossCurve, lossCurveScale, lossHistory } from './pretrain-loss-curve';

let folder: string;
let images: string;
/** Two of the images: one step of batch 2 per epoch, for the runs that only need to run. */
let few: string;
beforeAll(async () => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-pretrain-'));
  images = path.join(folder, 'images');
  fs.mkdirSync(images);
  // Seven 64x64 gradients, each with its own colours, and a broken file: 4 steps of batch 2 per epoch.
  fs.writeFileSync(path.join(images, 'broken.png'), 'not a png');
  for (let i = 0; i < 7; i++) {
    const pixels = Buffer.alloc(64 * 64 * 3);
    for (let p = 0; p < 64 * 64; p++) {
      const x = p % 64;
      const y = Math.floor(p / 64);
      pixels[3 * p] = (4 * x + 30 * i) & 255;
      pixels[3 * p + 1] = (4 * y) & 255;
      pixels[3 * p + 2] = (8 * (x ^ y) + 10 * i) & 255;
    }
    await sharp(pixels, { raw: { width: 64, height: 64, channels: 3 } })
      .png()
      .toFile(path.join(images, `image${i}.png`));
  }
  few = path.join(folder, 'few');
  fs.mkdirSync(few);
  for (const name of ['image0.png', 'image1.png']) fs.copyFileSync(path.join(images, name), path.join(few, name));
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

// resnet18 with tiny widths and the narrowest decoder LightDecoder allows: ~0.4 s a step in plain node.
const TINY = { model: 'resnet18', stemWidth: 4, widths: [4, 8, 8, 8], decoderWidth: 32, inputSize: 64 };

/** Settings as flags: `{ batchSize: 2, widths: [4, 8] }` → `--batch-size 2 --widths 4,8`. */
function flagsOf(settings: Record<string, unknown>): string[] {
  return Object.entries(settings).flatMap(([key, value]) => [`--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, String(value)]);
}

// TINY with one block per stage, on the two images in batches of 2: one quick step per epoch (and at least
// two epochs: the schedule needs two steps).
const QUICK = { ...TINY, depths: [1, 1, 1, 1], batchSize: 2, backend: 'cpu' };

function writeJson(name: string, value: unknown): string {
  const file = path.join(folder, name);
  fs.writeFileSync(file, JSON.stringify(value));
  return file;
}

function writeText(name: string, text: string): string {
  const file = path.join(folder, name);
  fs.writeFileSync(file, text);
  return file;
}

function readJsonLines(file: string): { type: string; [key: string]: unknown }[] {
  return fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
}

describe('sparkmim pretrain [cpu]', () => {
  it('trains from a config file and flags, writes the run folder, and resumes for the remaining epochs only', async () => {
    const out = path.join(folder, 'run');
    // The config asks for batches of 4; the flag overrides it.
    const config = writeJson('tiny.json', { ...TINY, batchSize: 4, epochs: 1, backend: 'cpu', previewEvery: 1 });
    const first = await runCli(['pretrain', '--config', config, '--data', images, '--batch-size', '2', '--out', out]);
    expect(first.stderr).toMatch(/^sparkmim: skipped .*broken\.png: .*\n$/);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^ {2}batchSize +2$/m);
    expect(first.stdout).toMatch(/^epoch 1\/1 {2}loss \d\.\d{4} \(mean\) {2}lr .* img\/s .*ETA/m);
    expect(first.stdout).toMatch(/^done: 1 epoch\(s\) run \(now at 1 of 1\), 4 steps, mean loss .* 1 files skipped, .* images\/s$/m);

    const saved = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(saved).toMatchObject({ ...TINY, batchSize: 2, epochs: 1, data: images, optimizer: 'lamb', maskRatio: 0.6 });
    // The folder is where the run is, not a setting: a resumed run writes the folder resumed.
    expect(saved.out).toBeUndefined();
    const manifest = JSON.parse(fs.readFileSync(path.join(out, 'checkpoint.json'), 'utf8'));
    expect(manifest.progress).toEqual({ epoch: 1, iterationInEpoch: 0, iteration: 4 });
    for (const file of [manifest.files.model, manifest.files.optimizer]) expect(fs.existsSync(path.join(out, file))).toBe(true);
    const encoder = decodeSafetensors(new Uint8Array(fs.readFileSync(path.join(out, 'encoder.safetensors'))));
    expect(encoder.tensors.get('conv1.weight')?.shape).toEqual([4, 3, 7, 7]);
    expect(readJsonLines(path.join(out, 'metrics.jsonl')).map((line) => line.type)).toEqual(['step', 'step', 'step', 'step', 'epoch', 'summary']);
    const preview = await sharp(path.join(out, 'previews', 'epoch-0001.png')).metadata();
    // Four images in rows, four pictures in columns, 2-pixel gaps; 64-pixel inputs shown twice as large.
    expect({ format: preview.format, width: preview.width, height: preview.height }).toEqual({
      format: 'png',
      width: 4 * 128 + 5 * 2,
      height: 4 * 128 + 5 * 2,
    });
    const curve = await sharp(path.join(out, 'loss-curve.png')).metadata();
    expect({ format: curve.format, width: curve.width, height: curve.height }).toEqual({ format: 'png', ...LOSS_CURVE_SIZE });
    expect(first.stdout).toMatch(
      /^run folder .*: checkpoint\.json \(full checkpoint\), encoder\.safetensors, metrics\.jsonl, loss-curve\.png, config\.json, previews\/ \(last: epoch-0001\.png\)$/m,
    );

    // The settings come from the run; only the epoch that remains runs.
    const resumed = await runCli(['pretrain', '--resume', out, '--epochs', '2']);
    expect(resumed.stderr).toMatch(/^sparkmim: skipped .*broken\.png: .*\n$/);
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toContain(`resuming ${out} at epoch 2\n`);
    expect(resumed.stdout).toMatch(/^done: 1 epoch\(s\) run \(now at 2 of 2\), 4 steps,/m);
    expect(resumed.stdout).not.toMatch(/^epoch 1\/2/m);
    const lines = readJsonLines(path.join(out, 'metrics.jsonl'));
    expect(lines.filter((line) => line.type === 'step').map((line) => line.iteration)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'checkpoint.json'), 'utf8')).progress).toEqual({ epoch: 2, iterationInEpoch: 0, iteration: 8 });
    expect(fs.existsSync(path.join(out, 'previews', 'epoch-0002.png'))).toBe(true);
    // The loss curve is redrawn from metrics.jsonl: it covers both runs, each step on the curve.
    const history = lossHistory(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8'));
    expect(history.steps.map((step) => step.iteration)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const { data: curvePixels, info } = await sharp(path.join(out, 'loss-curve.png')).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([LOSS_CURVE_SIZE.width, LOSS_CURVE_SIZE.height, 3]);
    const scale = lossCurveScale(history);
    for (const { iteration, loss } of history.steps) {
      const at = (scale.y(loss) * info.width + scale.x(iteration)) * 3;
      expect({ iteration, rgb: [...curvePixels.subarray(at, at + 3)] }).not.toEqual({ iteration, rgb: [255, 255, 255] });
    }
    expect(Buffer.compare(curvePixels, drawLossCurve(history))).toBe(0);

    // Nothing left to run.
    const again = await runCli(['pretrain', '--resume', out]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to do');
  }, 240_000);

  it('reads a YAML config: data and initWeights relative to the file, out relative to the current folder', async () => {
    const configs = path.join(folder, 'configs');
    fs.mkdirSync(configs, { recursive: true });
    const yamlFile = path.join(configs, 'quick.yaml');
    fs.writeFileSync(
      yamlFile,
      [
        '# two quick epochs',
        'data: ../few',
        'model: resnet18',
        'stemWidth: 4',
        'widths: [4, 8, 8, 8]',
        'depths: 1,1,1,1',
        'decoderWidth: 32',
        'inputSize: 64',
        'batchSize: 2',
        'epochs: 2',
        'baseLr: 3e-4',
        'backend: cpu',
        'out: yaml-run',
        '',
      ].join('\n'),
    );
    const cwd = fs.mkdtempSync(path.join(folder, 'cwd-'));
    const before = process.cwd();
    process.chdir(cwd);
    let result: Awaited<ReturnType<typeof runCli>>;
    try {
      result = await runCli(['pretrain', '--config', path.relative(cwd, yamlFile)]);
    } finally {
      process.chdir(before);
    }
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const saved = JSON.parse(fs.readFileSync(path.join(cwd, 'yaml-run', 'config.json'), 'utf8'));
    expect(saved).toMatchObject({ ...TINY, depths: [1, 1, 1, 1], batchSize: 2, epochs: 2, baseLr: 3e-4 });
    // Saved relative to the run folder.
    expect(path.resolve(cwd, 'yaml-run', saved.data)).toBe(few);
    expect(fs.existsSync(path.join(configs, 'yaml-run'))).toBe(false);

    // initWeights too is looked for beside the config file (here it is missing: the message names where).
    const withWeights = path.join(configs, 'weights.yml');
    fs.writeFileSync(withWeights, fs.readFileSync(yamlFile, 'utf8').replace('out: yaml-run', 'initWeights: weights/none.safetensors'));
    const missing = await runCli(['pretrain', '--config', withWeights]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^sparkmim: --init-weights: .*\n$/);
    expect(missing.stderr).toContain(path.join(configs, 'weights', 'none.safetensors'));
  }, 120_000);

  it('builds --depths 1,1,1,1 (one block per stage), and a resumed run rebuilds those depths from its config', async () => {
    const out = path.join(folder, 'depths');
    const first = await runCli(['pretrain', '--data', few, ...flagsOf(QUICK), '--epochs', '2', '--out', out]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^ {2}depths +1,1,1,1$/m);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).depths).toEqual([1, 1, 1, 1]);
    const encoder = decodeSafetensors(new Uint8Array(fs.readFileSync(path.join(out, 'encoder.safetensors'))));
    const blocks = [...new Set([...encoder.tensors.keys()].map((key) => /^(layer\d\.\d+)\./.exec(key)?.[1]).filter(Boolean))];
    expect(blocks).toEqual(['layer1.0', 'layer2.0', 'layer3.0', 'layer4.0']);

    // Without the saved depths, the resumed run would build resnet18's 2,2,2,2 and its checkpoint would not fit.
    const resumed = await runCli(['pretrain', '--resume', out, '--epochs', '3']);
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    expect(resumed.stdout).toMatch(/^ {2}depths +1,1,1,1$/m);
    expect(resumed.stdout).toMatch(/^done: 1 epoch\(s\) run \(now at 3 of 3\), 1 steps,/m);
  }, 120_000);

  it('--init-weights starts from those weights', async () => {
    await setupBackend('cpu');
    const start = SparkModel.create('resnet18', {
      backbone: { depths: [1, 1, 1, 1], stemWidth: 4, channels: [4, 8, 8, 8] },
      decoderWidth: 32,
      seed: 7,
    });
    const weights = path.join(folder, 'init.safetensors');
    try {
      fs.writeFileSync(weights, await start.toSafetensors());
    } finally {
      start.dispose();
    }
    const out = path.join(folder, 'init');
    // A learning rate so small that the two steps leave the weights where they started, to float precision;
    // the run's own initialisation (seed 0, not 7) is far from them.
    const result = await runCli([
      'pretrain',
      '--data',
      few,
      ...flagsOf(QUICK),
      '--epochs',
      '2',
      '--base-lr',
      '1e-9',
      '--init-weights',
      weights,
      '--out',
      out,
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).initWeights).toBe(weights);
    const initial = decodeSafetensors(new Uint8Array(fs.readFileSync(weights))).tensors;
    const trained = decodeSafetensors(new Uint8Array(fs.readFileSync(path.join(out, 'encoder.safetensors')))).tensors;
    const convs = [...trained].filter(([, tensor]) => tensor.shape.length === 4);
    expect(convs.length).toBeGreaterThanOrEqual(9);
    for (const [key, tensor] of convs) {
      const expected = initial.get(`sparse_encoder.sp_cnn.${key}`)!.data as Float32Array;
      const actual = tensor.data as Float32Array;
      let worst = 0;
      for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
      // Shows the difference when it is too large.
      expect({ key, differenceOver1e6: worst < 1e-6 ? 0 : worst }).toEqual({ key, differenceOver1e6: 0 });
    }
  }, 120_000);

  it('--checkpoint-every 2 keeps a whole checkpoint in checkpoints/epoch-0002 of 3 epochs, and no other', async () => {
    const out = path.join(folder, 'every');
    const result = await runCli([
      'pretrain',
      '--data',
      few,
      ...flagsOf(QUICK),
      '--epochs',
      '3',
      '--checkpoint-every',
      '2',
      '--preview-every',
      '0',
      '--out',
      out,
    ]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    // Not epoch 1, not the last one (3): only the multiples of 2.
    expect(fs.readdirSync(path.join(out, 'checkpoints'))).toEqual(['epoch-0002']);
    const copy = path.join(out, 'checkpoints', 'epoch-0002');
    const manifest = JSON.parse(fs.readFileSync(path.join(copy, 'checkpoint.json'), 'utf8'));
    expect(manifest.progress).toEqual({ epoch: 2, iterationInEpoch: 0, iteration: 2 });
    expect(fs.readdirSync(copy).sort()).toEqual(['checkpoint.json', 'encoder.safetensors', manifest.files.model, manifest.files.optimizer].sort());
    // A copy of epoch 2, not of the end: its weights are not those of epoch 3.
    const encoderBytes = (dir: string) => fs.readFileSync(path.join(dir, 'encoder.safetensors'));
    expect(encoderBytes(copy).equals(encoderBytes(out))).toBe(false);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'checkpoint.json'), 'utf8')).progress.epoch).toBe(3);
  }, 120_000);

  it('stops at the first Ctrl-C with a checkpoint and a message', async () => {
    const out = path.join(folder, 'interrupted');
    const before = new Set(process.listeners('SIGINT'));
    const running = runCli([
      'pretrain',
      '--data',
      images,
      ...Object.entries(TINY).flatMap(([key, value]) => [`--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, String(value)]),
      '--batch-size',
      '2',
      '--epochs',
      '3',
      '--backend',
      'cpu',
      '--out',
      out,
    ]);
    // Once the first step is written, press Ctrl-C (call the command's handler: a real SIGINT would reach jest too).
    const metrics = path.join(out, 'metrics.jsonl');
    while (!(fs.existsSync(metrics) && fs.readFileSync(metrics, 'utf8').includes('"step"'))) await new Promise((resolve) => setTimeout(resolve, 20));
    const handlers = process.listeners('SIGINT').filter((listener) => !before.has(listener));
    expect(handlers).toHaveLength(1);
    (handlers[0] as () => void)();
    const result = await running;
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('sparkmim: stopping after this step and saving a checkpoint (Ctrl-C again to quit at once)\n');
    expect(result.stdout).toMatch(/^stopped: 0 epoch\(s\) run \(now at 0 of 3\), \d steps,/m);
    expect(result.stdout).toContain(`continue with: sparkmim pretrain --resume ${out}`);
    const { progress } = JSON.parse(fs.readFileSync(path.join(out, 'checkpoint.json'), 'utf8'));
    expect(progress.epoch).toBe(0);
    expect(progress.iteration).toBeGreaterThanOrEqual(1);
    expect(process.listeners('SIGINT').filter((listener) => !before.has(listener))).toHaveLength(0);
  }, 120_000);

  describe('Ctrl-C in a real process (node bin/sparkmim.mjs, real SIGINTs)', () => {
    const bin = path.resolve(__dirname, '../../bin/sparkmim.mjs');
    beforeAll(() => {
      // The launcher rebuilds the bundle when the sources are newer: done here, before any waiting on a run.
      const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
      expect({ status: help.status, stderr: help.stderr }).toEqual({ status: 0, stderr: '' });
    }, 180_000);

    /**
     * Starts 3 epochs of 4 steps in a child process and resolves once its first step is in metrics.jsonl
     * (not on stdout: a pipe gets one line per epoch); `ended` resolves when the child has exited.
     */
    async function startRun(out: string, inputSize = TINY.inputSize) {
      const child = spawn(
        process.execPath,
        [bin, 'pretrain', '--data', images, ...flagsOf({ ...TINY, inputSize, batchSize: 2, epochs: 3, backend: 'cpu', out })],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.stderr.on('data', (chunk) => (stderr += chunk));
      let exited = false;
      const ended = new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) =>
        child.on('close', (code, signal) => {
          exited = true;
          resolve({ code, signal, stdout, stderr });
        }),
      );
      const metrics = path.join(out, 'metrics.jsonl');
      while (!exited && !(fs.existsSync(metrics) && fs.readFileSync(metrics, 'utf8').includes('"step"')))
        await new Promise((resolve) => setTimeout(resolve, 20));
      if (exited) throw new Error(`the run ended before its first step: ${JSON.stringify(await ended)}`);
      return { child, ended };
    }

    it('the first SIGINT finishes the step, saves a checkpoint and exits 0 with the line to continue', async () => {
      const out = path.join(folder, 'sigint-once');
      const { child, ended } = await startRun(out);
      child.kill('SIGINT');
      const result = await ended;
      expect({ code: result.code, signal: result.signal }).toEqual({ code: 0, signal: null });
      expect(result.stderr).toContain('sparkmim: stopping after this step and saving a checkpoint (Ctrl-C again to quit at once)\n');
      expect(result.stdout).toMatch(/^stopped: 0 epoch\(s\) run \(now at 0 of 3\), \d steps,/m);
      expect(result.stdout).toContain(`continue with: sparkmim pretrain --resume ${out}\n`);
      expect(result.stdout).toMatch(/^run folder .*loss-curve\.png/m);
      const { progress } = JSON.parse(fs.readFileSync(path.join(out, 'checkpoint.json'), 'utf8'));
      expect(progress.epoch).toBe(0);
      expect(progress.iteration).toBeGreaterThanOrEqual(1);
      expect(fs.existsSync(path.join(out, 'loss-curve.png'))).toBe(true);
    }, 120_000);

    it("a second SIGINT quits at once with code 130 and 'quit without saving', leaving no checkpoint", async () => {
      const out = path.join(folder, 'sigint-twice');
      // Steps of about a second (plain node): both signals land within the second step, long before the
      // first epoch's checkpoint. Apart by 100 ms, as two Ctrl-C presses are: signals sent at the same
      // moment can reach the process as one.
      const { child, ended } = await startRun(out, 128);
      child.kill('SIGINT');
      await new Promise((resolve) => setTimeout(resolve, 100));
      child.kill('SIGINT');
      const result = await ended;
      expect({ code: result.code, signal: result.signal }).toEqual({ code: 130, signal: null });
      expect(result.stderr).toContain(
        'sparkmim: stopping after this step and saving a checkpoint (Ctrl-C again to quit at once)\nsparkmim: quit without saving\n',
      );
      expect(result.stdout).not.toContain('continue with');
      expect(fs.existsSync(path.join(out, 'checkpoint.json'))).toBe(false);
    }, 120_000);
  });

  it('prints its help, and the top-level help lists it', async () => {
    const help = await runCli(['pretrain', '--help']);
    expect(help.code).toBe(0);
    for (const flag of [
      '--config',
      '--data',
      '--model',
      '--depths',
      '--input-size',
      '--mask-ratio',
      '--batch-size',
      '--epochs',
      '--base-lr',
      '--warmup-epochs',
      '--weight-decay-end',
      '--optimizer',
      '--backend',
      '--seed',
      '--out',
      '--resume',
      '--init-weights',
      '--checkpoint-every',
      '--preview-every',
    ]) {
      expect(help.stdout).toContain(flag);
    }
    expect(help.stdout).toContain('JSON or YAML (.yaml, .yml)');
    expect(help.stdout.replace(/\s+/g, ' ')).toContain('data and initWeights in a config file are relative to the file');
    expect(help.stdout).toContain('loss-curve.png');
    expect((await runCli(['--help'])).stdout).toContain('pretrain --data FOLDER');
  });

  describe('errors the user can fix: one line, exit code 2', () => {
    async function expectUsageError(argv: string[], message: string | RegExp): Promise<void> {
      const result = await runCli(['pretrain', ...argv]);
      expect(result.code).toBe(2);
      expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
      if (typeof message === 'string') expect(result.stderr).toBe(`sparkmim: ${message}\n`);
      else expect(result.stderr).toMatch(message);
    }
    const tinyFlags = ['--model', 'resnet18', '--stem-width', '4', '--widths', '4,8,8,8', '--decoder-width', '32', '--backend', 'cpu'];

    it('a missing data folder, an empty one, one with only broken files', async () => {
      const missing = path.join(folder, 'no-such-folder');
      await expectUsageError(['--data', missing, ...tinyFlags, '--input-size', '64'], `--data: image folder not found: ${missing}`);
      const empty = fs.mkdtempSync(path.join(folder, 'empty-'));
      await expectUsageError(
        ['--data', empty, ...tinyFlags, '--input-size', '64'],
        /^sparkmim: --data: no images in .*empty-.*: none of its 0 files/,
      );
      const broken = fs.mkdtempSync(path.join(folder, 'broken-'));
      fs.writeFileSync(path.join(broken, 'a.png'), 'not a png');
      fs.writeFileSync(path.join(broken, 'b.jpg'), '');
      await expectUsageError(
        ['--data', broken, ...tinyFlags, '--input-size', '64'],
        /^sparkmim: --data: none of the 2 image files in .*broken-.* could be decoded/,
      );
    });

    it('a negative batch size, a mask ratio of 1.2, an input size that is not a multiple of 32', async () => {
      await expectUsageError(['--data', images, ...tinyFlags, '--batch-size=-2'], '--batch-size is -2, expected a whole number >= 1');
      await expectUsageError(
        ['--data', images, ...tinyFlags, '--mask-ratio', '1.2'],
        '--mask-ratio is 1.2, expected a number between 0 and 1 (exclusive), e.g. 0.6',
      );
      await expectUsageError(
        ['--data', images, ...tinyFlags, '--input-size', '100'],
        "--input-size is 100, which is not a multiple of resnet18's downsample ratio 32 (use 96 or 128)",
      );
      // One 32-pixel patch: 60% masked keeps none of it; 10% masked of a 2x2 grid hides none.
      await expectUsageError(
        ['--data', images, ...tinyFlags, '--input-size', '32'],
        '--input-size 32 gives a 1x1 grid of 32-pixel patches, of which --mask-ratio 0.6 keeps none: use a larger --input-size (e.g. 64) or another --mask-ratio',
      );
      await expectUsageError(
        ['--data', images, ...tinyFlags, '--input-size', '64', '--mask-ratio', '0.1'],
        '--input-size 64 gives a 2x2 grid of 32-pixel patches, of which --mask-ratio 0.1 hides none: use a larger --input-size (e.g. 96) or another --mask-ratio',
      );
    });

    it('an unknown model, an unknown flag, an unknown config key', async () => {
      await expectUsageError(
        ['--data', images, '--model', 'resnet19', '--backend', 'cpu'],
        /^sparkmim: --model: unknown model 'resnet19': expected one of resnet18, .*convnext_large\n$/,
      );
      await expectUsageError(
        ['--data', images, '--learning-rate', '1'],
        /^sparkmim: pretrain: Unknown option '--learning-rate'.*\(run 'sparkmim pretrain --help'\)\n$/,
      );
      const config = writeJson('typo.json', { batchsize: 2 });
      await expectUsageError(
        ['--config', config, '--data', images],
        /^sparkmim: --config: .*typo\.json: unknown key\(s\) batchsize; valid keys: data, model, .*batchSize.*previewEvery\n$/,
      );
      const negative = writeJson('negative.json', { batchSize: -2 });
      await expectUsageError(
        ['--config', negative, '--data', images],
        /^sparkmim: batchSize in .*negative\.json is -2, expected a whole number >= 1\n$/,
      );
    });

    it('a YAML config with an unknown key, one that does not parse, one that is not a mapping, a bad value', async () => {
      const typo = writeText('typo.yaml', 'batchsize: 2\n');
      await expectUsageError(
        ['--config', typo, '--data', images],
        /^sparkmim: --config: .*typo\.yaml: unknown key\(s\) batchsize; valid keys: data, model, .*depths.*batchSize.*previewEvery\n$/,
      );
      const broken = writeText('broken.yml', 'batchSize: 2\nwidths: [4, 8\n');
      await expectUsageError(
        ['--config', broken, '--data', images],
        /^sparkmim: --config: .*broken\.yml is not valid YAML: .+ at line 3, column 1\n$/,
      );
      const twice = writeText('twice.yaml', 'epochs: 2\nepochs: 3\n');
      await expectUsageError(
        ['--config', twice, '--data', images],
        /^sparkmim: --config: .*twice\.yaml is not valid YAML: Map keys must be unique at line 2, column 1\n$/,
      );
      const list = writeText('list.yaml', '- batchSize: 2\n');
      await expectUsageError(
        ['--config', list, '--data', images],
        /^sparkmim: --config: .*list\.yaml must hold a YAML mapping \(key: value lines\)\n$/,
      );
      const negative = writeText('negative.yml', 'batchSize: -2\n');
      await expectUsageError(
        ['--config', negative, '--data', images],
        /^sparkmim: batchSize in .*negative\.yml is -2, expected a whole number >= 1\n$/,
      );
    });

    it('depths that are not four whole numbers >= 1', async () => {
      await expectUsageError(
        ['--data', images, ...tinyFlags, '--depths', '1,1,1'],
        '--depths is 1,1,1, expected four whole numbers >= 1 (one per stage), e.g. 1,1,1,1',
      );
      await expectUsageError(
        ['--data', images, ...tinyFlags, '--depths', '2,0,2,2'],
        '--depths is 2,0,2,2, expected four whole numbers >= 1 (one per stage), e.g. 1,1,1,1',
      );
      await expectUsageError(
        ['--data', images, ...tinyFlags, '--depths', '1,1,x,1'],
        '--depths is "1,1,x,1", expected whole numbers separated by commas, e.g. 8,16,32,64',
      );
      const config = writeText('depths.yaml', 'depths: [1, 1.5, 1, 1]\n');
      await expectUsageError(
        ['--config', config, '--data', images],
        /^sparkmim: depths in .*depths\.yaml is \[1,1\.5,1,1\], expected whole numbers separated by commas, e\.g\. 8,16,32,64\n$/,
      );
    });
  });
});
