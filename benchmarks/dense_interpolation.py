"""How much a dense map loses to interpolation alone: true answers at a grid of pixels of
synthetic scenes (exact dense depth and object masks), densified by each method, scored with
depthlm.dense.metrics (all valid pixels, FDE-Bench regions per object, flying points).

    .venv/bin/python benchmarks/dense_interpolation.py                 # 20 scenes, 32x24 grid
    .venv/bin/python benchmarks/dense_interpolation.py --noise 0.1     # answers off by ~10 % (log-normal)
    .venv/bin/python benchmarks/dense_interpolation.py --figure docs/images/dense_interpolation.png

This is the ceiling of the method for a model that answers every queried pixel perfectly
(or with --noise, as a model with that error would). The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_builders.scenes import render_scene  # noqa: E402
from depthlm.dense import metrics as dm  # noqa: E402
from depthlm.dense.interpolate import METHODS, densify  # noqa: E402
from depthlm.dense.sampling import grid_points, parse_grid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--grid", default="32x24")
    parser.add_argument("--noise", type=float, default=0.0, help="sigma of log-normal answer error")
    parser.add_argument("--figure", help="save input | jbu | linear | ground truth of scene 0 here")
    args = parser.parse_args()
    grid = parse_grid(args.grid)
    rng = np.random.default_rng(0)
    scores: dict[str, list] = {m: [] for m in METHODS}
    seconds: dict[str, float] = dict.fromkeys(METHODS, 0.0)
    first = None
    for seed in range(args.scenes):
        scene = render_scene(seed, size=(640, 480), focal_range=(450.0, 650.0))
        z = np.where(scene.depth > 0, scene.depth, np.nan)
        pts = grid_points(scene.image.size, grid)
        ix = pts.astype(int)
        answers = z[ix[:, 1], ix[:, 0]] * np.exp(rng.normal(0, args.noise, len(pts)))
        masks = [
            scene.masks == k for k in range(1, int(scene.masks.max()) + 1) if (scene.masks == k).sum() > 50
        ]
        for m in METHODS:
            t = time.perf_counter()
            pred = densify(pts, answers, scene.image, m)
            seconds[m] += time.perf_counter() - t
            d = dm.dense_metrics(pred, z)
            scores[m].append(
                {
                    "delta1": d["delta1"],
                    "abs_rel": d["abs_rel"],
                    "flying_rate": dm.flying_points(pred, z)["flying_rate"],
                    "regions": dm.region_metrics(pred, z, masks)["per_target"],
                }
            )
            if seed == 0:
                first = first or {"image": scene.image, "z": z, "pts": pts}
                first[m] = pred
    result: dict = {
        "scenes": args.scenes,
        "grid": list(grid),
        "points": int(np.prod(grid)),
        "noise": args.noise,
    }
    print(f"{args.scenes} synthetic scenes 640x480, {grid[0]}x{grid[1]} true answers, noise {args.noise}")
    for m in METHODS:
        rows = scores[m]
        targets = [t for r in rows for t in r["regions"]]
        region = {
            name: {k: float(np.nanmedian([t[name][k] for t in targets])) for k in ("delta1", "abs_rel")}
            for name in dm.REGIONS
        }
        result[m] = {
            "delta1": float(np.mean([r["delta1"] for r in rows])),
            "abs_rel": float(np.mean([r["abs_rel"] for r in rows])),
            "flying_rate": float(np.nanmean([r["flying_rate"] for r in rows])),
            "regions_median": region,
            "targets": len(targets),
            "ms_per_map": round(1000 * seconds[m] / args.scenes, 1),
        }
        r = result[m]
        print(
            f"{m:8s} delta1 {r['delta1']:.3f}  AbsRel {r['abs_rel']:.3f}  flying {r['flying_rate']:.3f}  "
            f"boundary delta1 {region['boundary']['delta1']:.3f}  foreground delta1 {region['foreground']['delta1']:.3f}  "
            f"{r['ms_per_map']:.0f} ms/map"
        )
    if args.figure and first is not None:
        from depthlm.dense.pictures import side_by_side

        side_by_side(first["image"], first["jbu"], first["z"], args.figure, points=first["pts"], title="jbu")
        lin = Path(args.figure).with_name(Path(args.figure).stem + "_linear.png")
        side_by_side(first["image"], first["linear"], first["z"], lin, points=first["pts"], title="linear")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
