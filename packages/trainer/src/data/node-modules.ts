// The Node-only modules behind the trainer's Node entry (`@sparkmim/trainer/node`): Node's file system and
// sharp. Only files that entry exports import this module, so the main entry never reaches them
// (apps/demo/test/browser-bundles.test.ts checks that). sharp, an optional dependency, loads on first use.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';

export { fs, path };

/** The version of sharp the trainer is tested with (its optional dependency). */
export const SHARP_VERSION = '0.34.5';

/** The part of sharp's API the folder source uses (typed here so this package needs no sharp types). */
export interface SharpInstance {
  metadata(): Promise<{ width?: number; height?: number; hasAlpha?: boolean }>;
  removeAlpha(): SharpInstance;
  toColourspace(space: 'srgb'): SharpInstance;
  extract(region: { left: number; top: number; width: number; height: number }): SharpInstance;
  resize(width: number, height: number, options: { kernel: 'cubic'; fit: 'fill' }): SharpInstance;
  flop(): SharpInstance;
  raw(options: { depth: 'uchar' }): SharpInstance;
  toBuffer(options: { resolveWithObject: true }): Promise<{ data: Uint8Array; info: { width: number; height: number; channels: number } }>;
}

export interface SharpInputOptions {
  failOn?: 'none' | 'truncated' | 'error' | 'warning';
  /** Refuse to decode images of more pixels (width × height) than this. */
  limitInputPixels?: number;
  raw?: { width: number; height: number; channels: 1 | 2 | 3 | 4 };
}

export type SharpFactory = (input: Uint8Array, options?: SharpInputOptions) => SharpInstance;

/**
 * Loads sharp (an optional dependency) on first use. When it is absent the error says how to install it;
 * when its native part fails to load, sharp's own message (which names the platform package) is kept.
 * `Sharp` is the type the caller wants to see: the few methods the data sources use by default, or
 * sharp's own types (`loadSharp<typeof import('sharp')>(...)`) where more is needed.
 *
 * @example
 * const sharp = await loadSharp('my-command');
 * const { data } = await sharp(bytes).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
 */
export async function loadSharp<Sharp = SharpFactory>(caller: string, moduleName = 'sharp'): Promise<Sharp> {
  let loaded: unknown;
  try {
    loaded = await import(/* webpackIgnore: true */ /* @vite-ignore */ moduleName);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const absent = /cannot find (module|package)|ERR_MODULE_NOT_FOUND/i.test(reason) && reason.includes(moduleName);
    throw new Error(
      absent
        ? `${caller}: decoding images needs the package sharp, which is not installed. Install it with: npm install sharp@${SHARP_VERSION}`
        : `${caller}: the package sharp failed to load (${reason.split('\n')[0]}). Reinstall it with: npm install sharp@${SHARP_VERSION}`,
    );
  }
  // CommonJS through ESM import() puts the function under `default`.
  const candidate = (loaded as { default?: unknown }).default ?? loaded;
  if (typeof candidate !== 'function') throw new Error(`${caller}: the module '${moduleName}' is not sharp (it exports no function)`);
  return candidate as Sharp;
}
