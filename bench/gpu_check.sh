#!/usr/bin/env bash
# The GPU check on the device machine: the wheels in .whl/ (hydra-core, omegaconf, antlr4, kornia, kornia_rs,
# spandrel, spandrel-extra-arches; the rest is in the machine's image), then bench/gpu_check.py.
#   bash bench/gpu_check.sh                      # --data .gpudata --out $OUT
#   DATA=../shared/data OUT=/tmp/g bash bench/gpu_check.sh --dry-run
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH=".:$PYTHONPATH" PYTHONUNBUFFERED=1
exec python3 bench/gpu_check.py --data "${DATA:-.gpudata}" --out "${OUT:-/tmp/gpu_check}" "$@"
