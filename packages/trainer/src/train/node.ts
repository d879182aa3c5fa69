// Node-only modules, imported when first needed through a name held in a variable, so that a browser
// bundle of this package never resolves them (as io/atomic-write.ts does).
import type * as FsPromises from 'node:fs/promises';
import type * as NodePath from 'node:path';

async function importNode<T>(moduleName: string, caller: string): Promise<T> {
  if (typeof process === 'undefined' || !process.versions?.node) {
    throw new Error(`${caller}: needs Node.js (it imports ${moduleName}) to read and write files`);
  }
  return (await import(/* webpackIgnore: true */ /* @vite-ignore */ moduleName)) as T;
}

/** `node:fs/promises` and `node:path`, loaded on first use. */
export async function nodeFiles(caller: string): Promise<{ fs: typeof FsPromises; path: typeof NodePath }> {
  const [fs, path] = await Promise.all([
    importNode<typeof FsPromises>('node:fs/promises', caller),
    importNode<typeof NodePath>('node:path', caller),
  ]);
  return { fs, path };
}
