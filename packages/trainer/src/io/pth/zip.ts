// The zip container of `torch.save` (PyTorch >= 1.6): stored (uncompressed) entries `<archive>/data.pkl`,
// `<archive>/data/<key>` (one per storage), `<archive>/byteorder` and `<archive>/version`, data aligned to
// 64 bytes. Only what those files use is read: stored entries, zip64 sizes and offsets; everything is
// checked against the archive's length before any allocation, so a file whose sizes lie is refused.

/** An error in a `.pth` file: the message is one line naming the file and what is wrong. */
export class PthFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PthFormatError';
  }
}

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const ZIP64_END_LOCATOR = 0x07064b50;
const ZIP64_END = 0x06064b50;
const MAX_COMMENT = 0xffff;

/**
 * Whether the bytes start like the legacy (pre-1.6) `torch.save` format: a pickle (PROTO) whose first value
 * is the magic number as a LONG1. A safetensors file whose header length ends in 0x80 does not match.
 */
export function looksLikeLegacyPth(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0x80 && bytes[1] >= 2 && bytes[1] <= 5 && bytes[2] === 0x8a;
}

/** Whether the bytes start like a zip archive (a local file header). */
export function looksLikeZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

/**
 * The entries of a zip archive by name, each a view on `bytes` (no copy). Refuses compressed entries,
 * encrypted ones, and any size or offset that reaches past the end of the archive.
 *
 * @example
 * const entries = readZipEntries(bytes, 'r50.pth'); // Map { 'r50/data.pkl' => Uint8Array, ... }
 */
export function readZipEntries(bytes: Uint8Array, source = 'the file'): Map<string, Uint8Array> {
  const fail = (what: string): never => {
    throw new PthFormatError(`${source}: ${what}`);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (at: number) => view.getUint16(at, true);
  const u32 = (at: number) => view.getUint32(at, true);
  const u64 = (at: number) => {
    const value = view.getUint32(at, true) + view.getUint32(at + 4, true) * 2 ** 32;
    if (value > Number.MAX_SAFE_INTEGER) fail(`a zip64 size or offset (${value}) is beyond 2^53`);
    return value;
  };

  let end = -1;
  for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - 22 - MAX_COMMENT); at--) {
    if (u32(at) === END_OF_CENTRAL_DIRECTORY) {
      end = at;
      break;
    }
  }
  if (end < 0) fail(`no zip central directory (truncated, or not a torch.save file; ${bytes.length} bytes)`);
  let entryCount = u16(end + 10);
  let directorySize = u32(end + 12);
  let directoryOffset = u32(end + 16);
  if (entryCount === 0xffff || directorySize === 0xffffffff || directoryOffset === 0xffffffff) {
    const locator = end - 20;
    if (locator < 0 || u32(locator) !== ZIP64_END_LOCATOR) fail('zip64 sizes without a zip64 end locator');
    const record = u64(locator + 8);
    if (record + 56 > bytes.length || u32(record) !== ZIP64_END)
      fail(`the zip64 end record at ${record} is outside the file (${bytes.length} bytes)`);
    entryCount = u64(record + 32);
    directorySize = u64(record + 40);
    directoryOffset = u64(record + 48);
  }
  if (directoryOffset + directorySize > bytes.length) {
    fail(
      `the zip central directory claims bytes ${directoryOffset}..${directoryOffset + directorySize} but the file has ${bytes.length} (truncated?)`,
    );
  }
  // Each central header takes at least 46 bytes: a count beyond that is a lie.
  if (entryCount * 46 > directorySize) fail(`the zip directory claims ${entryCount} entries in ${directorySize} bytes`);

  const entries = new Map<string, Uint8Array>();
  const decoder = new TextDecoder('utf-8', { fatal: false });
  let at = directoryOffset;
  for (let index = 0; index < entryCount; index++) {
    if (at + 46 > directoryOffset + directorySize || u32(at) !== CENTRAL_HEADER) fail(`zip directory entry ${index} is malformed`);
    const flags = u16(at + 8);
    const method = u16(at + 10);
    let compressedSize = u32(at + 20);
    let size = u32(at + 24);
    const nameLength = u16(at + 28);
    const extraLength = u16(at + 30);
    const commentLength = u16(at + 32);
    let localOffset = u32(at + 42);
    const next = at + 46 + nameLength + extraLength + commentLength;
    if (next > directoryOffset + directorySize) fail(`zip directory entry ${index} runs past the directory`);
    const name = decoder.decode(bytes.subarray(at + 46, at + 46 + nameLength));
    // zip64 extra field: the 64-bit values of the fields set to 0xffffffff, in this order.
    for (let extra = at + 46 + nameLength; extra + 4 <= at + 46 + nameLength + extraLength; ) {
      const id = u16(extra);
      const length = u16(extra + 2);
      if (id === 0x0001) {
        let field = extra + 4;
        if (size === 0xffffffff) {
          size = u64(field);
          field += 8;
        }
        if (compressedSize === 0xffffffff) {
          compressedSize = u64(field);
          field += 8;
        }
        if (localOffset === 0xffffffff) localOffset = u64(field);
      }
      extra += 4 + length;
    }
    if (flags & 0x1) fail(`zip entry ${name} is encrypted`);
    if (method !== 0) {
      fail(
        `zip entry ${name} is compressed (method ${method}${method === 8 ? ', deflate' : ''}); torch.save stores entries uncompressed: re-save the file with torch.save`,
      );
    }
    if (compressedSize !== size) fail(`zip entry ${name} is stored but its sizes differ (${compressedSize} vs ${size})`);
    if (localOffset + 30 > bytes.length || u32(localOffset) !== LOCAL_HEADER) fail(`zip entry ${name}: no local header at ${localOffset}`);
    const dataStart = localOffset + 30 + u16(localOffset + 26) + u16(localOffset + 28);
    if (dataStart + size > bytes.length) {
      fail(`zip entry ${name} claims ${size} bytes at ${dataStart} but the file has ${bytes.length} bytes (truncated, or the sizes lie)`);
    }
    entries.set(name, bytes.subarray(dataStart, dataStart + size));
    at = next;
  }
  return entries;
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (the zip polynomial) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * A zip archive of stored entries, each entry's data aligned to 64 bytes (as `torch.save` writes them,
 * with padding in a local extra field), without zip64: the archive must stay below 4 GiB.
 *
 * @example
 * const bytes = writeZip([['archive/data.pkl', pickle], ['archive/version', text('3\n')]]);
 */
