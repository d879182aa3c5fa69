// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`,
// then the raw little-endian tensor bytes. Pure JS on Uint8Array, so it runs in the browser as well.
import { formatShape } from '@sparkmim/masking';

/** Element types this module reads. F16/BF16 are widened to Float32Array; I64/I16/I8/U16 are read as Int32Array. */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U16' | 'U8' | 'BOOL';

/** Element types {@link encodeSafetensors} writes. */
export type SafetensorsWriteDtype = 'F32' | 'I32' | 'I64' | 'U8' | 'BOOL';

/** The typed array a decoded tensor holds (see {@link SafetensorsDtype} for which dtype gives which). */
export type SafetensorsData = Float32Array | Float64Array | Int32Array | Uint8Array;

/** One tensor of a safetensors file: row-major (C order) values and the stored dtype. */
export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: SafetensorsData;
}

/** A decoded safetensors file. */
export interface DecodedSafetensors {
  /** Tensors in file order (for files torch wrote: descending dtype size, then sorted by name). */
  tensors: Map<string, SafetensorsTensor>;
  /** The `__metadata__` string map ({} when the file has none). */
  metadata: Record<string, string>;
}

/** A tensor to write: `dtype` defaults to F32 for Float32Array, I32 for Int32Array, U8 for Uint8Array. */
export interface SafetensorsEntry {
  dtype?: SafetensorsWriteDtype;
  shape: readonly number[];
  data: Float32Array | Int32Array | Uint8Array | Float64Array | readonly number[];
}

export interface DecodeSafetensorsOptions {
  /** A name for the bytes (a file name or URL) that error messages start with. */
  source?: string;
}

// Bytes per element, and the rank of each dtype in the safetensors crate's `Dtype` enum, whose order
// (increasing alignment) decides the order tensors are written in.
const DTYPE_INFO: Record<SafetensorsDtype, { bytes: number; rank: number }> = {
  BOOL: { bytes: 1, rank: 0 },
  U8: { bytes: 1, rank: 1 },
  I8: { bytes: 1, rank: 2 },
  I16: { bytes: 2, rank: 5 },
  U16: { bytes: 2, rank: 6 },
  F16: { bytes: 2, rank: 7 },
  BF16: { bytes: 2, rank: 8 },
  I32: { bytes: 4, rank: 9 },
  F32: { bytes: 4, rank: 11 },
  F64: { bytes: 8, rank: 12 },
  I64: { bytes: 8, rank: 13 },
};

const WRITE_DTYPES: readonly SafetensorsWriteDtype[] = ['F32', 'I32', 'I64', 'U8', 'BOOL'];

// The safetensors crate refuses headers above 100 MB; a larger length means a corrupt or foreign file.
const MAX_HEADER_BYTES = 100_000_000;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function elementCount(shape: readonly number[]): number {
  return shape.reduce((count, size) => count * size, 1);
}

function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

