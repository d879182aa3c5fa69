import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeSafetensors, encodeSafetensors } from '@sparkmim/trainer';
import { goldenFileNames, goldensDir, loadGolden } from '@sparkmim/test-utils';
import { relativeError, runCli } from '../testing/run-cli';

let folder: string;
beforeEach(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-forward-'));
});
afterEach(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

// The brief's bound for a forward pass against the official code, on cpu (measured: ≤ 1e-5).
const TOLERANCE = 1e-4;
const WRITTEN_KEYS = [
  'active',
  'dec_in.0',
  'dec_in.1',
  'dec_in.2',
  'dec_in.3',
  'enc.0',
  'enc.1',
  'enc.2',
  'enc.3',
  'loss',
  'rec',
  'vis.inp',
  'vis.masked',
  'vis.rec_or_inp',
];

describe('sparkmim forward', () => {
  for (const fileName of goldenFileNames()) {
    it(`reproduces the official forward pass of ${fileName} (train mode), in PyTorch layout`, async () => {
      const golden = path.join(goldensDir(), fileName);
      const out = path.join(folder, 'forward.safetensors');
      const result = await runCli([
        'forward',
        '--weights',
        golden,
        '--strip-prefix',
        'param.',
        '--input',
        `${golden}:input`,
        '--active',
        `${golden}:active`,
        '--backend',
        'cpu',
        '--out',
        out,
      ]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ mode: 'train', out });
      const { tensors, metadata } = decodeSafetensors(new Uint8Array(fs.readFileSync(out)));
      expect([...tensors.keys()].sort()).toEqual(WRITTEN_KEYS);
      expect(metadata).toMatchObject({ command: 'sparkmim forward', mode: 'train', backend: 'cpu' });
      const expected = loadGolden(fileName);
      for (const [key, tensor] of tensors) {
        expect({ key, dtype: tensor.dtype, shape: tensor.shape }).toEqual({ key, dtype: 'F32', shape: expected.get(key).shape });
        expect({ key, error: relativeError(tensor.data, expected.get(key).data) <= TOLERANCE }).toEqual({ key, error: true });
      }
    });
  }

  it('runs in evaluation mode with the running statistics (loss_eval)', async () => {
    const [fileName] = goldenFileNames();
    const golden = path.join(goldensDir(), fileName);
    const out = path.join(folder, 'eval.safetensors');
    const argv = ['forward', '--weights', golden, '--strip-prefix', 'param.', '--input', `${golden}:input`, '--active', `${golden}:active`];
    const result = await runCli([...argv, '--mode', 'eval', '--out', out]);
    expect(result.code).toBe(0);
    const { tensors } = decodeSafetensors(new Uint8Array(fs.readFileSync(out)));
    const expected = loadGolden(fileName);
    expect(relativeError(tensors.get('loss')!.data, expected.get('loss_eval').data)).toBeLessThanOrEqual(TOLERANCE);
    for (let i = 0; i < 4; i++) {
      expect(relativeError(tensors.get(`enc.${i}`)!.data, expected.get(`enc_eval.${i}`).data)).toBeLessThanOrEqual(TOLERANCE);
    }
  });

  describe('errors the user can fix: one line, exit code 2', () => {
    const [fileName] = goldenFileNames();
    const golden = () => path.join(goldensDir(), fileName);
    /** `forward` on the golden's weights and input with the mask `active` of the file `mask`. */
    const forwardWithMaskArgs = (mask: string) => [
      'forward',
      '--weights',
      golden(),
      '--strip-prefix',
      'param.',
      '--input',
      `${golden()}:input`,
      '--active',
      `${mask}:active`,
      '--out',
      path.join(folder, 'o.safetensors'),
    ];

    async function expectUsageError(argv: string[], message: string | RegExp): Promise<void> {
      const result = await runCli(argv);
      expect(result.code).toBe(2);
      expect(result.stderr.endsWith('\n')).toBe(true);
      expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
      if (typeof message === 'string') expect(result.stderr).toBe(`sparkmim: ${message}\n`);
      else expect(result.stderr).toMatch(message);
    }

    it('a missing option', async () => {
      await expectUsageError(['forward', '--input', 'x.safetensors:input', '--out', 'y'], "forward needs --weights (run 'sparkmim forward --help')");
    });

    it('a truncated weights file', async () => {
      const truncated = path.join(folder, 'truncated.safetensors');
      const bytes = fs.readFileSync(golden());
      fs.writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
      await expectUsageError(
        ['forward', '--weights', truncated, '--strip-prefix', 'param.', '--input', `${golden()}:input`, '--out', path.join(folder, 'o.safetensors')],
        /^sparkmim: --weights: safetensors \(.*truncated\.safetensors\): .* the file is truncated\n$/,
      );
    });

    it('weights that are not a SparK model', async () => {
      const other = path.join(folder, 'other.safetensors');
      fs.writeFileSync(other, encodeSafetensors(new Map([['fc.weight', { shape: [2, 2], data: new Float32Array(4) }]])));
      await expectUsageError(
        ['forward', '--weights', other, '--input', `${golden()}:input`, '--out', path.join(folder, 'o.safetensors')],
        /^sparkmim: --weights: the weights are neither a SparK model \(no key starts with sparse_encoder\.sp_cnn\.\) nor a timm ResNet or an official ConvNeXt \(1 keys, such as fc\.weight\)\n$/,
      );
    });

    it('an image size that is not a multiple of 32, and a mask that does not fit', async () => {
      const input = path.join(folder, 'input.safetensors');
      fs.writeFileSync(input, encodeSafetensors(new Map([['x', { shape: [1, 3, 100, 128], data: new Float32Array(3 * 100 * 128) }]])));
      await expectUsageError(
        ['forward', '--weights', golden(), '--strip-prefix', 'param.', '--input', `${input}:x`, '--out', path.join(folder, 'o.safetensors')],
        '--input: images [1, 3, 100, 128] have height 100, which is not a multiple of 32 (use 96 or 128)',
      );
      const mask = path.join(folder, 'mask.safetensors');
      fs.writeFileSync(mask, encodeSafetensors(new Map([['active', { shape: [2, 1, 2, 2], data: new Float32Array(8) }]])));
      await expectUsageError(forwardWithMaskArgs(mask), '--active: mask [2, 1, 2, 2] does not fit images [2, 3, 128, 128]: expected [2, 1, 4, 4]');
    });

    it('a key the input file does not have, and a mask that is not 0/1', async () => {
      await expectUsageError(
        ['forward', '--weights', golden(), '--strip-prefix', 'param.', '--input', `${golden()}:images`, '--out', path.join(folder, 'o.safetensors')],
        /^sparkmim: --input: .* has no key 'images' \(it has .*\)\n$/,
      );
      const mask = path.join(folder, 'mask.safetensors');
      fs.writeFileSync(mask, encodeSafetensors(new Map([['active', { shape: [2, 1, 4, 4], data: new Float32Array(32).fill(0.5) }]])));
      await expectUsageError(forwardWithMaskArgs(mask), '--active: the mask must hold only 0 and 1, got 0.5 at index 0');
    });
  });
});
