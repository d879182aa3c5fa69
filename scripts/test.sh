#!/usr/bin/env bash
# The test command (README): from a fresh clone with only Node 20 and npm, installs what the tests need,
# then runs the type check, the build and package-hygiene checks, and every package's tests on the cpu
# and webgpu backends.
set -euo pipefail
cd "$(dirname "$0")/.."
export SPARKMIM_TEST_BACKENDS=${SPARKMIM_TEST_BACKENDS:-cpu,webgpu}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

bash scripts/ensure-system-deps.sh
[ -f /usr/lib/chromium/vk_swiftshader_icd.json ] && export VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-/usr/lib/chromium/vk_swiftshader_icd.json}

pnpm() { bash scripts/pnpm.sh "$@"; }
pnpm install --frozen-lockfile --reporter=append-only | tail -n 3
pnpm changeset status
pnpm turbo run typecheck build lint --output-logs=errors-only
bash scripts/check-pack.sh
pnpm turbo run test --concurrency=1 --continue --output-logs=full --log-order=grouped
