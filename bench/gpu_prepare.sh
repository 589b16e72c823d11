#!/usr/bin/env bash
# Prepare what bench/gpu_check.sh needs on a GPU machine that reaches no package index, from the repo root:
#   .whl/      Python 3.12 wheels of the packages its image lacks (hydra-core, omegaconf, antlr4, kornia,
#              kornia_rs, spandrel, spandrel-extra-arches); versions = this venv's
#   .gpudata/  BSD400 + Set5 + Set14 from ../shared/data (B100 does not fit the 64 MiB transfer: score it back
#              here with `python bench/gpu_check.py --score OUT --data ../shared/data --sets B100`)
# Both folders are added to .git/info/exclude: never commit them.
#   bash bench/gpu_prepare.sh && run(command="bash bench/gpu_check.sh", carry=[".whl", ".gpudata"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-../shared/data}
mkdir -p .git/info .whl .gpudata/train .gpudata/benchmark
for path in /.whl/ /.gpudata/; do grep -qxF "$path" .git/info/exclude 2>/dev/null || echo "$path" >>.git/info/exclude; done
version() { python -c "import importlib.metadata as m; print(m.version('$1'))"; }
wheels=()
for name in hydra-core omegaconf kornia kornia_rs spandrel spandrel_extra_arches; do wheels+=("$name==$(version "$name")"); done
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${wheels[@]}"
# antlr4-python3-runtime is published as a source archive only: build its (pure Python) wheel here.
python -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
cp -r "$data/train/BSD400" .gpudata/train/
cp -r "$data/benchmark/Set5" "$data/benchmark/Set14" .gpudata/benchmark/
du -sh .whl .gpudata
