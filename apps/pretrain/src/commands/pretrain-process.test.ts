// `sparkmim pretrain` as real processes (node bin/sparkmim.mjs): SIGTERM, two runs on one folder, kill -9 at
// every file write of a checkpoint save followed by --resume, and a full disk during a save.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TINY_RUN_FLAGS, writeTestImages } from '../testing/tiny-run';

const bin = path.resolve(__dirname, '../../bin/sparkmim.mjs');
let folder: string;
let few: string;
let images: string;
beforeAll(async () => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-process-'));
  few = path.join(folder, 'few');
  images = path.join(folder, 'images');
  fs.mkdirSync(few);
  fs.mkdirSync(images);
  await writeTestImages(images, 6);
  for (let i = 0; i < 2; i++) fs.copyFileSync(path.join(images, `image${i}.png`), path.join(few, `image${i}.png`));
  // The launcher rebuilds the bundle when the sources are newer: done here, before any timing or limit.
  const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  expect({ status: help.status, stderr: help.stderr }).toEqual({ status: 0, stderr: '' });
}, 180_000);
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

const QUICK = [...TINY_RUN_FLAGS, '--preview-every', '0'];

interface Ended {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

function start(args: string[], options: { env?: NodeJS.ProcessEnv; shellPrefix?: string } = {}) {
  const child = options.shellPrefix
    ? spawn('bash', ['-c', `${options.shellPrefix}; exec "$@"`, 'bash', process.execPath, bin, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: options.env,
      })
    : spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: options.env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const ended = new Promise<Ended>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, ended };
}

async function untilFileHas(file: string, text: string, ended: Promise<Ended>): Promise<void> {
  let exited = false;
  void ended.then(() => (exited = true));
  while (!exited && !(fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes(text))) await new Promise((resolve) => setTimeout(resolve, 20));
  if (exited) throw new Error(`the run ended before ${file} had ${text}: ${JSON.stringify(await ended)}`);
}

/** The loss of each iteration: the last line of each (a killed run's steps are run again after a resume). */
function lossesOf(out: string): Map<number, number> {
  const losses = new Map<number, number>();
  for (const line of fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n')) {
    const record = JSON.parse(line);
    if (record.type === 'step') losses.set(record.iteration, record.loss);
  }
  return losses;
}

