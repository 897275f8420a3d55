"""Make PyPI's torchvision importable beside the CPU build of torch.

Why: no CPU torchvision wheel exists on PyPI. The CUDA one installs beside
torch+cpu, but its compiled ops cannot load, and ``import torchvision`` then dies
registering fake kernels for ``torchvision::nms``/``qnms``. The Qwen-VL video
processors (transformers) and vLLM only need torchvision's pure-Python parts, so
we skip those two registrations when the compiled ops are missing. Idempotent;
a no-op where torchvision imports cleanly (GPU machines) or is absent.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

GUARD = "(lambda f: f) if not torchvision.extension._has_ops() else "


def main() -> int:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        print("torchvision not installed: nothing to fix")
        return 0
    ok = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True).returncode == 0
    if ok:
        print("torchvision imports cleanly: nothing to fix")
        return 0
    path = Path(spec.origin).parent / "_meta_registrations.py"
    text = path.read_text()
    for op in ("nms", "qnms"):
        old = f'@torch.library.register_fake("torchvision::{op}")'
        text = text.replace(old, f"@({GUARD}{old[1:]})")
    path.write_text(text)
    res = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True)
    if res.returncode != 0:
        print(res.stderr[-2000:], file=sys.stderr)
        print(f"could not make torchvision importable (patched {path})", file=sys.stderr)
        return 1
    print(f"patched {path}: torchvision now imports without its compiled ops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
