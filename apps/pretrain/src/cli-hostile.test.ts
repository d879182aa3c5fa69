// Twenty hostile invocations of the real CLI (node bin/sparkmim.mjs): each one line on stderr, exit code 2,
// no stack trace, nothing from Dawn (run without the SwiftShader driver, so that Dawn would complain if it
// were loaded), in under 10 seconds.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';

const bin = path.resolve(__dirname, '../bin/sparkmim.mjs');
let folder: string;
let runner: string;
const at = (...parts: string[]) => path.join(folder, ...parts);

/** A safetensors file: an 8-byte header length, then `header` (as given), then `data` bytes. */
function safetensors(header: string, data = 0, declaredLength = Buffer.byteLength(header)): Buffer {
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(declaredLength));
  return Buffer.concat([prefix, Buffer.from(header), Buffer.alloc(data)]);
}

beforeAll(async () => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-hostile-'));
  runner = path.join(folder, 'sparkmim.mjs');
  fs.mkdirSync(at('images'));
  fs.mkdirSync(at('empty'));
  fs.mkdirSync(at('broken'));
  for (let i = 0; i < 2; i++) {
    const pixels = Buffer.alloc(64 * 64 * 3, 40 * i + 30);
    await sharp(pixels, { raw: { width: 64, height: 64, channels: 3 } })
      .png()
      .toFile(at('images', `image${i}.png`));
  }
  fs.writeFileSync(at('broken', 'a.png'), 'not a png');
  fs.writeFileSync(at('broken', 'b.jpg'), '');
  fs.writeFileSync(at('typo.json'), '{"batchsize": 2}');
  fs.writeFileSync(at('malformed.json'), '{"batchSize": 2,');
  const tensor = '{"x":{"dtype":"F32","shape":[1,3,64,64],"data_offsets":[0,49152]}}';
  fs.writeFileSync(at('input.safetensors'), safetensors(tensor, 49152));
  fs.writeFileSync(at('truncated.safetensors'), safetensors(tensor, 1000));
  fs.writeFileSync(at('huge-header.safetensors'), safetensors('{}', 0, 2 ** 40));
  fs.writeFileSync(at('huge-shape.safetensors'), safetensors('{"w":{"dtype":"F32","shape":[1000000,1000000,1000000],"data_offsets":[0,16]}}', 16));
  fs.writeFileSync(at('offsets.safetensors'), safetensors('{"w":{"dtype":"F32","shape":[4],"data_offsets":[4000000000,4000000016]}}', 16));
  fs.writeFileSync(at('not-a-model.safetensors'), safetensors('{"hello":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', 16));
  // The launcher rebuilds the bundle when the sources are newer: done here, outside the timed calls, which
  // then run the bundle itself (as the launcher does once it is built).
  const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  expect({ status: help.status, stderr: help.stderr }).toEqual({ status: 0, stderr: '' });
  fs.writeFileSync(
    runner,
    `const { main } = await import(${JSON.stringify(pathToFileURL(path.resolve(__dirname, '../dist/cli.js')).href)});\nprocess.exitCode = await main(process.argv.slice(2));\n`,
  );
}, 180_000);
afterAll(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

const pretrain = (...args: string[]) => ['pretrain', '--data', at('images'), '--model', 'resnet18', '--input-size', '64', ...args];
const forward = (weights: string) => ['forward', '--weights', at(weights), '--input', `${at('input.safetensors')}:x`, '--out', at('out.safetensors')];

const CASES: [string, () => string[], RegExp][] = [
  ['a missing data folder', () => ['pretrain', '--data', at('nowhere')], /--data: image folder not found/],
  ['an empty data folder', () => ['pretrain', '--data', at('empty')], /--data: no images in/],
  ['a folder of broken images', () => ['pretrain', '--data', at('broken')], /--data: none of the 2 image files .* could be decoded/],
  ['a mask ratio of 1.5', () => pretrain('--mask-ratio', '1.5'), /--mask-ratio is 1\.5, expected a number between 0 and 1/],
  ['a batch size of 0', () => pretrain('--batch-size', '0'), /--batch-size is 0, expected a whole number >= 1/],
  ['a batch size of 1e9', () => pretrain('--batch-size', '1e9'), /--batch-size 1000000000 of 64x64 images is .* GiB of input alone/],
  [
    'an input size of 100',
    () => pretrain('--input-size', '100', '--backend', 'cpu'),
    /--input-size is 100, which is not a multiple of resnet18's downsample ratio 32/,
  ],
  ['an input size of 1000000', () => pretrain('--input-size', '1000000'), /--input-size is 1000000, expected sides of at most 8192 pixels/],
  ['0 epochs', () => pretrain('--epochs', '0'), /--epochs is 0, expected a whole number >= 1/],
  ['1e9 epochs', () => pretrain('--epochs', '1e9'), /--epochs is 1000000000, expected at most 100000/],
  ['an unknown model', () => pretrain('--model', 'resnet19'), /--model: unknown model 'resnet19': expected one of resnet18/],
  ['an unknown backend', () => pretrain('--backend', 'quantum'), /--backend: unknown backend 'quantum': expected one of cpu/],
  ['a missing config file', () => ['pretrain', '--config', at('none.json')], /--config: cannot read .*none\.json: no such file/],
  [
    'a config file with an unknown key',
    () => ['pretrain', '--config', at('typo.json'), '--data', at('images')],
    /unknown key\(s\) batchsize; valid keys/,
  ],
  ['a malformed config file', () => ['pretrain', '--config', at('malformed.json'), '--data', at('images')], /malformed\.json is not valid JSON/],
  ['a missing run to resume', () => ['pretrain', '--resume', at('no-run')], /--resume: .*no-run does not exist/],
  ['forward: a truncated safetensors file', () => forward('truncated.safetensors'), /--weights: .*truncated/],
  [
    'forward: a huge header length',
    () => forward('huge-header.safetensors'),
    /--weights: .*the header length is 1099511627776 bytes, expected at most/,
  ],
  ['forward: a huge shape', () => forward('huge-shape.safetensors'), /--weights: .*tensor 'w' \[1000000, 1000000, 1000000\] F32 needs/],
  ['forward: offsets past the end', () => forward('offsets.safetensors'), /--weights: .*the file is truncated/],
  ['forward: a file that is no model', () => forward('not-a-model.safetensors'), /--weights: /],
  [
    'forward: --out into a missing folder',
    () => [...forward('input.safetensors').slice(0, -1), at('missing', 'out.safetensors')],
    /--out: the folder of .*missing\/out\.safetensors \(.*missing\) does not exist: create it first/,
  ],
  ['an unknown command', () => ['pretrian', '--data', at('images')], /^sparkmim: unknown command 'pretrian'/],
];

describe('hostile invocations of the CLI', () => {
  // Without the SwiftShader driver that jest's setup provides: Dawn would print its complaints if loaded.
  const env = { ...process.env };
  delete env.VK_ICD_FILENAMES;
  delete env.VK_DRIVER_FILES;

  it('an unreadable sub-folder of the data (EACCES): one line naming it, exit code 2', () => {
    const data = at('locked-data');
    fs.mkdirSync(path.join(data, 'private'), { recursive: true });
    fs.copyFileSync(at('images', 'image0.png'), path.join(data, 'image0.png'));
    fs.chmodSync(path.join(data, 'private'), 0o000);
    // root reads any folder: the CLI then runs as the unprivileged 'nobody' (the temporary folder opened to it).
    const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    fs.chmodSync(folder, 0o755);
    try {
      const result = spawnSync(process.execPath, [runner, 'pretrain', '--data', data, '--backend', 'cpu'], {
        encoding: 'utf8',
        env,
        cwd: os.tmpdir(),
        timeout: 60_000,
        ...asNobody,
      });
      expect({ status: result.status, stderr: result.stderr }).toEqual({
        status: 2,
        stderr: `sparkmim: --data: cannot read ${path.join(data, 'private')} (in the image folder ${data}): permission denied\n`,
      });
    } finally {
      fs.chmodSync(path.join(data, 'private'), 0o755);
    }
  });

  it('an --out folder that cannot be written (EACCES): one line naming it, exit code 2, nothing set up', () => {
    const readOnly = at('read-only');
    fs.mkdirSync(readOnly);
    fs.chmodSync(readOnly, 0o555);
    const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    fs.chmodSync(folder, 0o755);
    const out = path.join(readOnly, 'run');
    const result = spawnSync(process.execPath, [runner, 'pretrain', '--data', at('images'), '--out', out], {
      encoding: 'utf8',
      env,
      cwd: os.tmpdir(),
      timeout: 60_000,
      ...asNobody,
    });
    expect({ status: result.status, stderr: result.stderr }).toEqual({
      status: 2,
      stderr: `sparkmim: --out: cannot write in ${readOnly}: permission denied\n`,
    });
    expect(fs.existsSync(out)).toBe(false);
  });

  it.each(CASES)('%s: one line, exit code 2, no stack trace, no Dawn, under 10 s', (_name, args, message) => {
    const started = performance.now();
    const result = spawnSync(process.execPath, [runner, ...args()], { encoding: 'utf8', env, cwd: folder, timeout: 60_000 });
    const seconds = (performance.now() - started) / 1000;
    expect({ status: result.status, lines: result.stderr.trimEnd().split('\n').length, stdout: result.stdout }).toEqual({
      status: 2,
      lines: 1,
      stdout: '',
    });
    expect(result.stderr).toMatch(/^sparkmim: /);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/\n\s+at |Vulkan|vkCreateInstance|Dawn|XDG_RUNTIME_DIR|Warning:/);
    expect(seconds).toBeLessThan(10);
  });
});
