"""Dense evaluation on record sets with dense ground truth (``extras.depth_map``).

``evaluate_dense(backend, "data/synth/val", "results/dense", options)`` runs a dense map for
each record (resumable per record, in ``OUT/records/<i>/``), scores it against the record's
depth map converted to z-depth (``depthlm.dense.metrics``: all valid pixels, FDE-Bench regions
for each object of ``extras.masks`` with ``extras.objects``, flying points at depth edges),
draws input | prediction | ground truth | error side by side, and writes ``metrics.json``:
per-record scores, their means, the region medians over every target of the set, and the
records skipped with the reason. ``depthlm dense --eval RECORDS`` is its command line.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from depthlm.dense import metrics as dm
from depthlm.dense.pictures import side_by_side
from depthlm.dense.runner import DenseOptions, run_dense
from depthlm.dense.writers import write_json
from depthlm.errors import DepthLMError
from depthlm.geometry import ray_scale
from depthlm.records import Record, read_records
from depthlm.render import load_image
from depthlm.tasks.base import TaskError
from depthlm.tasks.extras import read_depth_map, read_masks

MEAN_KEYS = ("delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")


def gt_z(record: Record) -> np.ndarray | None:
    """The record's dense ground truth as z-depth (H, W), NaN where unknown; None without one."""
    depth = read_depth_map(record)
    if depth is None or record.depth_type == "z":
        return depth
    h, w = depth.shape
    yy, xx = np.mgrid[0:h, 0:w]
    scale = ray_scale(np.stack([xx.ravel(), yy.ravel()], 1), record.intrinsics).reshape(h, w)
    return depth / scale


def target_masks(record: Record) -> list[np.ndarray]:
    """One boolean mask per visible object (extras.masks label k = objects' id k); [] without masks."""
    if "masks" not in record.extras:
        return []
    labels = read_masks(record)
    ids = [o.get("id") for o in record.extras.get("objects") or []] or [
        int(v) for v in np.unique(labels) if v
    ]
    return [labels == int(k) for k in ids if k is not None and (labels == int(k)).any()]


def score(pred: np.ndarray, gt: np.ndarray, masks: list[np.ndarray]) -> dict:
    return {
        "dense": dm.dense_metrics(pred, gt),
        "regions": dm.region_metrics(pred, gt, masks),
        "flying": dm.flying_points(pred, gt),
    }


def evaluate_dense(
    backend,
    records_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: DenseOptions | None = None,
    *,
    max_records: int | None = None,
    progress: bool = True,
    pictures: bool = True,
) -> dict:
    """Dense maps and scores for the records of `records_path` that have a depth map."""

    options = options or DenseOptions()
    settings = backend.settings
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = read_records(str(records_path))
    if max_records is not None:
        records = records[:max_records]
    rows, skipped, all_targets = [], [], []
    for i, rec in enumerate(records):
        try:
            gt = gt_z(rec)
            if gt is None:
                skipped.append({"record": rec.id, "reason": "no extras.depth_map (dense ground truth)"})
                continue
            masks = target_masks(rec)
        except TaskError as err:
            skipped.append({"record": rec.id, "reason": str(err)})
            continue
        image = load_image(rec.image)
        if image.size != rec.intrinsics.size:
            skipped.append(
                {"record": rec.id, "reason": f"image is {image.size}, intrinsics say {rec.intrinsics.size}"}
            )
            continue
        folder = out / "records" / str(i)
        result = run_dense(backend, image, rec.intrinsics, settings, options, folder, progress=progress)
        scores = score(result.depth, gt, masks)
        all_targets += scores["regions"]["per_target"]
        np.save(folder / "depth.npy", result.depth)
        if pictures:
            side_by_side(
                image, result.depth, gt, folder / "side_by_side.png", points=result.points, title=rec.id
            )
        rows.append(
            {
                "record": rec.id,
                "folder": str(folder.relative_to(out)),
                **scores,
                "stats": result.stats,
                "timing_s": result.timing,
            }
        )
    if not rows:
        raise DepthLMError(
            f"{records_path}: no record has dense ground truth (extras.depth_map); {len(skipped)} skipped"
        )
    summary = {
        "records": len(rows),
        "skipped": skipped,
        "strategy": options.describe(),
        "backend": backend.describe(),
        "mean": {k: _mean([r["dense"][k] for r in rows]) for k in MEAN_KEYS},
        "flying_rate_mean": _mean([r["flying"]["flying_rate"] for r in rows]),
        "regions_median": {
            name: {m: _median([t[name][m] for t in all_targets]) for m in ("delta1", "abs_rel")}
            for name in dm.REGIONS
        },
        "targets": len(all_targets),
        "per_record": rows,
    }
    write_json(json.loads(json.dumps(summary, default=float)), out / "metrics.json")
    return summary


def _mean(values) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def _median(values) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.median(v)) if v else float("nan")