function decodeValues(bytes: Uint8Array, dtype: SafetensorsDtype, count: number, describe: () => string): SafetensorsData {
  // Copy first: the data of a tensor need not be aligned for its element type inside the file.
  const copy = bytes.slice();
  const view = new DataView(copy.buffer, copy.byteOffset, copy.byteLength);
  switch (dtype) {
    case 'F32':
      if (LITTLE_ENDIAN_HOST) return new Float32Array(copy.buffer, 0, count);
      return Float32Array.from({ length: count }, (_, i) => view.getFloat32(4 * i, true));
    case 'F64':
      if (LITTLE_ENDIAN_HOST) return new Float64Array(copy.buffer, 0, count);
      return Float64Array.from({ length: count }, (_, i) => view.getFloat64(8 * i, true));
    case 'I32':
      if (LITTLE_ENDIAN_HOST) return new Int32Array(copy.buffer, 0, count);
      return Int32Array.from({ length: count }, (_, i) => view.getInt32(4 * i, true));
    case 'F16':
      return Float32Array.from({ length: count }, (_, i) => halfToFloat(view.getUint16(2 * i, true)));
    case 'BF16': {
      // bfloat16 is the upper half of a float32.
      const widened = new DataView(new ArrayBuffer(4));
      return Float32Array.from({ length: count }, (_, i) => {
        widened.setUint32(0, view.getUint16(2 * i, true) << 16);
        return widened.getFloat32(0);
      });
    }
    case 'I64': {
      const values = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const value = view.getBigInt64(8 * i, true);
        if (value > 2147483647n || value < -2147483648n) {
          throw new Error(`${describe()}: I64 element ${i} is ${value}, outside the int32 range this reader returns`);
        }
        values[i] = Number(value);
      }
      return values;
    }
    case 'I16':
      return Int32Array.from({ length: count }, (_, i) => view.getInt16(2 * i, true));
    case 'U16':
      return Int32Array.from({ length: count }, (_, i) => view.getUint16(2 * i, true));
    case 'I8':
      return Int32Array.from({ length: count }, (_, i) => view.getInt8(i));
    case 'U8':
    case 'BOOL':
      return copy;
  }
}

/**
 * Decodes the bytes of a `.safetensors` file: every tensor (values copied out of `bytes`) and the
 * `__metadata__` strings. Throws, naming the file size and what was expected, when the file is
 * truncated or its header is malformed: a header over 100 MB, an unknown dtype, a shape whose size does not
 * match its data_offsets, and tensors that overlap, leave holes between them or leave bytes after the last
 * (the format's rules, as the safetensors crate checks them) are all refused before any value is decoded.
 *
 * @example
 * const { tensors, metadata } = decodeSafetensors(new Uint8Array(await (await fetch(url)).arrayBuffer()));
 * const stem = tensors.get('param.sparse_encoder.sp_cnn.conv1.weight'); // { dtype: 'F32', shape, data }
 */
