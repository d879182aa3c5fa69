#!/usr/bin/env bash
# Packs bench/gpu-run.ts for a GPU machine without Node.js or this workspace (../shared/device's recipe):
# node, Dawn and the Vulkan loader from ../shared/device/pack.sh, then this workspace's own bundle of the
# entry (the ESM builds of tfjs, as scripts/run-ts.mjs bundles them, which pack.sh's plain esbuild call
# does not pick). The run uses synthetic batches, so no image library (sharp) is carried.
#
# usage (from the repository root, after pnpm install):
#   bash apps/pretrain/bench/pack-gpu.sh
# then, there: bash .device/run.sh node .device/gpu-run.mjs | tee gpu.jsonl
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
pack=${SPARKMIM_DEVICE_PACK:-../shared/device/pack.sh}
[ -x "$pack" ] || [ -f "$pack" ] || { echo "pack-gpu: $pack not found (set SPARKMIM_DEVICE_PACK)" >&2; exit 2; }
rm -rf .device/node_modules/webgpu .device/node_modules/sharp .device/node_modules/@img .device/node_modules/detect-libc .device/node_modules/semver
# pack.sh resolves the webgpu package from the current folder; here it is a dependency of this app. No entry
# is given to it: its plain esbuild call would look for our packages' dist/ builds, which may not exist.
NODE_PATH="$root/apps/pretrain/node_modules" bash "$pack" >/dev/null
RUN_TS_OUTFILE=.device/gpu-run.mjs node scripts/run-ts.mjs apps/pretrain/bench/gpu-run.ts
du -sh .device
