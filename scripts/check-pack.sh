#!/usr/bin/env bash
# Package hygiene beyond publint: the libraries' tarballs (as `pnpm pack` makes them, workspace: ranges
# rewritten) install into an empty npm project next to tfjs-core, and import in both ESM and CJS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
libraries="sparse-ops masking backbones decoder losses trainer wasm-kernels webgpu-kernels"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for lib in $libraries; do
  (cd "$root/packages/$lib" && bash "$root/scripts/pnpm.sh" pack --pack-destination "$work" >/dev/null)
done
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --loglevel=error @tensorflow/tfjs-core@4.22.0 ./*.tgz >/dev/null
for lib in $libraries; do
  node -e "const m = require('@sparkmim/$lib'); if (typeof m !== 'object') process.exit(1);"
  node --input-type=module -e "const m = await import('@sparkmim/$lib'); if (typeof m !== 'object') process.exit(1);"
done
# Second entries (Node-only parts of a library)
for entry in @sparkmim/trainer/node; do
  node -e "const m = require('$entry'); if (typeof m.ImageFolderSource !== 'function') process.exit(1);"
  node --input-type=module -e "const m = await import('$entry'); if (typeof m.ImageFolderSource !== 'function') process.exit(1);"
done
echo "check-pack: $(echo $libraries | wc -w) tarballs install and import in ESM and CJS"
