#!/usr/bin/env bash
# `npm run sparkmim -- <command>` from a clone: installs the workspace on first use, then runs the CLI.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$root/apps/pretrain/node_modules/@sparkmim/trainer" ]; then
  echo "sparkmim: installing the workspace once (pnpm install)..." >&2
  (cd "$root" && bash scripts/pnpm.sh install --frozen-lockfile --reporter=silent >&2)
fi
exec node "$root/apps/pretrain/bin/sparkmim.mjs" "$@"