export function writeZip(files: readonly (readonly [string, Uint8Array])[]): Uint8Array {
  const encoder = new TextEncoder();
  const ALIGN = 64;
  const locals: { name: Uint8Array; data: Uint8Array; crc: number; offset: number; padding: number }[] = [];
  let offset = 0;
  for (const [name, data] of files) {
    const nameBytes = encoder.encode(name);
    const headerEnd = offset + 30 + nameBytes.length + 4; // with an (empty) extra field header
    const padding = (ALIGN - (headerEnd % ALIGN)) % ALIGN;
    locals.push({ name: nameBytes, data, crc: crc32(data), offset, padding });
    offset = headerEnd + padding + data.length;
  }
  const directoryOffset = offset;
  const directorySize = locals.reduce((sum, entry) => sum + 46 + entry.name.length, 0);
  const total = directoryOffset + directorySize + 22;
  if (total >= 2 ** 32) throw new Error(`writeZip: ${total} bytes is beyond what a zip without zip64 holds (4 GiB)`);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  for (const entry of locals) {
    let at = entry.offset;
    view.setUint32(at, LOCAL_HEADER, true);
    view.setUint16(at + 4, 20, true); // version needed
    view.setUint16(at + 8, 0, true); // stored
    view.setUint32(at + 14, entry.crc, true);
    view.setUint32(at + 18, entry.data.length, true);
    view.setUint32(at + 22, entry.data.length, true);
    view.setUint16(at + 26, entry.name.length, true);
    view.setUint16(at + 28, 4 + entry.padding, true);
    out.set(entry.name, at + 30);
    at += 30 + entry.name.length;
    // 'FB' padding field, as PyTorch's writer uses to align the data.
    view.setUint16(at, 0x4246, true);
    view.setUint16(at + 2, entry.padding, true);
    at += 4 + entry.padding;
    out.set(entry.data, at);
  }
  let at = directoryOffset;
  for (const entry of locals) {
    view.setUint32(at, CENTRAL_HEADER, true);
    view.setUint16(at + 4, 20, true);
    view.setUint16(at + 6, 20, true);
    view.setUint32(at + 16, entry.crc, true);
    view.setUint32(at + 20, entry.data.length, true);
    view.setUint32(at + 24, entry.data.length, true);
    view.setUint16(at + 28, entry.name.length, true);
    view.setUint32(at + 42, entry.offset, true);
    out.set(entry.name, at + 46);
    at += 46 + entry.name.length;
  }
  view.setUint32(at, END_OF_CENTRAL_DIRECTORY, true);
  view.setUint16(at + 8, locals.length, true);
  view.setUint16(at + 10, locals.length, true);
  view.setUint32(at + 12, directorySize, true);
  view.setUint32(at + 16, directoryOffset, true);
  return out;
}
