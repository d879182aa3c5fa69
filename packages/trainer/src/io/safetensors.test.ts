import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { describeBackends, goldenFileNames, goldensDir, loadGolden } from '@sparkmim/test-utils';
import { decodeSafetensors, encodeSafetensors } from './safetensors';
import type { SafetensorsEntry } from './safetensors';
import { safetensorsEntriesFromTensors, tensorsFromSafetensors } from './tensors';

function goldenBytes(file: string): Uint8Array {
  return new Uint8Array(fs.readFileSync(path.join(goldensDir(), file)));
}

/** A safetensors file built by hand: header JSON (unpadded unless given so) then the data bytes. */
function handMade(header: object, data: number[]): Uint8Array {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const bytes = new Uint8Array(8 + json.length + data.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
  bytes.set(json, 8);
  bytes.set(data, 8 + json.length);
  return bytes;
}

function headerOf(bytes: Uint8Array): { length: number; text: string } {
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { length, text: Buffer.from(bytes.subarray(8, 8 + length)).toString('utf8') };
}

describe('decodeSafetensors', () => {
  for (const file of goldenFileNames()) {
    it(`reads ${file} as the test-utils golden reader does`, () => {
      const { tensors, metadata } = decodeSafetensors(goldenBytes(file), { source: file });
      const golden = loadGolden(file);
      expect(metadata).toEqual(golden.metadata);
      expect([...tensors.keys()]).toEqual(golden.keys());
      for (const [name, tensor] of tensors) {
        expect(tensor.dtype).toBe('F32');
        expect(tensor.shape).toEqual(golden.get(name).shape);
        // Bitwise equal (compared as bytes: jest's deep equality is slow on large arrays).
        const expected = golden.get(name).data;
        expect({
          name,
          sameBits: Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength).equals(
            Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength),
          ),
        }).toEqual({ name, sameBits: true });
      }
    });

    it(`re-encodes ${file} with byte-identical data and an equivalent padded header`, () => {
      const original = goldenBytes(file);
      const { tensors, metadata } = decodeSafetensors(original);
      const encoded = encodeSafetensors(tensors as Map<string, SafetensorsEntry>, metadata);
      const before = headerOf(original);
      const after = headerOf(encoded);
      expect(after.length % 8).toBe(0);
      expect(after.text).toMatch(/^\{"__metadata__":/);
      expect(JSON.parse(after.text)).toEqual(JSON.parse(before.text));
      expect(Buffer.from(encoded.subarray(8 + after.length)).equals(Buffer.from(original.subarray(8 + before.length)))).toBe(true);
    });
  }

  it('reads I64, I32, F16, BF16, BOOL and scalars from a hand-made file', () => {
    const data: number[] = [];
    const push = (bytes: ArrayBuffer) => data.push(...new Uint8Array(bytes));
    const i64 = new DataView(new ArrayBuffer(16));
    i64.setBigInt64(0, -3n, true);
    i64.setBigInt64(8, 2147483647n, true);
    push(i64.buffer);
    push(new Int32Array([7, -8]).buffer);
    push(new Uint16Array([0x3c00, 0xc000, 0x3555]).buffer); // F16: 1, -2, 0.333251953125
    push(new Uint16Array([0x3f80, 0x4049]).buffer); // BF16: 1, 3.140625
    push(new Uint8Array([1, 0, 1]).buffer);
    push(new Float32Array([2.5]).buffer);
    const bytes = handMade(
      {
        a: { dtype: 'I64', shape: [2], data_offsets: [0, 16] },
        b: { dtype: 'I32', shape: [2, 1], data_offsets: [16, 24] },
        c: { dtype: 'F16', shape: [3], data_offsets: [24, 30] },
        d: { dtype: 'BF16', shape: [2], data_offsets: [30, 34] },
        e: { dtype: 'BOOL', shape: [3], data_offsets: [34, 37] },
        f: { dtype: 'F32', shape: [], data_offsets: [37, 41] }, // unaligned on purpose
      },
      data,
    );
    const { tensors, metadata } = decodeSafetensors(bytes);
    expect(metadata).toEqual({});
    expect(tensors.get('a')).toEqual({ dtype: 'I64', shape: [2], data: new Int32Array([-3, 2147483647]) });
    expect(tensors.get('b')).toEqual({ dtype: 'I32', shape: [2, 1], data: new Int32Array([7, -8]) });
    expect(tensors.get('c')).toEqual({ dtype: 'F16', shape: [3], data: new Float32Array([1, -2, 0.333251953125]) });
    expect(tensors.get('d')).toEqual({ dtype: 'BF16', shape: [2], data: new Float32Array([1, 3.140625]) });
    expect(tensors.get('e')).toEqual({ dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) });
    expect(tensors.get('f')).toEqual({ dtype: 'F32', shape: [], data: new Float32Array([2.5]) });
  });

  it('names the file size and what was expected for truncated files', () => {
    const original = goldenBytes(goldenFileNames()[0]);
    const { length } = headerOf(original);
    expect(() => decodeSafetensors(original.subarray(0, 5), { source: 'x.safetensors' })).toThrow(
      'safetensors (x.safetensors): the file is 5 bytes, expected at least 8 (the u64 header length)',
    );
    expect(() => decodeSafetensors(original.subarray(0, 1000))).toThrow(
      `safetensors: the file is 1000 bytes, but its header length says ${length} bytes of JSON follow the 8-byte prefix (expected at least ${8 + length} bytes): the file is truncated`,
    );
    const cut = original.byteLength - 100;
    expect(() => decodeSafetensors(original.subarray(0, cut))).toThrow(
      new RegExp(`needs the file to be at least ${original.byteLength} bytes, but it is ${cut} bytes: the file is truncated`),
    );
  });

  it('says what it expected for malformed headers', () => {
    expect(() => decodeSafetensors(handMade({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, [0, 0, 0, 0]))).toThrow(
      "safetensors: tensor 'a' [2] F32 needs 8 bytes, but its data_offsets [0, 4] span 4",
    );
    expect(() => decodeSafetensors(handMade({ a: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, new Array(8).fill(0)))).toThrow(
      `safetensors: tensor 'a' has dtype "C64", expected one of`,
    );
    expect(() => decodeSafetensors(handMade({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, [0, 0, 0, 0]))).toThrow(
      "safetensors: tensor 'a' has shape [-1], expected an array of non-negative integers",
    );
    expect(() => decodeSafetensors(handMade({ __metadata__: { epoch: 3 } }, []))).toThrow(
      'safetensors: __metadata__ must be an object of strings, got {"epoch":3}',
    );
    const big = new DataView(new ArrayBuffer(16));
    big.setBigInt64(0, 2n ** 40n, true);
    expect(() =>
      decodeSafetensors(handMade({ a: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, Array.from(new Uint8Array(big.buffer, 0, 8)))),
    ).toThrow("safetensors: tensor 'a': I64 element 0 is 1099511627776, outside the int32 range this reader returns");
    const notJson = handMade({}, []);
    notJson[8] = 0x5b; // '['
    expect(() => decodeSafetensors(notJson)).toThrow('safetensors: the 2-byte header is not valid UTF-8 JSON');
  });

  it('refuses overlapping, repeated, gapped and trailing layouts before decoding anything, and inherited dtype names', () => {
    const f32 = (begin: number, end: number, shape = [(end - begin) / 4]) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });
    const zeros = (count: number) => new Array(count).fill(0);
    // 2000 entries pointing at the same 4 KiB would decode to 8 MB from a 4 KiB data section (the issue's
    // 1.2 MB file decoding to 2.1 GB, scaled down).
    const repeated = Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`t${i}`, f32(0, 4096)]));
    expect(() => decodeSafetensors(handMade(repeated, zeros(4096)), { source: 'bomb.safetensors' })).toThrow(
      "safetensors (bomb.safetensors): tensor 't1' has data_offsets [0, 4096], which overlap tensor 't0' [0, 4096]: each byte of the data must belong to one tensor",
    );
    expect(() => decodeSafetensors(handMade({ a: f32(0, 8), b: f32(4, 12) }, zeros(12)))).toThrow(
      "safetensors: tensor 'b' has data_offsets [4, 12], which overlap tensor 'a' [0, 8]",
    );
    expect(() => decodeSafetensors(handMade({ a: f32(0, 4), b: f32(8, 12) }, zeros(12)))).toThrow(
      "safetensors: data bytes [4, 8) belong to no tensor (a hole before tensor 'b'): the tensors must cover the data without gaps",
    );
    expect(() => decodeSafetensors(handMade({ a: f32(4, 8) }, zeros(8)))).toThrow(
      "safetensors: data bytes [0, 4) belong to no tensor (a hole before tensor 'a')",
    );
    const trailing = handMade({ a: f32(0, 4) }, zeros(10));
    expect(() => decodeSafetensors(trailing)).toThrow(
      `safetensors: 6 bytes follow the last tensor's data (which ends at ${trailing.byteLength - 6} of ${trailing.byteLength} bytes): expected none`,
    );
    // Empty tensors take no bytes and may sit anywhere in the tiling.
    expect([...decodeSafetensors(handMade({ a: f32(0, 4), e: f32(4, 4, [0, 3]), b: f32(4, 8) }, zeros(8))).tensors.keys()]).toEqual(['a', 'e', 'b']);
    for (const inherited of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      expect(() => decodeSafetensors(handMade({ a: { dtype: inherited, shape: [1], data_offsets: [0, 4] } }, zeros(4)))).toThrow(
        `safetensors: tensor 'a' has dtype "${inherited}", expected one of BOOL, U8`,
      );
    }
    // A shape whose size overflows: refused by its size, not by an allocation.
    expect(() => decodeSafetensors(handMade({ a: { dtype: 'F32', shape: [2 ** 31, 2 ** 31, 2 ** 31], data_offsets: [0, 4] } }, zeros(4)))).toThrow(
      "safetensors: tensor 'a' [2147483648, 2147483648, 2147483648] F32 needs",
    );
  });
});

