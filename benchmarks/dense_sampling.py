"""Dense point sampling: milliseconds per frame of data_builders.sampling.sample_dense on a
ScanNet++-sized map (1920x1440, iPhone depth 256x192 upsampled nearest, so it has depth steps,
holes and an invalid strip), for 1, 100 and all points per image, uniform and stratified.

    .venv/bin/python benchmarks/dense_sampling.py
    .venv/bin/python benchmarks/dense_sampling.py --against 6ce1dfe   # also time sampling.py of a git revision

`--against` loads data_builders/sampling.py as it was at that revision (e.g. before the
neighbourhood test ran only on drawn pixels) and times both on the same map. Each figure is the
median of --repeats runs. The last stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_builders import sampling  # noqa: E402
from depthlm.geometry import Intrinsics  # noqa: E402


def scannetpp_like_map() -> tuple[np.ndarray, np.ndarray, Intrinsics]:
    yy, xx = np.mgrid[0:192, 0:256]
    small = 1.5 + 3.0 * yy / 192 + 0.5 * np.sin(xx / 20.0)  # floor and walls
    small[60:120, 100:160] = 1.0  # an object in front: depth steps around it
    small[np.random.default_rng(0).random(small.shape) < 0.03] = 0  # holes
    depth = small[np.arange(1440) * 192 // 1440][:, np.arange(1920) * 256 // 1920].astype(np.float32)
    valid = np.ones(depth.shape, dtype=bool)
    valid[:, :40] = False
    return depth, valid, Intrinsics(1440.0, 1440.0, 959.5, 719.5, 1920, 1440)


def module_at(rev: str):
    text = subprocess.run(
        ["git", "show", f"{rev}:data_builders/sampling.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="depthlm-bench-")) / "sampling_then.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("sampling_then", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sampling_then"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def time_ms(mod, depth, valid, intr, ppi: int, mode: str, repeats: int) -> float:
    cfg = mod.SamplingConfig(points_per_image=ppi, mode=mode)
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        mod.sample_dense(depth, intr, "z", cfg, np.random.default_rng(seed), valid)
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--against", default=None, metavar="REV", help="also time sampling.py of this git revision"
    )
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    depth, valid, intr = scannetpp_like_map()
    modules = {"now": sampling}
    if args.against:
        modules[args.against] = module_at(args.against)
    figures: dict = {"map": "1920x1440", "load_avg_1min": os.getloadavg()[0], "ms_per_frame": {}}
    for mode in ("uniform", "stratified"):
        for ppi in (1, 100, 0):
            row = {
                name: time_ms(mod, depth, valid, intr, ppi, mode, args.repeats)
                for name, mod in modules.items()
            }
            figures["ms_per_frame"][f"{mode}_{ppi or 'all'}pt"] = row
            print(
                f"{mode:10s} {ppi or 'all':>3} points/image: "
                + ", ".join(f"{k} {v} ms" for k, v in row.items())
            )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
