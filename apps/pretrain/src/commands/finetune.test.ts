import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeSafetensors } from '@sparkmim/trainer';
import { runCli } from '../testing/run-cli';

// A tiny timm-style ResNet encoder (bottleneck blocks, depths 1,1,1,1, widths 2,4,8,16) saved by PyTorch with
// the official code (packages/trainer/test/fixtures/pth/make_fixtures.py).
const FIXTURES = path.resolve(__dirname, '../../../../packages/trainer/test/fixtures/pth');
const SAMPLES = path.resolve(__dirname, '../../data/sample-images');
const ENCODER = path.join(FIXTURES, 'resnet_1kpretrained_timm_style.pth');

let folder: string;
let data: string;
beforeEach(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-finetune-'));
  data = path.join(folder, 'data');
  // Two classes of three sample crops each (a colour photograph and a grey one).
  for (const [label, photo] of [
    ['coffee', 'coffee'],
    ['text', 'text'],
  ]) {
    fs.mkdirSync(path.join(data, label), { recursive: true });
    for (const index of ['000', '001', '002'])
      fs.copyFileSync(path.join(SAMPLES, `${photo}-${index}.jpg`), path.join(data, label, `${photo}-${index}.jpg`));
  }
});
afterEach(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

const COMMON = ['--input-size', '32', '--batch-size', '4', '--backend', 'cpu'];

describe('sparkmim features / probe / finetune', () => {
  it('refuses a corrupt weights file and a data folder with one class in one line, exit 2', async () => {
    const corrupt = path.join(folder, 'corrupt.pth');
    fs.writeFileSync(corrupt, fs.readFileSync(ENCODER).subarray(0, 300));
    for (const command of ['features', 'probe', 'finetune']) {
      const result = await runCli([command, '--weights', corrupt, '--data', data, '--out', path.join(folder, `${command}.jsonl`), ...COMMON]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/^sparkmim: --weights: .*corrupt\.pth.*\n$/);
      expect(result.stderr.split('\n')).toHaveLength(2);
    }
    const one = path.join(folder, 'one');
    fs.mkdirSync(path.join(one, 'coffee'), { recursive: true });
    fs.copyFileSync(path.join(SAMPLES, 'coffee-000.jpg'), path.join(one, 'coffee', 'a.jpg'));
    const result = await runCli(['finetune', '--weights', ENCODER, '--data', one, '--out', path.join(folder, 'run'), ...COMMON]);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`sparkmim: --data: data folder ${one} has 1 class (coffee): expected one subfolder per class, at least 2\n`);
  });

  it('writes pooled features as safetensors and as JSONL, with file names and labels', async () => {
    const tensorsFile = path.join(folder, 'f.safetensors');
    const jsonlFile = path.join(folder, 'f.jsonl');
    expect((await runCli(['features', '--weights', ENCODER, '--data', data, '--out', tensorsFile, ...COMMON])).code).toBe(0);
    expect((await runCli(['features', '--weights', ENCODER, '--data', data, '--out', jsonlFile, ...COMMON])).code).toBe(0);
    const decoded = decodeSafetensors(new Uint8Array(fs.readFileSync(tensorsFile)));
    // The encoder's last stage: bottleneck blocks of width 16 give 64 channels.
    expect(decoded.tensors.get('features')!.shape).toEqual([6, 64]);
    expect(Array.from(decoded.tensors.get('labels')!.data)).toEqual([0, 0, 0, 1, 1, 1]);
    expect(JSON.parse(decoded.metadata.classes)).toEqual(['coffee', 'text']);
    const files = JSON.parse(decoded.metadata.files) as string[];
    expect(files).toEqual(
      ['coffee-000', 'coffee-001', 'coffee-002', 'text-000', 'text-001', 'text-002'].map((name) => path.join(name.split('-')[0], `${name}.jpg`)),
    );
    const lines = fs
      .readFileSync(jsonlFile, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { file: string; class: string; label: number; features: number[] });
    expect(lines.map((line) => line.file)).toEqual(files);
    const features = decoded.tensors.get('features')!.data;
    for (const [i, line] of lines.entries()) expect(line.features).toEqual(Array.from(features.subarray(i * 64, (i + 1) * 64)));
    // Pooled after a ReLU: never negative, and the two photographs differ.
    expect(Math.min(...Array.from(features))).toBeGreaterThanOrEqual(0);
    expect(lines[0].features).not.toEqual(lines[3].features);
  });

  it('fine-tunes, and a run resumed from its checkpoint ends with the weights of an uninterrupted one', async () => {
    const args = ['--weights', ENCODER, '--data', data, '--val-fraction', '0.34', '--base-lr', '0.5', '--ema', '0.5', ...COMMON];
    const straight = path.join(folder, 'straight');
    const first = await runCli(['finetune', ...args, '--epochs', '2', '--out', straight]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/epoch 2\/2 {2}loss \d\.\d{4} {2}val top-1 \d+\.\d% {2}top-5 100\.0% {2}ema top-1/);
    const resumed = path.join(folder, 'resumed');
    expect((await runCli(['finetune', ...args, '--epochs', '2', '--stop-after', '1', '--out', resumed])).code).toBe(0);
    expect(fs.existsSync(path.join(resumed, 'classifier.safetensors'))).toBe(false);
    const second = await runCli(['finetune', '--resume', resumed]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('resuming after epoch 1');
    const weights = (run: string) => decodeSafetensors(new Uint8Array(fs.readFileSync(path.join(run, 'classifier.safetensors')))).tensors;
    const [a, b] = [weights(straight), weights(resumed)];
    expect([...b.keys()]).toEqual([...a.keys()]);
    expect(a.get('fc.weight')!.shape).toEqual([2, 64]);
    for (const [key, tensor] of a) expect({ key, data: Array.from(b.get(key)!.data) }).toEqual({ key, data: Array.from(tensor.data) });
    const records = fs
      .readFileSync(path.join(straight, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(records.filter((record) => record.type === 'step')).toHaveLength(2); // 4 training images, batch 4: one step per epoch
    const summary = records[records.length - 1];
    expect(summary.type).toBe('summary');
    expect(summary.confusion.flat().reduce((sum: number, count: number) => sum + count, 0)).toBe(2); // one held out per class
    // Refused: a second run into the same folder.
    const again = await runCli(['finetune', ...args, '--epochs', '2', '--out', straight]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`--out: ${straight} holds a run already`);
  });

  it('trains a linear probe on frozen features and reports validation accuracy', async () => {
    const run = path.join(folder, 'probe');
    const result = await runCli(['probe', '--weights', ENCODER, '--data', data, '--val-fraction', '0.34', '--steps', '20', '--out', run, ...COMMON]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/done: val top-1 \d+\.\d%, top-5 100\.0%/);
    const probe = decodeSafetensors(new Uint8Array(fs.readFileSync(path.join(run, 'probe.safetensors')))).tensors;
    expect([...probe.keys()].sort()).toEqual(['fc.bias', 'fc.weight', 'feature_mean', 'feature_std']);
  });
});
