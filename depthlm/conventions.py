"""Which depth a DepthLMBench jsonl file holds: z-depth or Euclidean ray distance, per dataset.

Reference files carry no ``depth_type``, and the DepthLM reference scripts wrote different
quantities for different datasets (docs/data-builders.md has the table with the line of each
script). A file is read with its dataset's convention (:func:`reference_depth_type`); a file
whose dataset nothing names falls back to ``records.REFERENCE_DEPTH_TYPE``.

The convention can also be *measured* (:func:`detect`): indoor scenes are mostly planes, and a
plane stays a plane only under the right reading. Back-projecting an image's labelled points
as z-depth and as ray distance and fitting planes to each (sequential RANSAC) counts how many
points lie on planes under each reading; the reading with clearly more wins. On the real
iBims-1 sample this gives z (docs/data-builders.md has the numbers).

    python -m depthlm.conventions ../shared/data/ibims1/ibims1_val.jsonl
    depthlm build check-convention ../shared/data/ibims1/ibims1_val.jsonl   # the same report
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depthlm.geometry import DepthType, Intrinsics, unproject

# dataset -> (what its DepthLMBench file holds, evidence). Script paths are in the public
# reference repository facebookresearch/DepthLM_Official at commit b6e15a8.
CONVENTIONS: dict[str, tuple[DepthType, str]] = {
    "argoverse2": ("ray", "utils/curate_argoverse.py: depth = sqrt(x^2+y^2+z^2) of points_cam"),
    "waymo": (
        "ray",
        "utils/curate_waymo.py: range_image_utils.build_camera_depth_image (distance to the camera)",
    ),
    "nuscenes": ("z", "utils/curate_nuscenes_{train,eval}.py: depths = points_cam[2] (z)"),
    "ddad": ("z", "utils/curate_ddad.py: dgp datum['depth'] (generate_depth_from_datum='lidar', camera z)"),
    "eth3d": ("ray", "utils/curate_eth3d.py: sqrt(xn^2+yn^2+1) * z"),
    "scannetpp": ("ray", "utils/curate_scannet.py: 'convert to euclidean distance', sqrt(x^2+y^2+z^2)"),
    "sunrgbd": ("ray", "utils/curate_sunRGBD.py: sqrt(x^2+y^2+z^2)"),
    "nyuv2": ("ray", "utils/curate_NYU.py: sqrt(x^2+y^2+z^2)"),
    "matterport3d": ("ray", "utils/curate_matterport3d.py: sqrt(x_real^2+y_real^2+z_real^2)"),
    "ibims1": ("z", "no script released; examples/ibims1/ibims1_val.jsonl measured by plane fits (detect)"),
}
# names the reference files and users give the same datasets (file stems: NYUv2.jsonl, sunRGBD.jsonl,
# matterport.jsonl, argoverse2_val.jsonl, nuscenes_eval.jsonl, ibims1_val.jsonl, ...)
ALIASES: dict[str, str] = {
    "argoverse": "argoverse2",
    "av2": "argoverse2",
    "waymo": "waymo",
    "nuscenes": "nuscenes",
    "ddad": "ddad",
    "eth3d": "eth3d",
    "scannet": "scannetpp",
    "sunrgbd": "sunrgbd",
    "nyu": "nyuv2",
    "matterport": "matterport3d",
    "ibims": "ibims1",
}


def canonical_dataset(name: str | None) -> str | None:
    """The table's name for a dataset name or file stem ("NYUv2" -> "nyuv2"), or None."""
    if not name:
        return None
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    for alias in sorted(ALIASES, key=len, reverse=True):
        if key.startswith(alias):
            return ALIASES[alias]
    return None


def guess_dataset(path: str | Path) -> str | None:
    """Dataset named by a jsonl file's stem or, failing that, its folder's name."""
    p = Path(path)
    return canonical_dataset(p.stem) or canonical_dataset(p.parent.name)


def reference_depth_type(dataset: str | None, fallback: DepthType = "ray") -> DepthType:
    """What a DepthLMBench file of `dataset` holds (the table above); `fallback` if unknown."""
    name = canonical_dataset(dataset)
    return CONVENTIONS[name][0] if name else fallback


# ----------------------------------------------------------------------------- detection


@dataclass
class ConventionReport:
    """Points on planes under each reading, summed over images, and the verdict."""

    images: int = 0
    points: int = 0
    on_planes: dict = field(default_factory=lambda: {"z": 0, "ray": 0})
    images_won: dict = field(default_factory=lambda: {"z": 0, "ray": 0})
    tolerance_m: float = 0.003
    verdict: str = "unclear"  # "z", "ray" or "unclear"

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def __str__(self) -> str:
        z, r = self.on_planes["z"], self.on_planes["ray"]
        return (
            f"{self.verdict}: of {self.points} labelled points in {self.images} images, {z} lie on planes "
            f"within {self.tolerance_m * 1000:g} mm read as z-depth vs {r} read as ray distance; "
            f"z fits better in {self.images_won['z']} images, ray in {self.images_won['ray']}"
        )


