// The README's first command: the quickstart config and the embedded sample images it trains on.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { runCli } from '../testing/run-cli';
import { readConfigFile, resolveConfig } from './pretrain-config';

const appDir = path.join(__dirname, '..', '..');
const quickstart = path.join(appDir, 'configs', 'quickstart.json');
const sampleImages = path.join(appDir, 'data', 'sample-images');

describe('the quickstart config', () => {
  it('points at the embedded images (relative to the config file) and asks for a small, fast model', () => {
    const config = resolveConfig([{ values: readConfigFile(quickstart), from: quickstart }]);
    expect(path.resolve(config.data!)).toBe(sampleImages);
    expect(config).toMatchObject({ model: 'resnet18', depths: [1, 1, 1, 1], inputSize: 96 });
    // No backend: the CLI picks the fastest it finds (wasm on a CPU-only machine).
    expect(config.backend).toBe('auto');
    // SparK's mask: 96 / 32 = a 3x3 grid, of which 60% masked keeps 4 patches and hides 5.
    expect(config.maskRatio).toBe(0.6);
  });

  it('trains as configured (one step per epoch on two of the embedded images) and writes the run folder', async () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-quickstart-'));
    try {
      const few = path.join(folder, 'images');
      fs.mkdirSync(few);
      for (const name of fs
        .readdirSync(sampleImages)
        .filter((file) => file.endsWith('.jpg'))
        .slice(0, 2)) {
        fs.copyFileSync(path.join(sampleImages, name), path.join(few, name));
      }
      const out = path.join(folder, 'run');
      const result = await runCli([
        'pretrain',
        '--config',
        quickstart,
        '--data',
        few,
        '--batch-size',
        '2',
        '--epochs',
        '2',
        '--warmup-epochs',
        '0',
        '--backend',
        'wasm',
        '--out',
        out,
      ]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(
        /^done: 2 epoch\(s\) run \(now at 2 of 2\), 2 steps, mean loss \d\.\d{4} \(first epoch\) -> \d\.\d{4} \(last epoch\)/m,
      );
      for (const file of ['checkpoint.json', 'encoder.safetensors', 'metrics.jsonl', 'loss-curve.png', 'config.json', 'previews/epoch-0002.png']) {
        expect({ file, exists: fs.existsSync(path.join(out, file)) }).toEqual({ file, exists: true });
      }
    } finally {
      fs.rmSync(folder, { recursive: true, force: true });
    }
  });
});

describe('the embedded sample images', () => {
  const files = fs.readdirSync(sampleImages).filter((file) => file.endsWith('.jpg'));

  it('are a few hundred 96x96 RGB JPEGs that all decode', async () => {
    expect(files.length).toBeGreaterThanOrEqual(300);
    const shapes = new Set<string>();
    for (const file of files) {
      const { data, info } = await sharp(path.join(sampleImages, file)).raw().toBuffer({ resolveWithObject: true });
      expect(data.length).toBe(info.width * info.height * info.channels);
      shapes.add(`${info.width}x${info.height}x${info.channels}`);
    }
    expect([...shapes]).toEqual(['96x96x3']);
  });

  it('come with a licence file that names the source and licence of every group of crops', () => {
    const licence = fs.readFileSync(path.join(sampleImages, 'LICENSE.md'), 'utf8');
    const groups = new Set(files.map((file) => file.replace(/-\d+\.jpg$/, '')));
    for (const group of groups) {
      const row = licence.split('\n').find((line) => line.startsWith(`| \`${group}-*\``));
      expect({ group, row: row !== undefined && /CC0|public domain|not copyrighted/.test(row) }).toEqual({ group, row: true });
      const count = Number(/\((\d+)\)/.exec(row!)![1]);
      expect({ group, count }).toEqual({ group, count: files.filter((file) => file.replace(/-\d+\.jpg$/, '') === group).length });
    }
  });
});
