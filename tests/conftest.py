"""Shared fixtures. Nothing may be downloaded from the Hugging Face hub in tests."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Parquet sets cache their embedded extras files (depthlm.training.rows): never in the user's cache.
if "DEPTHLM_CACHE" not in os.environ:
    os.environ["DEPTHLM_CACHE"] = tempfile.mkdtemp(prefix="depthlm-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DEPTHLM_CACHE"], ignore_errors=True)

# Tests change directory and write configs in tmp folders: the sample path must not be relative.
if os.environ.get("DEPTHLM_IBIMS1"):
    os.environ["DEPTHLM_IBIMS1"] = str(Path(os.environ["DEPTHLM_IBIMS1"]).resolve())


# ------------------------------------------------------------------ the iBims-1 sample, real or made


def real_ibims1() -> Path | None:
    """The real iBims-1 sample (DepthLMBench jsonl + PNGs) named by DEPTHLM_IBIMS1, if it is there.
    CI has it; a fresh clone does not, so every test on it also runs on :func:`write_made_ibims1`."""
    value = os.environ.get("DEPTHLM_IBIMS1")
    root = Path(value).expanduser().resolve() if value else None
    return root if root is not None and (root / "ibims1_val.jsonl").is_file() else None


IBIMS1_ABSENT = (
    "real iBims-1 sample absent: DEPTHLM_IBIMS1"
    + (
        f"={os.environ['DEPTHLM_IBIMS1']} has no ibims1_val.jsonl"
        if os.environ.get("DEPTHLM_IBIMS1")
        else " not set"
    )
    + " (the same test ran on the made sample)"
)

# The made sample keeps the facts tests check on the real one: 100 640x480 images x 100 points,
# depths 0.631..22.345 m, points 10 px or more inside the border, several cameras (two are the
# real file's; the other two lie in its fx range, 550..626).
MADE_CAMERAS = (
    (559.62, 558.14, 361.87, 241.99),
    (550.39, 548.55, 355.44, 240.26),
    (626.16, 624.43, 318.02, 236.61),
    (581.35, 579.92, 330.48, 247.13),
)
MADE_DEPTH_RANGE = (0.631, 22.345)


def write_made_ibims1(root: Path, n_images: int = 100, n_points: int = 100, seed: int = 0) -> Path:
    """Write a DepthLMBench-format sample in the real file's layout (``ibims1_val.jsonl`` +
    ``rgb/*.png``): one line per image with intrinsics [fx, fy, cx, cy, W, H], integer
    pixel_coords [[x, y], ...] and one depth in metres per pixel. Deterministic."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = 640, 480
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    low, high = MADE_DEPTH_RANGE
    x, y = np.arange(width)[:, None], np.arange(height)[:, None]
    scenes = ("corridor", "kitchen", "office", "lab")
    lines = []
    for i in range(n_images):
        name = f"rgb/{scenes[i % 4]}_{i // 4 + 1:02d}.png"
        if i < len(scenes):  # four pictures (PNG encoding is the slow part), linked under every name
            phase = rng.uniform(0, 2 * np.pi, 3)
            cols = 60 * np.sin(x / (23 + 7 * np.arange(3)) + phase)
            rows = 60 * np.sin(y / (31 + 5 * np.arange(3)) + phase)
            pixels = (127 + rows[:, None, :] + cols[None, :, :]).astype(np.uint8)
            Image.fromarray(pixels).save(root / name, compress_level=1)
        else:
            first = root / f"rgb/{scenes[i % 4]}_01.png"
            try:
                os.link(first, root / name)
            except OSError:
                shutil.copyfile(first, root / name)
        flat = rng.choice((width - 20) * (height - 20), n_points, replace=False)  # distinct pixels
        points = np.stack([10 + flat % (width - 20), 10 + flat // (width - 20)], 1)
        depths = np.round(np.exp(rng.uniform(np.log(low), np.log(high), n_points)), 4)
        if i == 0:
            depths[:2] = (low, high)  # the range the real sample spans, exactly
        camera = MADE_CAMERAS[(i // 25) % len(MADE_CAMERAS)]
        line = {
            "image": name,
            "intrinsics": [*camera, width, height],
            "pixel_coords": points.tolist(),
            "depth": depths.tolist(),
        }
        lines.append(json.dumps(line) + "\n")
    (root / "ibims1_val.jsonl").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def made_ibims1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A made stand-in for the real iBims-1 sample, written once per session."""
    return write_made_ibims1(tmp_path_factory.mktemp("made-ibims1"))


@pytest.fixture(scope="session", params=["made", "real"])
def ibims1(request: pytest.FixtureRequest) -> Path:
    """The iBims-1 sample folder: each test runs on the made sample, and again on the real one
    where DEPTHLM_IBIMS1 names it (skipped with the reason otherwise)."""
    if request.param == "real":
        root = real_ibims1()
        if root is None:
            pytest.skip(IBIMS1_ABSENT)
        return root
    return request.getfixturevalue("made_ibims1")


@pytest.fixture(scope="session")
def ibims1_any(request: pytest.FixtureRequest) -> Path:
    """For slow tests: the real sample where it is there, else the made one (one run, not two)."""
    return real_ibims1() or request.getfixturevalue("made_ibims1")


# ------------------------------------------------------------------ tiny models


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Qwen2.5-VL "tiny" model folder (about 1M parameters), built once per session."""
    from depthlm.tiny import build_tiny_model

    return build_tiny_model("qwen2_5_vl", tmp_path_factory.mktemp("tiny-qwen2_5_vl"), size="tiny")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Qwen3-VL "tiny" model folder, built once per session."""
    from depthlm.tiny import build_tiny_model

    return build_tiny_model("qwen3_vl", tmp_path_factory.mktemp("tiny-qwen3_vl"), size="tiny")
