// PyTorch's `torch.save` files (the zip format of PyTorch >= 1.6), read and written without Python and
// without Node built-ins: bytes in, tensors and plain objects out, so this runs in a browser as well.

import { PickleOrderedDict, PickleTuple, type PickleWriter, pickle, unpickle, type PickleGlobal, type PickleValue } from './pickle';
import { PthFormatError, looksLikeLegacyPth, looksLikeZip, readZipEntries, writeZip } from './zip';

/** Element types of the storages this reader takes. */
export type PthDtype = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32';

const STORAGES: Record<string, { dtype: PthDtype; bytes: number }> = {
  FloatStorage: { dtype: 'float32', bytes: 4 },
  HalfStorage: { dtype: 'float16', bytes: 2 },
  BFloat16Storage: { dtype: 'bfloat16', bytes: 2 },
  DoubleStorage: { dtype: 'float64', bytes: 8 },
  LongStorage: { dtype: 'int64', bytes: 8 },
  IntStorage: { dtype: 'int32', bytes: 4 },
};

// Typed arrays index with numbers; a tensor past this many elements is not one a checkpoint of ours holds.
const MAX_ELEMENTS = 2 ** 31 - 1;

/**
 * A tensor read from a `.pth` file, contiguous (row-major) whatever its strides in the file. Floating
 * storages (float16 and bfloat16 widened exactly) give a Float32Array, float64 a Float64Array, integer
 * storages an Int32Array (int64 values beyond ±2^31 are refused).
 */
export class PthTensor {
  readonly pickleCustom = true as const;
  constructor(
    /** The storage's element type in the file. */
    readonly dtype: PthDtype,
    readonly shape: number[],
    readonly data: Float32Array | Float64Array | Int32Array,
  ) {}
}

/** A `.pth` file read: the pickled object, with every tensor a {@link PthTensor}. */
export interface ReadPth {
  /** Dicts and OrderedDicts are `Map`s, lists and tuples arrays, tensors {@link PthTensor}s. */
  root: PickleValue;
  /** The archive's folder name inside the zip (`torch.save` uses the file name without extension). */
  archiveName: string;
}

export interface ReadPthOptions {
  /** A name for the bytes (file name or URL) that error messages start with. */
  source?: string;
}

interface StorageRef {
  readonly pickleCustom: true;
  readonly storage: true;
  key: string;
  dtype: PthDtype;
  itemBytes: number;
  count: number;
}

function isStorage(value: unknown): value is StorageRef {
  return typeof value === 'object' && value !== null && (value as StorageRef).storage === true;
}

let halfTable: Float32Array | undefined;

function halfToFloat32(bits: Uint16Array): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let value = 0; value < 65536; value++) {
      const sign = value & 0x8000 ? -1 : 1;
      const exponent = (value >> 10) & 0x1f;
      const fraction = value & 0x3ff;
      halfTable[value] =
        exponent === 0
          ? sign * 2 ** -14 * (fraction / 1024)
          : exponent === 0x1f
            ? fraction
              ? NaN
              : sign * Infinity
            : sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
    }
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfTable[bits[i]];
  return out;
}

/**
 * Reads a `torch.save` file (zip format): tensors rebuilt from their storages with sizes, strides and
 * offsets, dicts as `Map`s. Refuses, in one line naming the file: the legacy (pre-1.6) format, compressed
 * or truncated archives, sizes that lie, any pickled global other than the few torch uses for tensors
 * and OrderedDicts, and tensors whose extent does not fit their storage.
 *
 * @example
 * const { root } = readPth(new Uint8Array(await (await fetch('r50.pth')).arrayBuffer()), { source: 'r50.pth' });
 */
