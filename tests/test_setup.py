"""Set-up: what scripts/setup.sh must leave behind on a fresh machine."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "scripts" / "fix_torchvision.py"
spec = importlib.util.spec_from_file_location("fix_torchvision", FIX)
fix_torchvision = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fix_torchvision)

USE = "import torchvision, torch; from torchvision.transforms.v2 import functional as F; " + (
    "print(tuple(F.resize(torch.zeros(3, 8, 8, dtype=torch.uint8), [4, 4], antialias=True).shape))"
)


def _import(pythonpath: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    return subprocess.run([sys.executable, "-c", USE], capture_output=True, text=True, env=env, timeout=120)


def test_fix_makes_a_fresh_pypi_torchvision_import_beside_this_torch(tmp_path):
    """The outcome setup.sh promises: PyPI's torchvision, as pip leaves it, imports and resizes
    after scripts/fix_torchvision.py. Checked on a copy of the installed package with the patch undone."""
    found = importlib.util.find_spec("torchvision")
    if found is None:
        pytest.skip("torchvision not installed")
    installed = Path(found.origin).parent
    site = tmp_path / "site"
    shutil.copytree(installed, site / "torchvision")
    if (installed.parent / "torchvision.libs").is_dir():
        shutil.copytree(installed.parent / "torchvision.libs", site / "torchvision.libs")
    meta = site / "torchvision" / "_meta_registrations.py"
    text = meta.read_text()
    for op in ("nms", "qnms"):  # undo the fix: the file as the wheel ships it
        plain = f'@torch.library.register_fake("torchvision::{op}")'
        text = text.replace(f"@({fix_torchvision.GUARD}{plain[1:]})", plain)
    meta.write_text(text)
    fresh = _import(site)
    if fresh.returncode == 0:
        pytest.skip("this torchvision imports without the fix (a CUDA build of torch)")
    assert "torchvision::nms" in fresh.stderr  # the fault the fix exists for
    env = dict(os.environ, PYTHONPATH=str(site))
    run = subprocess.run([sys.executable, str(FIX)], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0 and "patched" in run.stdout, run.stderr
    fixed = _import(site)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert fixed.stdout.strip() == "(3, 4, 4)"
    again = subprocess.run([sys.executable, str(FIX)], capture_output=True, text=True, env=env, timeout=120)
    assert "nothing to fix" in again.stdout  # idempotent: setup.sh reruns it


def test_setup_installs_no_system_packages():
    """make demo / make test run setup.sh: it must not apt-get anything (only .ci/run may)."""
    text = (REPO / "scripts" / "setup.sh").read_text()
    assert "apt-get" not in text and "apt " not in text