describe('sparkmim pretrain in real processes [cpu]', () => {
  it('SIGTERM is the first Ctrl-C: finish the step, save, exit 0; a second run on the folder meanwhile is refused', async () => {
    const out = path.join(folder, 'sigterm');
    // Long enough (300 steps) to outlast a second process starting on a busy machine; SIGTERM ends it early.
    const { child, ended } = start(['pretrain', '--data', images, ...QUICK, '--epochs', '100', '--out', out]);
    await untilFileHas(path.join(out, 'metrics.jsonl'), '"step"', ended);
    // One process per run folder: the lock holds this one's pid.
    expect(fs.readFileSync(path.join(out, 'run.lock'), 'utf8')).toBe(`${child.pid} ${os.hostname()}\n`);
    const second = await start(['pretrain', '--data', few, ...QUICK, '--epochs', '2', '--out', out]).ended;
    expect(second.code).toBe(2);
    expect(second.stderr).toBe(
      `sparkmim: --out: ${out} is in use by another run (pid ${child.pid}, see ${path.join(out, 'run.lock')}): one process per run folder; if that process is gone, delete ${path.join(out, 'run.lock')}\n`,
    );
    child.kill('SIGTERM');
    const result = await ended;
    expect({ code: result.code, signal: result.signal }).toEqual({ code: 0, signal: null });
    expect(result.stderr).toContain('sparkmim: SIGTERM: stopping after this step and saving a checkpoint (a second signal quits at once)\n');
    expect(result.stdout).toContain(`continue with: sparkmim pretrain --resume ${out}\n`);
    // Stopped long before its 100 epochs, with a checkpoint of where it stopped.
    expect(result.stdout).toMatch(/^stopped: \d+ epoch\(s\) run \(now at \d+ of 100\)/m);
    const { progress } = JSON.parse(fs.readFileSync(path.join(out, 'checkpoint.json'), 'utf8'));
    expect(progress.iteration).toBeGreaterThanOrEqual(1);
    expect(progress.epoch).toBeLessThan(100);
    expect(result.stdout).toContain(`(iteration ${progress.iteration}) saved in ${out}`);
    expect(fs.existsSync(path.join(out, 'run.lock'))).toBe(false);
  }, 240_000);

  it('probes WebGPU quietly: without --backend no Dawn message reaches the terminal; --backend webgpu that fails shows them after its line', async () => {
    // No Vulkan driver (jest's setup points Dawn at SwiftShader): Dawn, if loaded here, complains on stderr.
    const env = { ...process.env };
    delete env.VK_ICD_FILENAMES;
    delete env.VK_DRIVER_FILES;
    const quiet = await start(
      [
        'pretrain',
        '--data',
        few,
        ...QUICK.filter((arg, i, all) => arg !== '--backend' && all[i - 1] !== '--backend'),
        '--epochs',
        '2',
        '--out',
        path.join(folder, 'auto'),
      ],
      { env },
    ).ended;
    expect({ code: quiet.code, stderr: quiet.stderr }).toEqual({ code: 0, stderr: '' });
    expect(quiet.stdout).toMatch(/^backend wasm; 2 images/m);
    const verbose = await start(
      [
        'pretrain',
        '--data',
        few,
        ...QUICK.filter((arg, i, all) => arg !== '--backend' && all[i - 1] !== '--backend'),
        '--epochs',
        '2',
        '--out',
        path.join(folder, 'auto-verbose'),
        '--verbose',
      ],
      { env },
    ).ended;
    expect(verbose.code).toBe(0);
    expect(verbose.stderr).toMatch(/^sparkmim: webgpu probe: Dawn found no GPU adapter\n(sparkmim: dawn: .*\n)+$/);
    const asked = await start(['pretrain', '--data', few, ...QUICK, '--epochs', '2', '--backend', 'webgpu', '--out', path.join(folder, 'webgpu')], {
      env,
    }).ended;
    expect(asked.code).toBe(2);
    const lines = asked.stderr.trimEnd().split('\n');
    expect(lines[lines.length - 1]).toMatch(
      /^sparkmim: --backend webgpu: Dawn found no GPU adapter; without a GPU, Chromium's SwiftShader driver works/,
    );
    expect(lines.slice(0, -1).every((line) => line.startsWith('sparkmim: dawn: '))).toBe(true);
    expect(asked.stderr).not.toMatch(/\n\s+at /);
    expect(fs.existsSync(path.join(folder, 'webgpu'))).toBe(false);
  }, 180_000);

  it('kill -9 at each file write of a checkpoint save, then --resume: the same losses and weights as a run never killed', async () => {
    // 3 epochs of one step; the second save (end of epoch 2) writes model, optimizer, encoder, manifest.
    const run = (out: string) => ['pretrain', '--data', few, ...QUICK, '--epochs', '3', '--out', out];
    const reference = path.join(folder, 'reference');
    const whole = await start(run(reference)).ended;
    expect({ code: whole.code, stderr: whole.stderr }).toEqual({ code: 0, stderr: '' });
    const expectedLosses = lossesOf(reference);
    expect([...expectedLosses.keys()]).toEqual([0, 1, 2]);

    // Kills the process at the n-th rename of a checkpoint file into the run folder (before it, or after it).
    const preload = path.join(folder, 'kill-at-rename.cjs');
    fs.writeFileSync(
      preload,
      `const fsp = require('fs/promises');
       const path = require('path');
       const at = Number(process.env.KILL_AT_RENAME);
       const after = process.env.KILL_AFTER === '1';
       const folder = process.env.KILL_FOLDER;
       const ours = /^(model\\.|optimizer\\.|encoder\\.safetensors$|checkpoint\\.json$)/;
       const rename = fsp.rename;
       let count = 0;
       fsp.rename = async function (from, to) {
         const hit = path.dirname(String(to)) === folder && ours.test(path.basename(String(to))) && ++count === at;
         if (hit && !after) process.kill(process.pid, 'SIGKILL');
         const result = await rename.call(this, from, to);
         if (hit && after) process.kill(process.pid, 'SIGKILL');
         return result;
       };
       require('module').syncBuiltinESMExports();`,
    );
    const points = [
      { at: 5, after: false, what: 'before the model file', resumesAt: 1 },
      { at: 6, after: false, what: 'before the optimizer file', resumesAt: 1 },
      { at: 7, after: false, what: 'before encoder.safetensors', resumesAt: 1 },
      { at: 8, after: false, what: 'before the manifest', resumesAt: 1 },
      { at: 8, after: true, what: 'after the manifest', resumesAt: 2 },
    ];
    for (const point of points) {
      const out = path.join(folder, `killed-${point.at}-${point.after}`);
      const env = {
        ...process.env,
        NODE_OPTIONS: `--require ${preload}`,
        KILL_AT_RENAME: String(point.at),
        KILL_AFTER: point.after ? '1' : '0',
        KILL_FOLDER: out,
      };
      const killed = await start(run(out), { env }).ended;
      expect({ point: point.what, signal: killed.signal }).toEqual({ point: point.what, signal: 'SIGKILL' });
      const resumed = await start(['pretrain', '--resume', out]).ended;
      expect({ point: point.what, code: resumed.code, stderr: resumed.stderr }).toEqual({ point: point.what, code: 0, stderr: '' });
      expect(resumed.stdout).toContain(`resuming ${out} at epoch ${point.resumesAt + 1}\n`);
      expect({ point: point.what, losses: lossesOf(out) }).toEqual({ point: point.what, losses: expectedLosses });
      // Bit for bit the weights of the run never killed, the encoder file included; no leftovers, no lock.
      const manifest = JSON.parse(fs.readFileSync(path.join(out, 'checkpoint.json'), 'utf8'));
      const referenceManifest = JSON.parse(fs.readFileSync(path.join(reference, 'checkpoint.json'), 'utf8'));
      expect(fs.readFileSync(path.join(out, manifest.files.model)).equals(fs.readFileSync(path.join(reference, referenceManifest.files.model)))).toBe(
        true,
      );
      expect(fs.readFileSync(path.join(out, 'encoder.safetensors')).equals(fs.readFileSync(path.join(reference, 'encoder.safetensors')))).toBe(true);
      expect(fs.readdirSync(out).filter((name) => name.endsWith('.tmp') || name === 'run.lock')).toEqual([]);
    }
  }, 300_000);

  it('a full disk during a save (here: the file size limit) is one line naming the checkpoint that remains', async () => {
    const out = path.join(folder, 'full');
    const first = await start(['pretrain', '--data', few, ...QUICK, '--epochs', '2', '--out', out]).ended;
    expect(first.code).toBe(0);
    const manifestBytes = fs.readFileSync(path.join(out, 'checkpoint.json'));
    const { files } = JSON.parse(manifestBytes.toString());
    const modelBytes = fs.statSync(path.join(out, files.model)).size;
    // Room for the config and the metrics lines, not for the model file.
    const blocks = Math.floor(modelBytes / 1024 / 2);
    expect(blocks).toBeGreaterThanOrEqual(8);
    const result = await start(['pretrain', '--resume', out, '--epochs', '3'], { shellPrefix: `ulimit -f ${blocks}` }).ended;
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      new RegExp(
        `^sparkmim: writeFileAtomic: cannot write ${out}/model\\.it00000003-[0-9a-f]{4}\\.safetensors: the file is too large for this file system \\(or the file size limit\\) \\(EFBIG\\); ` +
          `${out} still holds the checkpoint of iteration 2 \\(continue with: sparkmim pretrain --resume ${out}\\)\\n$`,
      ),
    );
    expect(fs.readFileSync(path.join(out, 'checkpoint.json')).equals(manifestBytes)).toBe(true);
    expect(fs.readdirSync(out).filter((name) => name.endsWith('.tmp') || name === 'run.lock')).toEqual([]);
  }, 120_000);
});