export function decodeSafetensors(bytes: Uint8Array, options: DecodeSafetensorsOptions = {}): DecodedSafetensors {
  const prefix = options.source ? `safetensors (${options.source})` : 'safetensors';
  const size = bytes.byteLength;
  if (size < 8) {
    throw new Error(`${prefix}: the file is ${size} bytes, expected at least 8 (the u64 header length)`);
  }
  const headerLengthBig = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLengthBig > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(`${prefix}: the header length is ${headerLengthBig} bytes, expected at most ${MAX_HEADER_BYTES} (not a safetensors file?)`);
  }
  const headerLength = Number(headerLengthBig);
  if (8 + headerLength > size) {
    throw new Error(
      `${prefix}: the file is ${size} bytes, but its header length says ${headerLength} bytes of JSON follow ` +
        `the 8-byte prefix (expected at least ${8 + headerLength} bytes): the file is truncated`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLength)));
  } catch (error) {
    throw new Error(`${prefix}: the ${headerLength}-byte header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new Error(`${prefix}: the header is ${Array.isArray(header) ? 'an array' : typeof header}, expected a JSON object`);
  }

  const dataStart = 8 + headerLength;
  const dataLength = size - dataStart;
  const planned: { name: string; begin: number; end: number; dtype: SafetensorsDtype; shape: number[]; count: number; describe: () => string }[] = [];
  let metadata: Record<string, string> = {};
  const entries = Object.entries(header as Record<string, unknown>);
  for (const [name, entry] of entries) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry) || Object.values(entry).some((v) => typeof v !== 'string')) {
        throw new Error(`${prefix}: __metadata__ must be an object of strings, got ${JSON.stringify(entry)?.slice(0, 200)}`);
      }
      metadata = { ...(entry as Record<string, string>) };
      continue;
    }
    const describe = () => `${prefix}: tensor '${name}'`;
    const { dtype, shape, data_offsets: offsets } = (entry ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    // Own keys only: `'toString' in DTYPE_INFO` is true.
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_INFO, dtype)) {
      throw new Error(`${describe()} has dtype ${JSON.stringify(dtype)}, expected one of ${Object.keys(DTYPE_INFO).join(', ')}`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`${describe()} has shape ${JSON.stringify(shape)}, expected an array of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      throw new Error(`${describe()} has data_offsets ${JSON.stringify(offsets)}, expected [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offsets as [number, number];
    const info = DTYPE_INFO[dtype as SafetensorsDtype];
    const count = elementCount(shape as number[]);
    if (!Number.isSafeInteger(count * info.bytes) || end - begin !== count * info.bytes) {
      throw new Error(
        `${describe()} ${formatShape(shape as number[])} ${dtype} needs ${count * info.bytes} bytes, ` +
          `but its data_offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    if (end > dataLength) {
      throw new Error(
        `${describe()} (data_offsets [${begin}, ${end}] after the ${dataStart}-byte header) needs the file to be at ` +
          `least ${dataStart + end} bytes, but it is ${size} bytes: the file is truncated`,
      );
    }
    planned.push({ name, begin, end, dtype: dtype as SafetensorsDtype, shape: [...(shape as number[])], count, describe });
  }
  // File order (by offset), whatever order the JSON keys came in.
  planned.sort((a, b) => a.begin - b.begin || a.end - b.end || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  // As the format requires (and the safetensors crate checks): the tensors tile the data exactly, with no
  // overlap, no hole and nothing after the last. Checked before any value is decoded: overlapping entries
  // would otherwise decode the same bytes again and again (a small file growing to gigabytes).
  let covered = 0;
  let previous: (typeof planned)[number] | undefined;
  for (const entry of planned) {
    if (entry.begin < covered) {
      throw new Error(
        `${entry.describe()} has data_offsets [${entry.begin}, ${entry.end}], which overlap tensor '${previous!.name}' [${previous!.begin}, ${previous!.end}]: ` +
          'each byte of the data must belong to one tensor',
      );
    }
    if (entry.begin > covered) {
      throw new Error(
        `${prefix}: data bytes [${covered}, ${entry.begin}) belong to no tensor (a hole before tensor '${entry.name}'): the tensors must cover the data without gaps`,
      );
    }
    covered = entry.end;
    previous = entry;
  }
  if (covered !== dataLength) {
    throw new Error(
      `${prefix}: ${dataLength - covered} bytes follow the last tensor's data (which ends at ${dataStart + covered} of ${size} bytes): expected none`,
    );
  }
  const decoded = planned.map(({ name, begin, end, dtype, shape, count, describe }) => ({
    name,
    tensor: { dtype, shape, data: decodeValues(bytes.subarray(dataStart + begin, dataStart + end), dtype, count, describe) },
  }));
  return { tensors: new Map(decoded.map(({ name, tensor }) => [name, tensor])), metadata };
}

function inferWriteDtype(name: string, entry: SafetensorsEntry): SafetensorsWriteDtype {
  if (entry.dtype !== undefined) {
    if (!WRITE_DTYPES.includes(entry.dtype)) {
      throw new Error(`encodeSafetensors: tensor '${name}' has dtype ${entry.dtype}, expected one of ${WRITE_DTYPES.join(', ')}`);
    }
    return entry.dtype;
  }
  if (entry.data instanceof Int32Array) return 'I32';
  if (entry.data instanceof Uint8Array) return 'U8';
  return 'F32';
}

const INTEGER_RANGES: Record<Exclude<SafetensorsWriteDtype, 'F32'>, [number, number]> = {
  I32: [-2147483648, 2147483647],
  I64: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  U8: [0, 255],
  BOOL: [0, 1],
};

function writeValues(target: DataView, offset: number, dtype: SafetensorsWriteDtype, data: SafetensorsEntry['data'], name: string): void {
  const count = data.length;
  if (dtype === 'F32') {
    if (data instanceof Float32Array && LITTLE_ENDIAN_HOST) {
      new Uint8Array(target.buffer, target.byteOffset + offset, 4 * count).set(new Uint8Array(data.buffer, data.byteOffset, 4 * count));
      return;
    }
    for (let i = 0; i < count; i++) target.setFloat32(offset + 4 * i, data[i], true);
    return;
  }
  const [low, high] = INTEGER_RANGES[dtype];
  for (let i = 0; i < count; i++) {
    const value = data[i];
    if (!Number.isInteger(value) || value < low || value > high) {
      throw new Error(`encodeSafetensors: tensor '${name}' (${dtype}) element ${i} is ${value}, expected an integer in [${low}, ${high}]`);
    }
    if (dtype === 'I32') target.setInt32(offset + 4 * i, value, true);
    else if (dtype === 'I64') target.setBigInt64(offset + 8 * i, BigInt(value), true);
    else target.setUint8(offset + i, value);
  }
}

/**
 * Encodes tensors (and optional `__metadata__` strings) as a `.safetensors` file, laid out as torch's
 * `safetensors.torch.save_file` lays it out: `__metadata__` first in the header, tensors ordered by
 * descending dtype (I64, F32, I32, U8, BOOL), then by name; the header padded with spaces to a multiple of 8.
 *
 * @example
 * const bytes = encodeSafetensors(
 *   new Map([['weight', { shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) }]]),
 *   { format: 'pt' },
 * );
 */
export function encodeSafetensors(
  entries: ReadonlyMap<string, SafetensorsEntry> | Readonly<Record<string, SafetensorsEntry>>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const list = entries instanceof Map ? [...entries.entries()] : Object.entries(entries as Record<string, SafetensorsEntry>);
  const planned = list.map(([name, entry]) => {
    if (name === '__metadata__') throw new Error("encodeSafetensors: '__metadata__' is reserved and cannot name a tensor");
    const dtype = inferWriteDtype(name, entry);
    if (!Array.isArray(entry.shape) || !entry.shape.every((d: number) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`encodeSafetensors: tensor '${name}' has shape ${JSON.stringify(entry.shape)}, expected an array of non-negative integers`);
    }
    const count = elementCount(entry.shape);
    if (entry.data.length !== count) {
      throw new Error(
        `encodeSafetensors: tensor '${name}' has shape ${formatShape(entry.shape)} (${count} elements) but ${entry.data.length} values`,
      );
    }
    return { name, dtype, shape: [...entry.shape], data: entry.data, byteLength: count * DTYPE_INFO[dtype].bytes };
  });
  // The safetensors crate's order: larger alignment first, so every tensor starts aligned; then by name.
  planned.sort((a, b) => DTYPE_INFO[b.dtype].rank - DTYPE_INFO[a.dtype].rank || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  // Built by hand rather than with JSON.stringify of one object: JS objects put integer-like keys first.
  const headerParts: string[] = [];
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new Error(`encodeSafetensors: metadata '${key}' is ${typeof value}, expected a string`);
      }
    }
    headerParts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const tensor of planned) {
    offsets.push(offset);
    headerParts.push(
      `${JSON.stringify(tensor.name)}:${JSON.stringify({ dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + tensor.byteLength] })}`,
    );
    offset += tensor.byteLength;
  }
  const headerJson = new TextEncoder().encode(`{${headerParts.join(',')}}`);
  const padding = (8 - (headerJson.byteLength % 8)) % 8;
  const headerLength = headerJson.byteLength + padding;

  const bytes = new Uint8Array(8 + headerLength + offset);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, BigInt(headerLength), true);
  bytes.set(headerJson, 8);
  bytes.fill(0x20, 8 + headerJson.byteLength, 8 + headerLength);
  planned.forEach((tensor, index) => writeValues(view, 8 + headerLength + offsets[index], tensor.dtype, tensor.data, tensor.name));
  return bytes;
}
