import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeSafetensors } from '../safetensors';
import { PickleOrderedDict, PickleTuple } from './pickle';
import { PthTensor, PthTensorOut, readPth, writePth } from './pth';
import { readZipEntries, writeZip } from './zip';

// Fixtures made once by PyTorch (test/fixtures/pth/make_fixtures.py); expected.safetensors holds every
// tensor as float32, written by PyTorch too.
const FIXTURES = path.join(__dirname, '../../../test/fixtures/pth');
const manifest = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as {
  fixtures: Record<string, { kind: string; group?: string; keys?: number; parameters?: number }>;
};
const expected = decodeSafetensors(new Uint8Array(fs.readFileSync(path.join(FIXTURES, 'expected.safetensors')))).tensors;
const read = (file: string) => new Uint8Array(fs.readFileSync(path.join(FIXTURES, file)));

// Every tensor of a read object with its dotted path ('module.conv1.weight').
function tensorsOf(value: unknown, prefix = ''): Map<string, PthTensor> {
  const found = new Map<string, PthTensor>();
  if (value instanceof PthTensor) found.set(prefix, value);
  else if (value instanceof Map)
    for (const [key, item] of value)
      for (const [name, tensor] of tensorsOf(item, prefix ? `${prefix}.${String(key)}` : String(key))) found.set(name, tensor);
  return found;
}

function stateOf(file: string): Map<string, PthTensor> {
  const { root } = readPth(read(file), { source: file });
  const module = root instanceof Map && root.get('module') instanceof Map ? root.get('module') : root;
  return tensorsOf(module);
}

// A pickle BINUNICODE string, as latin1 characters.
function uni(text: string): string {
  return `X${String.fromCharCode(text.length & 0xff, (text.length >> 8) & 0xff, 0, 0)}${text}`;
}

