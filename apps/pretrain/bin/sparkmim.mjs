#!/usr/bin/env node
// Runs the bundled CLI, (re)building it first when it is missing or older than the sources it bundles,
// so that a fresh clone and a working tree both run what the sources say.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const appDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const repoRoot = join(appDir, '..', '..');
const built = join(appDir, 'dist', 'cli.js');

function newestSourceTime() {
  let newest = 0;
  const visit = (dir) => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
    }
  };
  visit(join(appDir, 'src'));
  for (const pkg of readdirSync(join(repoRoot, 'packages'))) visit(join(repoRoot, 'packages', pkg, 'src'));
  return newest;
}

if (!existsSync(built) || statSync(built).mtimeMs < newestSourceTime()) {
  execFileSync(process.execPath, [join(appDir, 'node_modules', 'tsup', 'dist', 'cli-default.js'), '--silent'], {
    cwd: appDir,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}
const { main, EXIT_WASM_OUT_OF_MEMORY } = await import(pathToFileURL(built).href);
const code = await main(process.argv.slice(2));
// After wasm ran out of memory its heap is unusable: exit before anything else calls into it (and aborts).
if (code === EXIT_WASM_OUT_OF_MEMORY) process.exit(code);
process.exitCode = code;
