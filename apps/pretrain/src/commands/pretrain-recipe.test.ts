// `sparkmim pretrain`: the official recipe per model (help, resolved config), rectangular input sizes and
// a convnet from the user's own module.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { sparkRecipe } from '@sparkmim/trainer';
import { runCli } from '../testing/run-cli';
import { PRETRAIN_HELP } from './pretrain';
import { inputSizeOf, resolveConfig } from './pretrain-config';

let folder: string;
let images: string;
beforeAll(async () => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-recipe-'));
  images = path.join(folder, 'images');
  fs.mkdirSync(images);
  for (let i = 0; i < 2; i++) {
    const [width, height] = [80, 60];
    const pixels = Buffer.alloc(width * height * 3);
    for (let p = 0; p < width * height; p++) pixels.set([(3 * (p % width) + 50 * i) & 255, (4 * Math.floor(p / width)) & 255, 90], 3 * p);
    await sharp(pixels, { raw: { width, height, channels: 3 } })
      .png()
      .toFile(path.join(images, `image${i}.png`));
  }
});
afterAll(() => fs.rmSync(folder, { recursive: true, force: true }));

// One step of batch 2 per epoch, two epochs (the schedule needs two steps), the narrowest decoder.
const QUICK = [
  '--data',
  '',
  '--decoder-width',
  '32',
  '--input-size',
  '64',
  '--batch-size',
  '2',
  '--epochs',
  '2',
  '--backend',
  'cpu',
  '--preview-every',
  '0',
];
const quick = (out: string, ...flags: string[]) => [
  'pretrain',
  ...QUICK.map((flag) => (flag === '' ? images : flag)),
  '--out',
  path.join(folder, out),
  ...flags,
];
const savedConfig = (out: string) => JSON.parse(fs.readFileSync(path.join(folder, out, 'config.json'), 'utf8'));