describe('readPth on files PyTorch wrote', () => {
  const stateFiles = Object.entries(manifest.fixtures).filter(([, info]) => info.group);
  it.each(stateFiles)('%s: every tensor bit-exact (shape and float32 bits)', (file, info) => {
    const state = stateOf(file);
    expect(state.size).toBe(info.keys);
    for (const [key, tensor] of state) {
      // Encoder files of a model share its group: their keys are the model's without the encoder prefix.
      const want = expected.get(`${info.group}/${key}`) ?? expected.get(`${info.group}/sparse_encoder.sp_cnn.${key}`);
      if (!want) throw new Error(`no expected value for ${file} ${key}`);
      expect({ key, shape: tensor.shape }).toEqual({ key, shape: want.shape });
      const got = Float32Array.from(tensor.data);
      // Compare bits, so that NaN payloads and -0 count too.
      expect(
        Buffer.from(got.buffer).equals(Buffer.from((want.data as Float32Array).buffer, (want.data as Float32Array).byteOffset, want.data.byteLength)),
      ).toBe(true);
    }
  });

  it('reads the dtypes as stored: float16 and bfloat16 widened exactly, num_batches_tracked int64', () => {
    for (const [file, dtype] of [
      ['float16.pth', 'float16'],
      ['bfloat16.pth', 'bfloat16'],
      ['resnet_1kpretrained_timm_style.pth', 'float32'],
    ] as const) {
      const state = stateOf(file);
      expect(state.get('conv1.weight')!.dtype).toBe(dtype);
      expect(state.get('bn1.num_batches_tracked')).toMatchObject({ dtype: 'int64', shape: [], data: Int32Array.from([8]) }); // 7, then one training step
    }
  });

  it('rebuilds non-contiguous views, storage offsets, stride-0 expansions and int64 tensors', () => {
    const state = stateOf('strided.pth');
    // The obvious reference: index the base tensor PyTorch made, base[i][j][k] = (30 i + 6 j + k) / 2 - 7.
    const base = (i: number, j: number, k: number) => (30 * i + 6 * j + k) * 0.5 - 7;
    const transposed = state.get('transposed')!;
    expect(transposed.shape).toEqual([6, 5, 4]);
    expect(transposed.data[(2 * 5 + 3) * 4 + 1]).toBe(base(1, 3, 2));
    const sliced = state.get('sliced')!;
    expect(sliced.shape).toEqual([3, 3, 4]);
    expect(sliced.data[(1 * 3 + 2) * 4 + 3]).toBe(base(2, 4, 4));
    expect(Array.from(state.get('offset_view')!.data.subarray(0, 3))).toEqual([17, 18, 19].map((n) => n * 0.5 - 7));
    expect(Array.from(state.get('expanded')!.data)).toEqual([1.5, -2, 3.25, 1.5, -2, 3.25]);
    expect(state.get('scalar')).toMatchObject({ shape: [], data: Float32Array.from([2.5]) });
    expect(state.get('int64')).toMatchObject({ dtype: 'int64', shape: [2, 2], data: Int32Array.from([1, 3, -2, 2 ** 31 - 1]) });
  });

  it('reads the rest of an official checkpoint dict: meta values, the config dict, the optimizer state', () => {
    const { root } = readPth(read('convnext_withdecoder_1kpretrained_spark_style.pth'));
    if (!(root instanceof Map)) throw new Error('expected a dict');
    expect(root.get('arch')).toBe('convnext_small');
    expect(root.get('epoch')).toBe(41);
    expect(root.get('input_size')).toBe(32);
    expect(root.get('is_pretrain')).toBe(true);
    expect((root.get('module') as Map<unknown, unknown>).get('config')).toEqual(
      new Map<unknown, unknown>([
        ['mask_ratio', 0.6],
        ['densify_norm_str', 'ln'],
        ['sbn', false],
        ['hierarchy', 4],
        ['sparse_encoder.input_size', 32],
        ['dense_decoder.width', 32],
      ]),
    );
    const optimizer = root.get('optimizer') as Map<unknown, unknown>;
    expect([...(optimizer.get('state') as Map<unknown, unknown>).keys()]).toEqual([0, 1, 2]);
    const groups = optimizer.get('param_groups') as Map<unknown, unknown>[];
    expect(groups[0].get('betas')).toEqual([0.9, 0.95]);
  });
});

