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
# Formatting and lint (Biome): a file that is not formatted or breaks a lint rule fails the run.
pnpm exec biome ci .
pnpm turbo run typecheck build lint --output-logs=errors-only
bash scripts/check-pack.sh
log=$(mktemp)
status=0
pnpm turbo run test --concurrency=1 --continue --output-logs=full --log-order=grouped 2>&1 | tee "$log" || status=$?
# The golden suites once more on wasm (issue 17): the kernels @sparkmim/wasm-kernels adds, end to end,
# against the official PyTorch values. Every suite on wasm would add about as much as the cpu copies do;
# run them with SPARKMIM_TEST_BACKENDS=cpu,wasm,webgpu.
for golden in backbones:src/backbones.golden.test.ts decoder:src/decoder.golden.test.ts trainer:src/model/spark-model.golden.test.ts; do
  (cd "packages/${golden%%:*}" && SPARKMIM_TEST_BACKENDS=wasm npx jest "${golden#*:}") 2>&1 | tee -a "$log" || status=$?
done
# The benchmark's CI-sized form (issue 17): each kind of scenario runs on wasm and on cpu in one process;
# it fails on errors (and leaked tensors), never on timings.
echo "sparkmim bench --ci:"
node apps/pretrain/bin/sparkmim.mjs bench --ci || status=$?
# One closing line over every package's jest summary ("Tests: 3 failed, 1 skipped, 40 passed, 44 total").
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter((l) => /Tests:\s/.test(l));
  const sum = (word) => lines.reduce((n, l) => n + Number((l.match(new RegExp("(\\d+) " + word)) || [0, 0])[1]), 0);
  console.log(`tests: ${sum("passed")} passed, ${sum("failed")} failed, ${sum("skipped")} skipped`);
' "$log"
rm -f "$log"
exit "$status"
