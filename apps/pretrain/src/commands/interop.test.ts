import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeSafetensors, loadTfjsWeights, readPth, PthTensor } from '@sparkmim/trainer';
import { goldensDir, loadGolden } from '@sparkmim/test-utils';
import { relativeError, runCli } from '../testing/run-cli';

// Fixtures made once by PyTorch with the official SparK code (packages/trainer/test/fixtures/pth).
const FIXTURES = path.resolve(__dirname, '../../../../packages/trainer/test/fixtures/pth');
const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as {
  fixtures: Record<string, { kind: string; parameters?: number }>;
};
const fixture = (name: string) => path.join(FIXTURES, name);

let folder: string;
beforeEach(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-interop-'));
});
afterEach(() => {
  fs.rmSync(folder, { recursive: true, force: true });
});

// The tensors of a .pth (the `module` of a checkpoint dict), as float32 bits.
function pthTensors(file: string): Map<string, { shape: number[]; bits: string }> {
  const { root } = readPth(new Uint8Array(fs.readFileSync(file)));
  const state =
    root instanceof Map && root.get('module') instanceof Map ? (root.get('module') as Map<unknown, unknown>) : (root as Map<unknown, unknown>);
  const tensors = new Map<string, { shape: number[]; bits: string }>();
  for (const [key, value] of state) {
    if (value instanceof PthTensor)
      tensors.set(String(key), { shape: value.shape, bits: Buffer.from(Float32Array.from(value.data).buffer).toString('base64') });
  }
  return tensors;
}