describe('encodeSafetensors', () => {
  it('writes metadata first, tensors by descending dtype then name, and pads the header with spaces', () => {
    const bytes = encodeSafetensors(
      {
        b: { shape: [1], data: new Float32Array([1]) },
        '10': { shape: [1], data: new Float32Array([2]) },
        '9': { shape: [1], data: new Float32Array([3]) },
        flag: { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
        count: { dtype: 'I64', shape: [], data: [5] },
        index: { shape: [2], data: new Int32Array([4, -4]) },
      },
      { format: 'pt' },
    );
    const { length, text } = headerOf(bytes);
    expect(length % 8).toBe(0);
    expect(text.trimEnd()).toBe(
      '{"__metadata__":{"format":"pt"},' +
        '"count":{"dtype":"I64","shape":[],"data_offsets":[0,8]},' +
        '"10":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},' +
        '"9":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},' +
        '"b":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},' +
        '"index":{"dtype":"I32","shape":[2],"data_offsets":[20,28]},' +
        '"flag":{"dtype":"BOOL","shape":[2],"data_offsets":[28,30]}}',
    );
    expect(text.slice(text.trimEnd().length)).toMatch(/^ *$/);
    expect(bytes.byteLength).toBe(8 + length + 30);
    const { tensors, metadata } = decodeSafetensors(bytes);
    expect(metadata).toEqual({ format: 'pt' });
    expect(tensors.get('count')).toEqual({ dtype: 'I64', shape: [], data: new Int32Array([5]) });
    expect(tensors.get('index')).toEqual({ dtype: 'I32', shape: [2], data: new Int32Array([4, -4]) });
    expect(tensors.get('flag')).toEqual({ dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) });
    expect(tensors.get('9')).toEqual({ dtype: 'F32', shape: [1], data: new Float32Array([3]) });
  });

  it('says what it expected for bad entries', () => {
    expect(() => encodeSafetensors({ w: { shape: [2, 2], data: new Float32Array(3) } })).toThrow(
      "encodeSafetensors: tensor 'w' has shape [2, 2] (4 elements) but 3 values",
    );
    expect(() => encodeSafetensors({ n: { dtype: 'I32', shape: [1], data: [1.5] } })).toThrow(
      "encodeSafetensors: tensor 'n' (I32) element 0 is 1.5, expected an integer in [-2147483648, 2147483647]",
    );
    expect(() => encodeSafetensors({ __metadata__: { shape: [], data: [1] } })).toThrow(
      "encodeSafetensors: '__metadata__' is reserved and cannot name a tensor",
    );
  });
});

describeBackends('safetensors and tfjs tensors', () => {
  it('round-trips float32, int32 and bool tensors', async () => {
    const originals = new Map<string, tf.Tensor>([
      [
        'weights',
        tf.tensor([
          [1.5, -2],
          [3, 4.25],
        ]),
      ],
      ['step', tf.scalar(12, 'int32')],
      ['mask', tf.tensor([true, false, true], [3], 'bool')],
    ]);
    const bytes = encodeSafetensors(await safetensorsEntriesFromTensors(originals));
    const loaded = tensorsFromSafetensors(decodeSafetensors(bytes).tensors);
    for (const [name, original] of originals) {
      const copy = loaded.get(name)!;
      expect({ name, dtype: copy.dtype, shape: copy.shape }).toEqual({ name, dtype: original.dtype, shape: original.shape });
      expect(Array.from(await copy.data())).toEqual(Array.from(await original.data()));
    }
    tf.dispose([...originals.values(), ...loaded.values()]);
  });
});
