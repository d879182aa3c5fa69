#!/usr/bin/env bash
# Packs bench/gpu-run.ts for a GPU machine without Node.js or this workspace (../shared/device's recipe):
# node, Dawn and the Vulkan loader from ../shared/device/pack.sh, then this workspace's own bundle of the
# entry (the ESM builds of tfjs, as scripts/run-ts.mjs bundles them, which pack.sh's plain esbuild call
# does not pick) and sharp with its native libvips (the image folder and the preview PNGs need it).
#
# usage (from the repository root, after pnpm install):
#   bash apps/pretrain/bench/pack-gpu.sh
# then, there: bash .device/run.sh node .device/gpu-run.mjs --data apps/pretrain/data/sample-images --out OUT
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
pack=${SPARKMIM_DEVICE_PACK:-../shared/device/pack.sh}
[ -x "$pack" ] || [ -f "$pack" ] || { echo "pack-gpu: $pack not found (set SPARKMIM_DEVICE_PACK)" >&2; exit 2; }
rm -rf .device/node_modules/webgpu
# pack.sh resolves the webgpu package from the current folder; here it is a dependency of this app.
NODE_PATH="$root/apps/pretrain/node_modules" bash "$pack" apps/pretrain/bench/gpu-run.ts >/dev/null
RUN_TS_OUTFILE=.device/gpu-run.mjs node scripts/run-ts.mjs apps/pretrain/bench/gpu-run.ts
# sharp and what it loads at run time, dereferenced out of pnpm's store.
store=node_modules/.pnpm
modules=.device/node_modules
mkdir -p "$modules/@img"
for pkg in sharp detect-libc @img/colour @img/sharp-linux-x64 @img/sharp-libvips-linux-x64; do
  dir=$(ls -d "$store"/"${pkg/\//+}"@*/node_modules/"$pkg" | head -1)
  rm -rf "${modules:?}/$pkg" && cp -rL "$dir" "$modules/$pkg"
done
semver=$(ls -d "$store"/semver@7*/node_modules/semver | head -1)
rm -rf "$modules/semver" && cp -rL "$semver" "$modules/semver"
du -sh .device