describe('sparkmim inspect', () => {
  const files = Object.entries(manifest.fixtures).filter(([, info]) => info.parameters);
  it.each(files)('%s: the kind and the parameter count PyTorch printed', async (file, info) => {
    const result = await runCli(['inspect', fixture(file)]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`\nkind: ${info.kind}\n`);
    expect(result.stdout).toContain(`\nparameters: ${info.parameters}\n`);
  });

  it('lists the architecture, the checkpoint entries, what is not loaded and every tensor', async () => {
    const result = await runCli(['inspect', fixture('resnet_withdecoder_1kpretrained_spark_style.pth')]);
    expect(result.stdout).toContain('\narchitecture: custom (resnet, bottleneck blocks, depths 1,1,1,1, stem width 4, widths 2,4,8,16)\n');
    expect(result.stdout).toContain('\narch: resnet50\n');
    expect(result.stdout).toContain('\nepoch: 41\n');
    expect(result.stdout).toContain('\nnot loaded: config, imn_m, imn_s, norm_black\n');
    expect(result.stdout).toContain('\n  sparse_encoder.sp_cnn.bn1.num_batches_tracked  []  int64\n');
  });

  it('a run folder: its settings as the official main.py arguments, then its model file', async () => {
    const run = path.join(folder, 'run');
    fs.mkdirSync(run);
    expect((await runCli(['convert', fixture('resnet_withdecoder_bare.pth'), path.join(run, 'model.it00000030-abcd.safetensors')])).code).toBe(0);
    const config = {
      model: 'resnet50',
      depths: [1, 1, 1, 1],
      decoderWidth: 32,
      inputSize: 224,
      maskRatio: 0.6,
      batchSize: 64,
      epochs: 10,
      baseLr: 2e-4,
      weightDecay: 0.04,
      weightDecayEnd: 0.2,
      optimizer: 'lamb',
      clip: 5,
    };
    const manifest = { format: 'sparkmim-checkpoint', config, files: { model: 'model.it00000030-abcd.safetensors' }, progress: { epoch: 3 } };
    fs.writeFileSync(path.join(run, 'checkpoint.json'), JSON.stringify(manifest));
    const result = await runCli(['inspect', run]);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain(
      'official main.py arguments: --model=resnet50 --input_size=224 --mask=0.6 --bs=64 --ep=10 --base_lr=0.0002 --wd=0.04 --wde=0.2 --opt=lamb --clip=5\n',
    );
    expect(result.stdout).toContain(
      "note: depths [1,1,1,1]: main.py builds only the named models\nnote: decoder width 32: main.py's LightDecoder is 768 wide\n",
    );
    expect(result.stdout).toContain('\nkind: spark-state\n');
    expect(result.stdout).toContain('\nparameters: 58024\n');
  });

  const hostile = ['os_system.pth', 'huge_list.pth', 'huge_string.pth', 'huge_shape.pth', 'lying_sizes.pth', 'truncated.pth', '../legacy.pth'];
  it.each(hostile)('refuses hostile/%s in one line with exit code 2', async (file) => {
    const started = Date.now();
    const result = await runCli(['inspect', fixture(`hostile/${file}`)]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(new RegExp(`^sparkmim: --file: ${fixture(`hostile/${file}`).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: [^\\n]+\\n$`));
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe('sparkmim convert', () => {
  it('official checkpoint -> .pth (official layout) and -> timm: every tensor bit-exact', async () => {
    const input = fixture('resnet_withdecoder_1kpretrained_spark_style.pth');
    const out = path.join(folder, 'out.pth');
    const result = await runCli(['convert', input, out]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const original = pthTensors(input);
    for (const key of ['imn_m', 'imn_s', 'norm_black']) original.delete(key);
    expect(pthTensors(out)).toEqual(original);
    const { root } = readPth(new Uint8Array(fs.readFileSync(out)));
    expect((root as Map<string, unknown>).get('epoch')).toBe(41);

    const timm = path.join(folder, 'timm.pth');
    expect((await runCli(['convert', out, timm, '--to', 'timm'])).code).toBe(0);
    expect(pthTensors(timm)).toEqual(pthTensors(fixture('resnet_1kpretrained_timm_style.pth')));
  });

  it("a golden as .pth gives the golden's forward pass through `forward --weights`", async () => {
    const golden = path.join(goldensDir(), 'convnext_narrow.safetensors');
    const pth = path.join(folder, 'golden.pth');
    const converted = await runCli(['convert', golden, pth, '--strip-prefix', 'param.']);
    expect(converted.stderr).toBe('');
    const out = path.join(folder, 'forward.safetensors');
    const result = await runCli([
      'forward',
      '--weights',
      pth,
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
    const { tensors } = decodeSafetensors(new Uint8Array(fs.readFileSync(out)));
    const expected = loadGolden('convnext_narrow.safetensors');
    for (const key of ['loss', 'rec', 'enc.0', 'dec_in.3']) {
      expect({ key, close: relativeError(tensors.get(key)!.data, expected.get(key).data) <= 1e-4 }).toEqual({ key, close: true });
    }
  });

  it('--to tfjs writes model.json and shards that loadTfjsWeights reads back bit-exact', async () => {
    const input = fixture('convnext_1kpretrained_official_style.pth');
    const out = path.join(folder, 'tfjs');
    const result = await runCli(['convert', input, out, '--to', 'tfjs']);
    expect(result.stderr).toBe('');
    expect(fs.readdirSync(out).sort()).toEqual(['group1-shard1of1.bin', 'model.json']);
    const fetch = async (url: string) => {
      const bytes = fs.readFileSync(url);
      return { ok: true, status: 200, arrayBuffer: async () => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) };
    };
    const loaded = await loadTfjsWeights(path.join(out, 'model.json'), { fetch });
    expect(loaded.kind).toBe('convnext-encoder');
    const expected = pthTensors(input);
    expect(
      new Map(
        [...loaded.state].map(([key, t]) => [
          key,
          { shape: t.shape, bits: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64') },
        ]),
      ),
    ).toEqual(expected);
  });

  it('refuses an unknown target and a hostile input with exit code 2', async () => {
    const bad = await runCli(['convert', fixture('strided.pth'), path.join(folder, 'x.bin')]);
    expect(bad).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(
        /^sparkmim: convert: cannot tell the format of .*x\.bin from its extension: give --to pth\|safetensors\|timm\|tfjs\n$/,
      ),
    });
    const hostile = await runCli(['convert', fixture('hostile/os_system.pth'), path.join(folder, 'x.pth')]);
    expect(hostile).toMatchObject({ code: 2, stderr: expect.stringContaining('refused global os.system') });
  });
});
