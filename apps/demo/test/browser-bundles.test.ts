import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

// STYLE.md: "a library's `.` entry must bundle for a browser with nothing Node-only inside, not even behind
// a computed import(name)". esbuild fails on a Node built-in it can resolve statically; a name held in a
// variable is invisible to it, so the bundle's text is searched for the module names as well.
const repoRoot = join(__dirname, '..', '..', '..');
const NODE_ONLY_MODULE = /["'`](node:[a-z_/]+|fs|fs\/promises|path|os|crypto|child_process|worker_threads|sharp|webgpu)["'`]/g;

// Where a module name is also a word the library must write: @sparkmim/webgpu-kernels registers kernels for
// tfjs's backend named 'webgpu', a string, not the Dawn package of that name. Such a name is checked only
// where a bundle would load it: an import, a dynamic import or a require of it.
const BACKEND_NAMES_NOT_MODULES: Record<string, string[]> = { '@sparkmim/webgpu-kernels': ['webgpu'] };
const loads = (name: string) => new RegExp(`(?:\\bfrom\\s*|\\bimport\\s*\\(\\s*|\\brequire\\s*\\(\\s*|\\bimport\\s*)["'\`]${name}["'\`]`);

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
    async (name, entry) => {
      const text = await browserBundle({ path: entry });
      const words = BACKEND_NAMES_NOT_MODULES[name] ?? [];
      const nodeOnly = [...new Set([...text.matchAll(NODE_ONLY_MODULE)].map((match) => match[1]))].filter(
        (module) => !words.includes(module) || loads(module).test(text),
      );
      expect(nodeOnly).toEqual([]);
    },
  );

  it('the SparK model bundles for a browser with no externals (what the demo imports)', async () => {
    const text = await browserBundle({ contents: "import { SparkModel } from '@sparkmim/trainer'; console.log(SparkModel);" });
    expect(text).toContain('SparkModel');
    expect([...text.matchAll(NODE_ONLY_MODULE)].map((match) => match[1])).toEqual([]);
  });

  it('a backend name that is also a module name is still caught where it is loaded', () => {
    expect(['await import("webgpu")', "import 'webgpu';", 'require( "webgpu")', "from 'webgpu'"].map((code) => loads('webgpu').test(code))).toEqual([
      true,
      true,
      true,
      true,
    ]);
    expect(loads('webgpu').test("registerKernel({ kernelName: 'Conv2D', backendName: 'webgpu' })")).toBe(false);
  });

  it('the check catches a Node-only import (a bundle of the Node entry fails it)', async () => {
    const text = await browserBundle({
      contents: "import { ImageFolderSource } from '@sparkmim/trainer/node'; console.log(ImageFolderSource);",
    }).catch((error: Error) => `build failed: ${error.message}`);
    expect(text.match(NODE_ONLY_MODULE) ?? text.startsWith('build failed')).toBeTruthy();
  });
});
