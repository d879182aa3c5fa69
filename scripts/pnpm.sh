#!/usr/bin/env bash
# Runs the pinned pnpm (packageManager in package.json) without corepack, whose signature check fails on
# Node 20 with pnpm 10: the exact version is installed once into .cache/tools from the npm registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(node -p "require('$root/package.json').packageManager.split('@')[1]")
bin="$root/.cache/tools/node_modules/.bin/pnpm"
if [ ! -x "$bin" ] || [ "$("$bin" --version)" != "$version" ]; then
  npm install --prefix "$root/.cache/tools" --no-save --no-package-lock --no-audit --no-fund "pnpm@$version" >/dev/null
fi
# turbo looks the package manager up on PATH
export PATH="$root/.cache/tools/node_modules/.bin:$PATH"
exec "$bin" "$@"
