#!/usr/bin/env bash
# Prepare .whl/: the wheels a bare GPU machine (docs/gpu.md: Python 3.12, torch 2.11 CUDA 13,
# transformers 5.17, accelerate, peft, pyarrow, pandas, no trl/datasets) needs to run
# benchmarks/gpu_check.py. Pinned to the versions this repo is tested with; no dependency
# resolution (--no-deps): each missing dependency is named here. About 14 MB.
#   bash scripts/gpu_wheels.sh            # then carry .whl with the check (docs/gpu.md)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.whl}
PIP=${PIP:-.venv/bin/python -m pip}
WHEELS=(
  transformers==5.19.0    # the machine's 5.17 cannot train: TRL 1.16 refuses assistant_only_loss for VLMs below 5.18
  trl==1.16.0             # the recipes' trainer
  datasets==5.2.0         # trl's and the recipes' data layer
  dill==0.4.0             # datasets (<0.4.2)
  multiprocess==0.70.18   # datasets (<0.70.20)
  qwen-vl-utils==0.0.14   # a declared dependency of depthlm (its video reader, av, is not needed: no videos)
)
mkdir -p "$OUT"
rm -f "$OUT"/*.whl
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$OUT" "${WHEELS[@]}" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
ls "$OUT"/*.whl >/dev/null
echo "gpu_wheels: $(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1) in $OUT"
