#!/usr/bin/env node
// Runs the built CLI; builds it first when it is missing (a fresh clone runs `sparkmim` straight away).
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const appDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(appDir, 'dist', 'cli.js');
if (!existsSync(built)) {
  process.stderr.write('sparkmim: building the CLI once (dist/cli.js is missing)...\n');
  execFileSync(process.execPath, [join(appDir, 'node_modules', 'tsup', 'dist', 'cli-default.js')], { cwd: appDir, stdio: ['ignore', 'ignore', 'inherit'] });
}
const { main } = await import(pathToFileURL(built).href);
process.exitCode = await main(process.argv.slice(2));
