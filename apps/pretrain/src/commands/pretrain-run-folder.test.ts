// The run folder contract of `sparkmim pretrain`: the folder resumed is the folder written, paths saved with
// a run resolve against it, one run per folder (the lock, --overwrite), snapshots hold one checkpoint each,
// and the hostile settings and checkpoints that must be one line and exit code 2.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../testing/run-cli';
import { TINY_RUN_FLAGS, writeTestImages } from '../testing/tiny-run';

let folder: string;
/** Two 64x64 images: one step of batch 2 per epoch. */
let few: string;
beforeAll(async () => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-run-folder-'));
  few = path.join(folder, 'few');
  fs.mkdirSync(few);
  await writeTestImages(few, 2);
});
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

const QUICK = TINY_RUN_FLAGS;

const read = (file: string) => fs.readFileSync(file);
const manifestOf = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8'));

async function inFolder<T>(cwd: string, run: () => Promise<T>): Promise<T> {
  const before = process.cwd();
  process.chdir(cwd);
  try {
    return await run();
  } finally {
    process.chdir(before);
  }
}

function expectOneLine(result: { code: number; stderr: string }, message: string | RegExp): void {
  expect(result.code).toBe(2);
  expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  if (typeof message === 'string') expect(result.stderr).toBe(`sparkmim: ${message}\n`);
  else expect(result.stderr).toMatch(message);
}