export function readPth(bytes: Uint8Array, { source = 'the file' }: ReadPthOptions = {}): ReadPth {
  if (!looksLikeZip(bytes)) {
    if (looksLikeLegacyPth(bytes)) {
      throw new PthFormatError(
        `${source}: the legacy torch.save format (before PyTorch 1.6) is not read; load it in PyTorch and save it again with torch.save (the zip format is the default since 1.6)`,
      );
    }
    throw new PthFormatError(
      `${source}: not a torch.save zip file (it starts with bytes ${[...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ') || 'none: empty'})`,
    );
  }
  const entries = readZipEntries(bytes, source);
  const pickleName = [...entries.keys()].find((name) => /^[^/]+\/data\.pkl$/.test(name));
  if (!pickleName)
    throw new PthFormatError(`${source}: the zip holds no <archive>/data.pkl (entries: ${[...entries.keys()].slice(0, 5).join(', ')})`);
  const archiveName = pickleName.slice(0, -'/data.pkl'.length);
  const byteorderEntry = entries.get(`${archiveName}/byteorder`);
  const byteorder = byteorderEntry ? new TextDecoder().decode(byteorderEntry).trim() : 'little';
  if (byteorder !== 'little' && byteorder !== 'big') throw new PthFormatError(`${source}: byteorder is '${byteorder}', expected 'little' or 'big'`);
  const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  const swap = (byteorder === 'little') !== littleEndianHost;

  const storageEntry = (key: string, itemBytes: number, count: number): Uint8Array => {
    const data = entries.get(`${archiveName}/data/${key}`);
    if (!data) throw new PthFormatError(`${source}: storage ${key} is missing from the archive`);
    if (data.length < count * itemBytes) {
      throw new PthFormatError(
        `${source}: storage ${key} should hold ${count} elements of ${itemBytes} bytes but its entry has ${data.length} bytes`,
      );
    }
    return data;
  };

  const globals = new Map<string, PickleGlobal>();
  const marker = (module: string, name: string) => globals.set(`${module}.${name}`, { module, name });
  for (const name of Object.keys(STORAGES)) marker('torch', name);
  globals.set('collections.OrderedDict', {
    module: 'collections',
    name: 'OrderedDict',
    call: (args) => {
      if (args.length !== 0) throw new PthFormatError(`${source}: OrderedDict called with arguments (only OrderedDict() is read)`);
      return new Map();
    },
  });
  const prepared = new Map<string, Uint8Array>();
  let materialised = 0;
  const rebuildTensor = (args: PickleValue[]): PickleValue => {
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    const [storage, offset, size, stride] = args;
    if (args.length < 4 || !isStorage(storage)) throw new PthFormatError(`${source}: _rebuild_tensor_v2 without a storage`);
    const ints = (value: PickleValue, what: string): number[] => {
      if (!Array.isArray(value) || !value.every((item) => typeof item === 'number' && Number.isInteger(item) && item >= 0)) {
        throw new PthFormatError(`${source}: tensor ${what} is not a tuple of non-negative integers`);
      }
      return value as number[];
    };
    const shape = ints(size, 'size');
    const strides = ints(stride, 'stride');
    if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0)
      throw new PthFormatError(`${source}: tensor storage offset is not a non-negative integer`);
    if (strides.length !== shape.length)
      throw new PthFormatError(`${source}: tensor size [${shape.join(', ')}] and stride [${strides.join(', ')}] differ in rank`);
    const count = shape.reduce((a, b) => a * b, 1);
    // The furthest element the tensor reads must lie in its storage; checked before any allocation.
    const extent = count === 0 ? 0 : offset + shape.reduce((sum, extentOf, i) => sum + (extentOf - 1) * strides[i], 0) + 1;
    if (count > MAX_ELEMENTS || extent > storage.count) {
      throw new PthFormatError(
        `${source}: a tensor of shape [${shape.join(', ')}] (${count} elements, stride [${strides.join(', ')}], offset ${offset}) does not fit its storage ${storage.key} of ${storage.count} elements`,
      );
    }
    // Views are materialised (copied): a file of many views over one big storage could ask for far more
    // memory than it holds. State dicts view each storage about once; allow 4x the file, plus 16 MiB.
    materialised += count * 4;
    if (materialised > 4 * bytes.length + 16 * 2 ** 20) {
      throw new PthFormatError(
        `${source}: its tensors would take ${materialised} bytes from a ${bytes.length}-byte file (views of the same storage over and over); refused`,
      );
    }
    // One aligned, little-endian copy per storage (when one is needed at all), however many views share it.
    let raw = prepared.get(storage.key);
    if (!raw) {
      raw = alignedStorage(storageEntry(storage.key, storage.itemBytes, storage.count), storage, swap);
      prepared.set(storage.key, raw);
    }
    return new PthTensor(storage.dtype, shape, gather(raw, storage, shape, strides, offset, source));
  };
  globals.set('torch._utils._rebuild_tensor_v2', { module: 'torch._utils', name: '_rebuild_tensor_v2', call: rebuildTensor });
  globals.set('torch._utils._rebuild_parameter', {
    module: 'torch._utils',
    name: '_rebuild_parameter',
    call: (args) => {
      if (!(args[0] instanceof PthTensor)) throw new PthFormatError(`${source}: _rebuild_parameter without a tensor`);
      return args[0];
    },
  });

  const persistentLoad = (id: PickleValue): PickleValue => {
    // ('storage', storage type, key, location, element count)
    if (!Array.isArray(id) || id.length !== 5 || id[0] !== 'storage')
      throw new PthFormatError(`${source}: a persistent id that is not a torch storage`);
    const [, type, key, , count] = id as unknown[];
    const global = type as PickleGlobal;
    const kind = global && global.module === 'torch' ? STORAGES[global.name] : undefined;
    if (!kind) throw new PthFormatError(`${source}: unsupported storage type`);
    if (typeof key !== 'string' || typeof count !== 'number' || !Number.isInteger(count) || count < 0) {
      throw new PthFormatError(`${source}: a storage id without a key and an element count`);
    }
    // The storage's bytes must be in the archive before anything is built on it.
    storageEntry(key, kind.bytes, count);
    const ref: StorageRef = { pickleCustom: true, storage: true, key, dtype: kind.dtype, itemBytes: kind.bytes, count };
    return ref;
  };
  // A storage type arrives as a global on the stack inside the persistent-id tuple: let it through.
  const root = unpickle(entries.get(pickleName)!, { globals, persistentLoad, source });
  return { root, archiveName };
}

