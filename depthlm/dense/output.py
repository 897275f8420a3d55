"""Write a DenseResult: depth maps, preview, queried points, point cloud, and dense.json."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from depthlm.dense import writers
from depthlm.dense.runner import DenseResult

FILES = {
    "depth_png": "depth.png",
    "depth_npy": "depth.npy",
    "sparse_npy": "sparse.npy",
    "preview": "preview.png",
    "points": "points.json",
    "cloud": "cloud.ply",
}


def save(
    result: DenseResult,
    image: Image.Image,
    out_dir: str | os.PathLike,
    *,
    ply_stride: int = 1,
    run_info: dict | None = None,
) -> dict[str, Path]:
    """Every output file into `out_dir`; dense.json records strategy, counts, timing per stage
    (including this one) and `run_info` (model, backend, render settings)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    paths = {key: out / name for key, name in FILES.items()}
    writers.write_png_mm(result.depth, paths["depth_png"])
    writers.write_npy(result.depth, paths["depth_npy"])
    writers.write_npy(sparse_map(result), paths["sparse_npy"])
    writers.preview(result.depth, paths["preview"], title=f"{result.stats.get('points', 0)} queried points")
    writers.write_json(
        {
            "depth_type": "z",
            "answered": result.answered,
            "intrinsics": result.intrinsics.to_list(),
            "points": result.samples,
        },
        paths["points"],
    )
    xyz, rgb = writers.cloud(result.depth, result.intrinsics, image, stride=ply_stride)
    writers.write_ply(xyz, rgb, paths["cloud"])
    result.timing["write"] = time.perf_counter() - t
    summary = {
        "strategy": result.strategy,
        "stats": {**result.stats, "cloud_points": int(len(xyz))},
        "timing_s": {k: round(v, 4) for k, v in result.timing.items()},
        "depth_type": "z",
        "answered": result.answered,
        "intrinsics": result.intrinsics.to_list(),
        "image_size": list(image.size),
        "files": {k: p.name for k, p in paths.items()},
        **(run_info or {}),
    }
    paths["summary"] = writers.write_json(summary, out / "dense.json")
    return paths


def sparse_map(result: DenseResult) -> np.ndarray:
    """The raw answers alone: z-depth at each answered pixel, NaN elsewhere (kept beside the map)."""
    h, w = result.depth.shape
    sparse = np.full((h, w), np.nan, dtype=np.float32)
    for s in result.samples:
        if s["z"] is not None:
            x, y = (int(round(v)) for v in s["pixel"])
            sparse[y, x] = s["z"]
    return sparse
