import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

// STYLE.md: "a library's `.` entry must bundle for a browser with nothing Node-only inside, not even behind
// a computed import(name)". esbuild fails on a Node built-in it can resolve statically; a name held in a
// variable is invisible to it, so the bundle's text is searched for the module names as well.
const repoRoot = join(__dirname, '..', '..', '..');
const NODE_ONLY_MODULE = /["'`](node:[a-z_/]+|fs|fs\/promises|path|os|crypto|child_process|worker_threads|sharp|webgpu)["'`]/g;

interface PackageJson {
  name: string;
  private?: boolean;
  exports?: Record<string, unknown>;
}

function publishedLibraries(): { name: string; entry: string }[] {
  const packagesDir = join(repoRoot, 'packages');
  return readdirSync(packagesDir)
    .map((dir) => ({ dir, json: JSON.parse(readFileSync(join(packagesDir, dir, 'package.json'), 'utf8')) as PackageJson }))
    .filter(({ json }) => !json.private)
    .map(({ dir, json }) => {
      const main = json.exports?.['.'] as Record<string, string> | undefined;
      return { name: json.name, entry: join(packagesDir, dir, main?.['@sparkmim/source'] ?? 'src/index.ts') };
    });
}

async function browserBundle(entry: { path?: string; contents?: string }): Promise<string> {
  const result = await build({
    ...(entry.path ? { entryPoints: [entry.path] } : { stdin: { contents: entry.contents!, resolveDir: join(__dirname, '..'), loader: 'ts' } }),
    bundle: true,
    write: false,
    platform: 'browser',
    format: 'esm',
    conditions: ['@sparkmim/source'],
    mainFields: ['module', 'browser', 'main'],
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

describe('browser bundles', () => {
  const libraries = publishedLibraries();

  it('finds the published libraries', () => {
    expect(libraries.map((library) => library.name)).toEqual(expect.arrayContaining(['@sparkmim/sparse-ops', '@sparkmim/trainer']));
  });

  it.each(libraries.map((library) => [library.name, library.entry]))(
    '%s: the main entry bundles for a browser with no externals and nothing Node-only',
    async (_name, entry) => {
      const text = await browserBundle({ path: entry });
      const nodeOnly = [...new Set([...text.matchAll(NODE_ONLY_MODULE)].map((match) => match[1]))];
      expect(nodeOnly).toEqual([]);
    },
  );

  it('the SparK model bundles for a browser with no externals (what the demo imports)', async () => {
    const text = await browserBundle({ contents: "import { SparkModel } from '@sparkmim/trainer'; console.log(SparkModel);" });
    expect(text).toContain('SparkModel');
    expect([...text.matchAll(NODE_ONLY_MODULE)].map((match) => match[1])).toEqual([]);
  });

  it('the check catches a Node-only import (a bundle of the Node entry fails it)', async () => {
    const text = await browserBundle({
      contents: "import { ImageFolderSource } from '@sparkmim/trainer/node'; console.log(ImageFolderSource);",
    }).catch((error: Error) => `build failed: ${error.message}`);
    expect(text.match(NODE_ONLY_MODULE) ?? text.startsWith('build failed')).toBeTruthy();
  });
});