// The storage's bytes, aligned for its element size and little-endian (a copy only when they are not).
function alignedStorage(raw: Uint8Array, storage: StorageRef, swap: boolean): Uint8Array {
  const itemBytes = storage.itemBytes;
  let aligned = raw.subarray(0, storage.count * itemBytes);
  if (swap || aligned.byteOffset % itemBytes !== 0) aligned = aligned.slice();
  if (swap) {
    for (let i = 0; i < aligned.length; i += itemBytes) aligned.subarray(i, i + itemBytes).reverse();
  }
  return aligned;
}

// The tensor's elements in row-major order, read through its strides from the raw storage bytes.
function gather(
  raw: Uint8Array,
  storage: StorageRef,
  shape: number[],
  strides: number[],
  offset: number,
  source: string,
): Float32Array | Float64Array | Int32Array {
  const count = shape.reduce((a, b) => a * b, 1);
  const aligned = raw; // aligned and little-endian already (alignedStorage)
  const indices = new Int32Array(count);
  const contiguous = strides.every((stride, i) => shape[i] === 1 || stride === strides.slice(i + 1).reduce((p, _, j) => p * shape[i + 1 + j], 1));
  if (contiguous) {
    for (let i = 0; i < count; i++) indices[i] = offset + i;
  } else {
    const position = new Array<number>(shape.length).fill(0);
    for (let i = 0; i < count; i++) {
      let at = offset;
      for (let d = 0; d < shape.length; d++) at += position[d] * strides[d];
      indices[i] = at;
      for (let d = shape.length - 1; d >= 0; d--) {
        if (++position[d] < shape[d]) break;
        position[d] = 0;
      }
    }
  }
  const pick = <T extends { length: number; [i: number]: number }>(from: T, to: T): T => {
    for (let i = 0; i < count; i++) to[i] = from[indices[i]];
    return to;
  };
  switch (storage.dtype) {
    case 'float32':
      return pick(new Float32Array(aligned.buffer, aligned.byteOffset, storage.count), new Float32Array(count));
    case 'float64':
      return pick(new Float64Array(aligned.buffer, aligned.byteOffset, storage.count), new Float64Array(count));
    case 'float16':
      return halfToFloat32(pick(new Uint16Array(aligned.buffer, aligned.byteOffset, storage.count), new Uint16Array(count)));
    case 'bfloat16': {
      const bits = pick(new Uint16Array(aligned.buffer, aligned.byteOffset, storage.count), new Uint16Array(count));
      const wide = new Uint32Array(count);
      for (let i = 0; i < count; i++) wide[i] = bits[i] << 16;
      return new Float32Array(wide.buffer);
    }
    case 'int32':
      return pick(new Int32Array(aligned.buffer, aligned.byteOffset, storage.count), new Int32Array(count));
    case 'int64': {
      const words = new Int32Array(aligned.buffer, aligned.byteOffset, 2 * storage.count);
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const low = words[2 * indices[i]];
        const high = words[2 * indices[i] + 1];
        if (high !== (low < 0 ? -1 : 0)) throw new PthFormatError(`${source}: an int64 value beyond ±2^31 in storage ${storage.key}`);
        out[i] = low;
      }
      return out;
    }
  }
}