def points_on_planes(
    xyz: np.ndarray,
    tol: float = 0.003,
    rel_tol: float = 0.001,
    min_inliers: int = 10,
    trials: int = 256,
    seed: int = 0,
) -> int:
    """How many points sequential RANSAC puts on planes (each plane >= min_inliers points).

    A point is on a plane within max(tol, rel_tol * its distance from the camera): labels are
    stored with millimetre-scale noise indoors and proportionally more far away.
    """
    rng = np.random.default_rng(seed)
    pts = np.asarray(xyz, dtype=np.float64)
    limit_all = np.maximum(tol, rel_tol * np.linalg.norm(pts, axis=1))
    remaining = np.arange(len(pts))
    total = 0
    while len(remaining) >= max(min_inliers, 3):
        p, limit = pts[remaining], limit_all[remaining]
        idx = np.stack([rng.choice(len(p), 3, replace=False) for _ in range(trials)])
        a, b, c = p[idx[:, 0]], p[idx[:, 1]], p[idx[:, 2]]
        normals = np.cross(b - a, c - a)
        norm = np.linalg.norm(normals, axis=1)
        ok = norm > 1e-12
        if not ok.any():
            break
        normals = normals[ok] / norm[ok, None]
        offsets = np.einsum("ij,ij->i", normals, a[ok])
        dist = np.abs(p @ normals.T - offsets)  # (points, planes)
        inl = dist <= limit[:, None]
        best = int(np.argmax(inl.sum(axis=0)))
        members = inl[:, best]
        if members.sum() >= 3:  # least-squares refit on the inliers, then recount
            q = p[members]
            centre = q.mean(axis=0)
            normal = np.linalg.svd(q - centre, full_matrices=False)[2][-1]
            refit = np.abs((p - centre) @ normal) <= limit
            if refit.sum() >= members.sum():
                members = refit
        n = int(members.sum())
        if n < min_inliers:
            break
        total += n
        remaining = remaining[~members]
    return total


def detect_arrays(items, tol: float = 0.003, min_points: int = 10, margin: float = 1.5) -> ConventionReport:
    """Verdict over (points (N, 2), depths (N,), Intrinsics) triples, one per image.

    The verdict names a reading only when it puts `margin` times as many points on planes as
    the other and fits better in more images; otherwise "unclear" (e.g. LiDAR files of
    outdoor scenes, few points per image, or no planes).
    """
    rep = ConventionReport(tolerance_m=tol)
    for points, depths, intr in items:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        depths = np.asarray(depths, dtype=np.float64).reshape(-1)
        good = np.isfinite(depths) & (depths > 0)
        points, depths = points[good], depths[good]
        if len(depths) < min_points:
            continue
        rep.images += 1
        rep.points += len(depths)
        counts = {}
        for reading in ("z", "ray"):
            counts[reading] = points_on_planes(unproject(points, depths, intr, reading), tol=tol)
            rep.on_planes[reading] += counts[reading]
        if counts["z"] != counts["ray"]:
            rep.images_won["z" if counts["z"] > counts["ray"] else "ray"] += 1
    z, r = rep.on_planes["z"], rep.on_planes["ray"]
    if z >= margin * max(r, 1) and rep.images_won["z"] > rep.images_won["ray"]:
        rep.verdict = "z"
    elif r >= margin * max(z, 1) and rep.images_won["ray"] > rep.images_won["z"]:
        rep.verdict = "ray"
    return rep


def detect(path: str | Path, max_images: int | None = 100, tol: float = 0.003) -> ConventionReport:
    """Measure the convention of a DepthLMBench jsonl file (its first `max_images` lines)."""
    items = []
    with open(path, encoding="utf-8") as fh:
        for text in fh:
            if max_images is not None and len(items) >= max_images:
                break
            try:
                obj = json.loads(text)
                intr = Intrinsics.from_list([float(v) for v in obj["intrinsics"]])
                items.append((obj["pixel_coords"], obj["depth"], intr))
            except (ValueError, KeyError, TypeError):
                continue  # unusable lines are the reader's to report
    return detect_arrays(items, tol=tol)


def main(argv: list[str] | None = None) -> int:
    """Report each file's measured convention next to the one its dataset name implies."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m depthlm.conventions", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("files", nargs="+", help="DepthLMBench .jsonl files")
    parser.add_argument("--max-images", type=int, default=100, help="lines measured per file (0 = all)")
    parser.add_argument(
        "--tolerance", type=float, default=0.003, help="metres from a plane that count as on it"
    )
    args = parser.parse_args(argv)
    for f in args.files:
        print(report_line(f, args.max_images or None, args.tolerance))
    return 0


def report_line(path: str | Path, max_images: int | None = 100, tol: float = 0.003) -> str:
    rep = detect(path, max_images, tol)
    name = guess_dataset(path)
    table = f"table: {name} files hold {CONVENTIONS[name][0]}" if name else "table: dataset not recognised"
    return f"{path}: measured {rep} ({table})"


if __name__ == "__main__":
    sys.exit(main())