describe('sparkmim pretrain: the run folder [cpu]', () => {
  it('resumes a copy of a run, from another folder, into the copy: the original and its saved out stay untouched', async () => {
    // The first run is started with relative paths from `work`.
    const work = fs.mkdtempSync(path.join(folder, 'work-'));
    fs.cpSync(few, path.join(work, 'images'), { recursive: true });
    const first = await inFolder(work, () => runCli(['pretrain', '--data', 'images', ...QUICK, '--epochs', '2', '--out', 'runs/a']));
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const original = path.join(work, 'runs', 'a');
    // Saved relative to the run folder, not to the folder the run was started from; the folder itself is not saved.
    const saved = JSON.parse(fs.readFileSync(path.join(original, 'config.json'), 'utf8'));
    expect(saved.data).toBe(path.join('..', '..', 'images'));
    expect(saved.out).toBeUndefined();
    expect(manifestOf(original).config.data).toBe(path.join('..', '..', 'images'));

    // The run and its images moved together; resumed from yet another folder by a relative path.
    const moved = path.join(folder, 'moved');
    fs.mkdirSync(path.join(moved, 'runs'), { recursive: true });
    fs.cpSync(original, path.join(moved, 'runs', 'b'), { recursive: true });
    fs.cpSync(path.join(work, 'images'), path.join(moved, 'images'), { recursive: true });
    const originalBytes = read(path.join(original, 'checkpoint.json'));
    const elsewhere = fs.mkdtempSync(path.join(folder, 'elsewhere-'));
    const resumed = await inFolder(elsewhere, () =>
      runCli(['pretrain', '--resume', path.relative(elsewhere, path.join(moved, 'runs', 'b')), '--epochs', '3']),
    );
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);
    expect(manifestOf(path.join(moved, 'runs', 'b')).progress).toEqual({ epoch: 3, iterationInEpoch: 0, iteration: 3 });
    expect(read(path.join(original, 'checkpoint.json')).equals(originalBytes)).toBe(true);
    expect(fs.existsSync(path.join(elsewhere, 'runs'))).toBe(false);
    expect(fs.readdirSync(elsewhere)).toEqual([]);

    // --out naming another folder than the one resumed is refused.
    const other = path.join(folder, 'other');
    expectOneLine(
      await runCli(['pretrain', '--resume', path.join(moved, 'runs', 'b'), '--epochs', '4', '--out', other]),
      `--resume ${path.join(moved, 'runs', 'b')} continues in its own folder ${path.join(moved, 'runs', 'b')}, so --out ${other} cannot name another: copy the run folder there and resume the copy`,
    );
    expect(fs.existsSync(other)).toBe(false);
  }, 180_000);

  it('refuses a new run in a folder holding a run, replaces it with --overwrite, and keeps snapshots to one checkpoint each', async () => {
    const out = path.join(folder, 'taken');
    const first = await runCli(['pretrain', '--data', few, ...QUICK, '--epochs', '2', '--checkpoint-every', '2', '--out', out]);
    expect(first.code).toBe(0);
    const before = new Map(fs.readdirSync(out).map((name) => [name, fs.statSync(path.join(out, name)).mtimeMs]));
    expectOneLine(
      await runCli(['pretrain', '--data', few, ...QUICK, '--epochs', '2', '--out', out]),
      `--out: ${out} already holds a run (checkpoint.json): continue it with --resume ${out}, choose another --out, or pass --overwrite to replace it`,
    );
    expect(new Map(fs.readdirSync(out).map((name) => [name, fs.statSync(path.join(out, name)).mtimeMs]))).toEqual(before);
    expectOneLine(
      await runCli(['pretrain', '--resume', out, '--overwrite']),
      '--resume and --overwrite exclude each other: a resumed run continues its folder, --overwrite starts a new one',
    );

    // The snapshot of epoch 2, then files an earlier snapshot left there: the next copy removes them.
    const snapshot = path.join(out, 'checkpoints', 'epoch-0002');
    fs.writeFileSync(path.join(snapshot, 'model.it00000099-abcd.safetensors'), 'stale');
    fs.writeFileSync(path.join(snapshot, '.optimizer.it00000099-abcd.safetensors.4242.0123abcd.tmp'), 'stale');
    fs.writeFileSync(path.join(out, 'notes.txt'), 'mine');
    const replaced = await runCli([
      'pretrain',
      '--data',
      few,
      ...QUICK,
      '--epochs',
      '2',
      '--checkpoint-every',
      '2',
      '--seed',
      '5',
      '--out',
      out,
      '--overwrite',
    ]);
    expect(replaced.stderr).toBe('');
    expect(replaced.code).toBe(0);
    // A new run: one run's metrics (2 steps), the user's own file kept.
    const lines = fs
      .readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines.filter((line) => line.type === 'step').map((line) => line.iteration)).toEqual([0, 1]);
    expect(manifestOf(out).config.seed).toBe(5);
    expect(fs.readFileSync(path.join(out, 'notes.txt'), 'utf8')).toBe('mine');
    const kept = manifestOf(snapshot);
    expect(fs.readdirSync(snapshot).sort()).toEqual(['checkpoint.json', 'encoder.safetensors', kept.files.model, kept.files.optimizer].sort());
    // The snapshot's paths are relative to the snapshot; resuming it writes the snapshot, not the run.
    const runManifest = read(path.join(out, 'checkpoint.json'));
    const fromSnapshot = await runCli(['pretrain', '--resume', path.join(snapshot, 'checkpoint.json'), '--epochs', '3']);
    expect(fromSnapshot.stderr).toBe('');
    expect(fromSnapshot.code).toBe(0);
    expect(manifestOf(snapshot).progress.epoch).toBe(3);
    expect(read(path.join(out, 'checkpoint.json')).equals(runManifest)).toBe(true);
  }, 180_000);

  it('takes over a lock whose process is gone and refuses one held by a live process', async () => {
    const out = path.join(folder, 'locked');
    fs.mkdirSync(out);
    // A live process holds it: refused before anything is set up.
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(path.join(out, 'run.lock'), `${holder.pid} ${os.hostname()}\n`);
      expectOneLine(
        await runCli(['pretrain', '--data', few, ...QUICK, '--epochs', '2', '--out', out]),
        `--out: ${out} is in use by another run (pid ${holder.pid}, see ${path.join(out, 'run.lock')}): one process per run folder; if that process is gone, delete ${path.join(out, 'run.lock')}`,
      );
    } finally {
      holder.kill('SIGKILL');
    }
    await new Promise((resolve) => holder.on('exit', resolve));
    // Its process is gone now (a kill -9 leaves exactly this): the next run takes the lock over and frees it at the end.
    const result = await runCli(['pretrain', '--data', few, ...QUICK, '--epochs', '2', '--out', out]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(fs.existsSync(path.join(out, 'run.lock'))).toBe(false);
  }, 120_000);

  it('says in one line what is wrong with a hostile config, checkpoint or output folder', async () => {
    const write = (name: string, text: string) => {
      const file = path.join(folder, name);
      fs.writeFileSync(file, text);
      return file;
    };
    for (const key of ['__proto__', 'constructor', 'toString']) {
      const file = write(`${key.replace(/_/g, 'u')}.json`, `{"${key}": {"batchSize": 2}}`);
      expectOneLine(
        await runCli(['pretrain', '--config', file, '--data', few]),
        new RegExp(`^sparkmim: --config: .*: unknown key\\(s\\) ${key}; valid keys: data, model, `),
      );
    }
    const yamlNumbers = write('numbers.yaml', 'baseLr: .inf\n');
    expectOneLine(
      await runCli(['pretrain', '--config', yamlNumbers, '--data', few]),
      `baseLr in ${yamlNumbers} is Infinity (too large), expected a number`,
    );
    const yamlNan = write('nan.yaml', 'maskRatio: .nan\n');
    expectOneLine(await runCli(['pretrain', '--config', yamlNan, '--data', few]), `maskRatio in ${yamlNan} is NaN (not a number), expected a number`);
    const jsonHuge = write('huge.json', '{"epochs": 1e400}');
    expectOneLine(
      await runCli(['pretrain', '--config', jsonHuge, '--data', few]),
      `epochs in ${jsonHuge} is Infinity (too large), expected a whole number`,
    );
    // An alias bomb: nine levels of nine aliases each.
    const bomb = [
      'a: &a [x, x, x, x, x, x, x, x, x]',
      ...'bcdefghi'.split('').map((name, i) => `${name}: &${name} [${Array(9).fill(`*${'abcdefghi'[i]}`).join(', ')}]`),
      'epochs: *i',
      '',
    ].join('\n');
    const bombFile = write('bomb.yaml', bomb);
    expectOneLine(
      await runCli(['pretrain', '--config', bombFile, '--data', few]),
      /^sparkmim: --config: .*bomb\.yaml cannot be read as YAML: Excessive alias count/,
    );
    const deep = write('deep.json', `{"widths": ${'['.repeat(5000)}${']'.repeat(5000)}}`);
    expectOneLine(
      await runCli(['pretrain', '--config', deep, '--data', few]),
      `--config: ${deep} nests values more than 8 deep; settings are numbers, strings and lists`,
    );
    const deepYaml = write('deep.yaml', `widths: ${'['.repeat(5000)}${']'.repeat(5000)}\n`);
    expectOneLine(
      await runCli(['pretrain', '--config', deepYaml, '--data', few]),
      /^sparkmim: --config: .*deep\.yaml (cannot be read as YAML|is not valid YAML|nests values more than 8 deep)/,
    );

    expectOneLine(
      await runCli(['pretrain', '--data', few, ...QUICK, '--batch-size', '1e9']),
      '--batch-size 1000000000 of 64x64 images is 4.58e+4 GiB of input alone, more than the 4 GiB one batch may take: use a smaller --batch-size (SparK: 64 per GPU at 224)',
    );
    const aFile = write('a-file', 'x');
    expectOneLine(await runCli(['pretrain', '--data', few, ...QUICK, '--out', aFile]), `--out: ${aFile} is a file, expected a folder for the run`);
    expectOneLine(
      await runCli(['pretrain', '--data', few, ...QUICK, '--out', path.join(aFile, 'run')]),
      `--out: ${aFile} is a file, expected a folder for the run (${path.join(aFile, 'run')} would be inside it)`,
    );

    // Checkpoints: no config, an impossible position, a data folder that changed size under the run.
    const run = path.join(folder, 'hostile-run');
    expect((await runCli(['pretrain', '--data', few, ...QUICK, '--epochs', '2', '--out', run])).code).toBe(0);
    const manifestFile = path.join(run, 'checkpoint.json');
    const good = fs.readFileSync(manifestFile, 'utf8');
    fs.writeFileSync(manifestFile, good.replace(/"config": \{[^}]*\}/, '"config": null'));
    expectOneLine(
      await runCli(['pretrain', '--resume', run, '--epochs', '3']),
      `--resume: ${manifestFile}: config is null, expected an object of settings`,
    );
    const manifest = JSON.parse(good);
    fs.writeFileSync(manifestFile, JSON.stringify({ ...manifest, progress: { epoch: 2, iterationInEpoch: 0, iteration: 7 } }));
    expectOneLine(
      await runCli(['pretrain', '--resume', run, '--epochs', '3']),
      `--resume: ${run} stopped at epoch 3, batch 1 (iteration 7), which does not fit 1 batches per epoch (2 images in ${few}, batches of 2): the data folder or --batch-size changed since the run was saved`,
    );
    fs.writeFileSync(manifestFile, good);
    const grown = path.join(folder, 'grown');
    fs.cpSync(few, grown, { recursive: true });
    for (const name of fs.readdirSync(few)) fs.copyFileSync(path.join(few, name), path.join(grown, `copy-${name}`));
    expectOneLine(
      await runCli(['pretrain', '--resume', run, '--epochs', '3', '--data', grown, '--checkpoint-every', '1']),
      `--resume: ${run} stopped at epoch 3, batch 1 (iteration 2), which does not fit 2 batches per epoch (4 images in ${grown}, batches of 2): the data folder or --batch-size changed since the run was saved`,
    );
    fs.writeFileSync(manifestFile, JSON.stringify({ ...manifest, files: { ...manifest.files, model: '../../escape.safetensors' } }));
    expectOneLine(
      await runCli(['pretrain', '--resume', run, '--epochs', '3']),
      /^sparkmim: --resume: .*files\.model is "\.\.\/\.\.\/escape\.safetensors", expected a plain file name inside the checkpoint folder/,
    );
  }, 180_000);
});
