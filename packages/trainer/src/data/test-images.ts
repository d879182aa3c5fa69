// Shared by the data tests (Node only): a small PNG encoder written from the PNG specification, so the test
// images (grayscale, RGBA, 16-bit) do not come from the decoder under test, and temporary folders.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}

/** Channels of a PNG: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA. */
export type PngChannels = 1 | 2 | 3 | 4;
const COLOUR_TYPE: Record<PngChannels, number> = { 1: 0, 2: 4, 3: 2, 4: 6 };

/**
 * A PNG of `width` × `height` from row-major samples (`height · width · channels` values, 0..255 for
 * 8 bits or 0..65535 for 16 bits, big-endian as PNG stores them), filter 0 on every row.
 */
export function encodePng(samples: ArrayLike<number>, width: number, height: number, channels: PngChannels, bitDepth: 8 | 16 = 8): Buffer {
  const bytesPerSample = bitDepth / 8;
  const rowBytes = width * channels * bytesPerSample;
  const raw = Buffer.alloc(height * (rowBytes + 1));
  for (let y = 0; y < height; y++) {
    const rowStart = y * (rowBytes + 1) + 1;
    for (let x = 0; x < width * channels; x++) {
      const value = samples[y * width * channels + x];
      if (bitDepth === 16) raw.writeUInt16BE(value, rowStart + x * 2);
      else raw[rowStart + x] = value;
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = bitDepth;
  header[9] = COLOUR_TYPE[channels];
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

/** RGB samples whose red rises with x and green with y (`red = x · step`, `green = y · step`, blue fixed). */
export function rampPixels(width: number, height: number, step: number, blue = 128): Uint8Array {
  const pixels = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      pixels.set([x * step, y * step, blue], (y * width + x) * 3);
    }
  }
  return pixels;
}

/** A fresh temporary folder; `files` maps relative paths (sub-folders allowed) to contents. */
export function makeTempFolder(files: Record<string, Uint8Array | string> = {}): string {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'sparkmim-data-'));
  for (const [name, content] of Object.entries(files)) {
    const filePath = path.join(folder, name);
    fs.mkdirSync(path.dirname(filePath), { recursive: true });
    fs.writeFileSync(filePath, content);
  }
  return folder;
}

export function removeFolder(folder: string): void {
  fs.rmSync(folder, { recursive: true, force: true });
}