/** A tensor to write: row-major data; `dtype` defaults to float32 (int64 for Int32Array data). */
export interface PthTensorInput {
  shape: readonly number[];
  data: Float32Array | Int32Array;
  dtype?: 'float32' | 'int64';
}

/** Marks a value for {@link writePth} as a tensor. */
export class PthTensorOut {
  constructor(readonly tensor: PthTensorInput) {}
}

export interface WritePthOptions {
  /** The folder name inside the zip (default `archive`, as `torch.save` to a file object uses). */
  archiveName?: string;
}

/**
 * Writes `root` as a `torch.save` file (zip format, pickle protocol 2) that `torch.load` reads: `Map`s
 * become dicts, {@link PickleOrderedDict} an OrderedDict (what `state_dict()` returns), arrays lists,
 * {@link PickleTuple} tuples, {@link PthTensorOut} tensors (each with a storage of its own, contiguous).
 *
 * @example
 * const bytes = writePth(new PickleOrderedDict(new Map([['conv1.weight', new PthTensorOut({ shape: [8, 3, 7, 7], data })]])));
 */
export function writePth(root: unknown, { archiveName = 'archive' }: WritePthOptions = {}): Uint8Array {
  const storages: Uint8Array[] = [];
  const writeTensor = (value: unknown, out: PickleWriter): boolean => {
    if (!(value instanceof PthTensorOut)) return false;
    const { shape, data } = value.tensor;
    const dtype = value.tensor.dtype ?? (data instanceof Int32Array ? 'int64' : 'float32');
    const count = shape.reduce((a, b) => a * b, 1);
    if (count !== data.length) throw new Error(`writePth: a tensor of shape [${shape.join(', ')}] needs ${count} values, got ${data.length}`);
    let bytes: Uint8Array;
    if (dtype === 'int64') {
      const words = new Int32Array(2 * count);
      for (let i = 0; i < count; i++) {
        const integer = Math.round(data[i]);
        words[2 * i] = integer;
        words[2 * i + 1] = integer < 0 ? -1 : 0;
      }
      bytes = new Uint8Array(words.buffer);
    } else {
      bytes = new Uint8Array(Float32Array.from(data).buffer);
    }
    const key = String(storages.length);
    storages.push(bytes);
    const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    out.global('torch._utils', '_rebuild_tensor_v2');
    out.bytes(0x28); // MARK of the argument tuple
    out.bytes(0x28); // the persistent id ('storage', type, key, 'cpu', count)
    out.value('storage');
    out.global('torch', dtype === 'int64' ? 'LongStorage' : 'FloatStorage');
    out.value(key);
    out.value('cpu');
    out.value(count);
    out.bytes(0x74, 0x51); // TUPLE, BINPERSID
    out.value(0);
    out.value(new PickleTuple(shape as number[]));
    out.value(new PickleTuple(strides));
    out.value(false);
    out.value(new PickleOrderedDict(new Map()));
    out.bytes(0x74, 0x52); // TUPLE, REDUCE
    return true;
  };
  const data = pickle(root, writeTensor);
  const text = (value: string) => new TextEncoder().encode(value);
  return writeZip([
    [`${archiveName}/data.pkl`, data],
    [`${archiveName}/byteorder`, text('little')],
    ...storages.map((bytes, key) => [`${archiveName}/data/${key}`, bytes] as const),
    [`${archiveName}/version`, text('3\n')],
  ]);
}