describe('pretrain recipe', () => {
  it("--help shows every model's drop path, beta2, clip and densify norm, as sparkRecipe (the official table) has them", () => {
    const rows = new Map<string, string[]>();
    for (const line of PRETRAIN_HELP.split('\n')) {
      const match = /^ {2}(resnet\d+(?:, \d+)?|convnext_\w+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(bn|ln)$/.exec(line);
      // 'resnet18, 34' is two rows in one.
      if (match) for (const name of match[1].split(', ')) rows.set(/^\d+$/.test(name) ? `resnet${name}` : name, match.slice(2));
    }
    const models = [
      'resnet18',
      'resnet34',
      'resnet50',
      'resnet101',
      'resnet152',
      'resnet200',
      'convnext_tiny',
      'convnext_small',
      'convnext_base',
      'convnext_large',
    ];
    expect([...rows.keys()].sort()).toEqual(models.sort());
    for (const model of models) {
      const { dropPathRate, beta2, clip, densifyNorm } = sparkRecipe(model);
      expect({ model, row: rows.get(model) }).toEqual({ model, row: [String(dropPathRate), String(beta2), String(clip), densifyNorm] });
    }
    for (const flag of ['--drop-path X', '--beta2 X', '--clip X', '--densify-norm NAME', '--input-size N|WxH', '--model NAME|FILE'])
      expect(PRETRAIN_HELP).toContain(flag);
  });

  it("resolves the model's defaults, and flags over them; bad values are one line", () => {
    const resolved = (values: Record<string, unknown>) => {
      const { dropPath, beta2, clip, densifyNorm } = resolveConfig([{ values, from: 'flag' }]);
      return { dropPath, beta2, clip, densifyNorm };
    };
    expect(resolved({ model: 'resnet50' })).toEqual({ dropPath: 0.05, beta2: 0.95, clip: 5, densifyNorm: 'bn' });
    expect(resolved({ model: 'convnext_small' })).toEqual({ dropPath: 0.2, beta2: 0.999, clip: 5, densifyNorm: 'ln' });
    expect(resolved({ model: 'convnext_large', dropPath: '0', beta2: '0.99', clip: '0', densifyNorm: 'bn' })).toEqual({
      dropPath: 0,
      beta2: 0.99,
      clip: 0,
      densifyNorm: 'bn',
    });
    expect(() => resolved({ dropPath: '1' })).toThrow('--drop-path is 1, expected a number in [0, 1), e.g. 0.1');
    expect(() => resolved({ beta2: '1.5' })).toThrow('--beta2 is 1.5, expected a number in [0, 1), e.g. 0.999');
    expect(() => resolved({ clip: '-1' })).toThrow('--clip is -1, expected a number >= 0 (0 turns clipping off)');
    expect(() => resolved({ densifyNorm: 'gn' })).toThrow("--densify-norm is 'gn', expected bn, ln or none");
  });

  it('--sparse-path: auto by default, rows or dense when asked (ResNets and ConvNeXts); unknown values are one line', () => {
    const sparsePath = (values: Record<string, unknown>) => resolveConfig([{ values, from: 'flag' }]).sparsePath;
    expect([
      sparsePath({}),
      sparsePath({ sparsePath: 'rows' }),
      sparsePath({ model: 'convnext_tiny', sparsePath: 'dense' }),
      sparsePath({ model: 'convnext_tiny', sparsePath: 'rows' }),
    ]).toEqual(['auto', 'rows', 'dense', 'rows']);
    expect(() => sparsePath({ sparsePath: 'sparse' })).toThrow("--sparse-path is 'sparse', expected rows, dense or auto");
    expect(PRETRAIN_HELP).toContain('--sparse-path NAME');
  });

  it('reads --input-size N or WIDTHxHEIGHT, and names a bad one', () => {
    const size = (inputSize: unknown) => inputSizeOf(resolveConfig([{ values: { inputSize }, from: 'flag' }]));
    expect(size('224')).toEqual({ height: 224, width: 224 });
    expect(size('320x192')).toEqual({ height: 192, width: 320 });
    expect(size(96)).toEqual({ height: 96, width: 96 });
    expect(() => size('320x')).toThrow('--input-size is "320x", expected a whole number >= 1 (e.g. 224) or WIDTHxHEIGHT (e.g. 320x192)');
    expect(() => size('0')).toThrow('--input-size is "0", expected a whole number >= 1 (e.g. 224) or WIDTHxHEIGHT (e.g. 320x192)');
  });

  it('pre-trains resnet50 and convnext_small (narrowed) with their official recipe, recorded in config.json', async () => {
    const resnet = await runCli(quick('r50', '--model', 'resnet50', '--depths', '1,1,1,1', '--widths', '2,2,2,2', '--stem-width', '4'));
    expect(resnet.stderr).toBe('');
    expect(resnet.code).toBe(0);
    expect(savedConfig('r50')).toMatchObject({ model: 'resnet50', dropPath: 0.05, beta2: 0.95, clip: 5, densifyNorm: 'bn' });
    const convnext = await runCli(quick('cnx', '--model', 'convnext_small', '--depths', '1,1,1,1', '--dims', '8,8,8,8'));
    expect(convnext.code).toBe(0);
    expect(savedConfig('cnx')).toMatchObject({ model: 'convnext_small', dropPath: 0.2, beta2: 0.999, clip: 5, densifyNorm: 'ln' });
    expect(resnet.stdout).toMatch(/dropPath\s+0\.05/);
  });

  it('trains and previews rectangles: --input-size 96x64 (4 rows of 96x64 pictures, enlarged twice)', async () => {
    const result = await runCli(
      quick('rect', '--model', 'resnet18', '--depths', '1,1,1,1', '--widths', '4,8,8,8', '--stem-width', '4', '--input-size', '96x64'),
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(savedConfig('rect').inputSize).toBe('96x64');
    const preview = await sharp(path.join(folder, 'rect', 'previews', 'epoch-0002.png')).metadata();
    // 4 columns of 192-pixel cells and 5 gaps of 2; 4 rows of 128-pixel cells and 5 gaps.
    expect({ width: preview.width, height: preview.height }).toEqual({ width: 4 * 192 + 10, height: 4 * 128 + 10 });
    const bad = await runCli(quick('rect-bad', '--model', 'resnet18', '--input-size', '96x80'));
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe(
      "sparkmim: --input-size is 96x80: its height 80 is not a multiple of resnet18's downsample ratio 32 (use 64 or 96)",
    );
  });

  it('pre-trains a convnet from an ES module file, and names a malformed module in one line', async () => {
    // A .js file in a folder of "type": "module" (what a user's project has; a .mjs file works the same way).
    const modules = path.join(folder, 'modules');
    fs.mkdirSync(modules);
    fs.writeFileSync(path.join(modules, 'package.json'), '{ "type": "module" }\n');
    const good = path.join(modules, 'my-convnet.js');
    fs.writeFileSync(good, 'export default ({ backbones, seed }) => backbones.createTinyConvNet({ channels: [4, 8, 8, 8], seed });\n');
    const result = await runCli(quick('custom', '--model', good));
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(savedConfig('custom')).toMatchObject({ model: good, dropPath: 0, beta2: 0.999, clip: 5, densifyNorm: 'bn' });
    const bad = path.join(modules, 'bad-convnet.js');
    fs.writeFileSync(bad, 'export default ({ backbones, seed }) => Object.assign(backbones.createTinyConvNet({ seed }), { downsampleRatio: 16 });\n');
    const failed = await runCli(quick('custom-bad', '--model', bad));
    expect(failed.code).toBe(2);
    expect(failed.stderr.trim()).toBe(
      `sparkmim: --model ${bad}: downsampleRatio is 16, expected 32 (SparK's decoder upsamples the last map 32 times)`,
    );
    const missing = await runCli(quick('custom-missing', '--model', './no-such-convnet.js'));
    expect(missing.stderr.trim()).toBe(
      'sparkmim: --model ./no-such-convnet.js: no such file (a model name, e.g. resnet50, or the path of an ES module whose default export is a Backbone)',
    );
  });
});