describe('readPth refuses what it must not read, quickly and in one line', () => {
  const cases: [string, RegExp][] = [
    [
      'os_system.pth',
      /^hostile\/os_system\.pth: pickle byte 2: refused global os\.system: only tensors, dicts, lists, tuples, strings, numbers, booleans and None are read \(no code runs\)$/,
    ],
    ['huge_list.pth', /^hostile\/huge_list\.pth: pickle byte 2: refused global builtins\.list/],
    [
      'huge_string.pth',
      /^hostile\/huge_string\.pth: pickle byte 2: BINUNICODE needs 4294967280 bytes but 4 are left \(truncated, or a length that lies\)$/,
    ],
    [
      'huge_shape.pth',
      /^hostile\/huge_shape\.pth: a tensor of shape \[1000000, 1000000\] \(1000000000000 elements, stride \[1000000, 1\], offset 0\) does not fit its storage 0 of 4 elements$/,
    ],
    [
      'lying_sizes.pth',
      /^hostile\/lying_sizes\.pth: zip entry strided\/data\/0 claims 2147483632 bytes at \d+ but the file has 2143 bytes \(truncated, or the sizes lie\)$/,
    ],
    ['truncated.pth', /^hostile\/truncated\.pth: no zip central directory \(truncated, or not a torch\.save file; 1285 bytes\)$/],
  ];
  it.each(cases)('%s', (file, message) => {
    const started = Date.now();
    let error: Error | undefined;
    try {
      readPth(read(`hostile/${file}`), { source: `hostile/${file}` });
    } catch (caught) {
      error = caught as Error;
    }
    expect(error?.message).toMatch(message);
    expect(error?.message).not.toContain('\n');
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('a file of many views over one storage (more memory than 4x the file)', () => {
    // 3000 views, each the whole 4096-element storage: 49 MB of tensors from a file of a few tens of KB.
    const view = (index: number) =>
      `${uni(`t${index}`)}ctorch._utils\n_rebuild_tensor_v2\n((${uni('storage')}ctorch\nFloatStorage\n${uni('0')}${uni('cpu')}M\x00\x10tQK\x00(M\x00\x10t(K\x01t\x89)tR`;
    const items = Array.from({ length: 3000 }, (_, index) => view(index)).join('');
    const data = Uint8Array.from(`\x80\x02}(${items}u.`, (c) => c.charCodeAt(0));
    const zip = writeZip([
      ['a/data.pkl', data],
      ['a/data/0', new Uint8Array(4096 * 4)],
    ]);
    expect(() => readPth(zip, { source: 'views.pth' })).toThrow(
      /^views\.pth: its tensors would take \d+ bytes from a \d+-byte file \(views of the same storage over and over\); refused$/,
    );
  });

  it('the legacy format and foreign bytes, with a plain message', () => {
    expect(() => readPth(read('legacy.pth'), { source: 'legacy.pth' })).toThrow(
      'legacy.pth: the legacy torch.save format (before PyTorch 1.6) is not read; load it in PyTorch and save it again with torch.save (the zip format is the default since 1.6)',
    );
    expect(() => readPth(new TextEncoder().encode('{"a": 1}'), { source: 'x.json' })).toThrow(
      'x.json: not a torch.save zip file (it starts with bytes 7b 22 61 22)',
    );
  });

  it('compressed entries', () => {
    const zip = writeZip([['a/data.pkl', Uint8Array.from([0x80, 2, 0x4e, 0x2e])]]);
    // Mark the entry deflated in the central directory.
    const central = zip.lastIndexOf(0x50, zip.length - 22 - 1 - 'a/data.pkl'.length - 45);
    const view = new DataView(zip.buffer);
    expect(view.getUint32(central, true)).toBe(0x02014b50);
    view.setUint16(central + 10, 8, true);
    expect(() => readZipEntries(zip, 'c.pth')).toThrow(
      'c.pth: zip entry a/data.pkl is compressed (method 8, deflate); torch.save stores entries uncompressed: re-save the file with torch.save',
    );
  });
});

describe('writePth', () => {
  it('writes what readPth reads back bit-exactly (dicts, OrderedDicts, lists, tuples, scalars, int64, tensors)', () => {
    const weight = Float32Array.from([1.5, -0, NaN, 3e-39, -1e30, 7]);
    const bytes = writePth(
      new Map<string, unknown>([
        [
          'module',
          new PickleOrderedDict(
            new Map<string, PthTensorOut>([
              ['w', new PthTensorOut({ shape: [2, 3], data: weight })],
              ['n', new PthTensorOut({ shape: [], data: Int32Array.from([-5]), dtype: 'int64' })],
            ]),
          ),
        ],
        ['meta', [1, 300, 70000, -3, 2 ** 40, -(2 ** 40), 0.25, 'ü', true, false, null, new PickleTuple([1, 'a'])]],
      ]),
    );
    const { root, archiveName } = readPth(bytes);
    expect(archiveName).toBe('archive');
    const module = (root as Map<string, unknown>).get('module') as Map<string, PthTensor>;
    expect(module.get('w')!.shape).toEqual([2, 3]);
    expect(Buffer.from((module.get('w')!.data as Float32Array).buffer).equals(Buffer.from(weight.buffer))).toBe(true);
    expect(module.get('n')).toMatchObject({ dtype: 'int64', shape: [], data: Int32Array.from([-5]) });
    expect((root as Map<string, unknown>).get('meta')).toEqual([1, 300, 70000, -3, 2 ** 40, -(2 ** 40), 0.25, 'ü', true, false, null, [1, 'a']]);
  });
});
