"""``depthlm dense``: a photo -> dense depth map, preview and point cloud.

Examples::

    depthlm dense --model runs/sft --image kitchen.jpg --fov 70 --out out/kitchen
    depthlm dense --model runs/sft --image scan.png --intrinsics 518.9,519.5,325.6,253.7 --out out/scan \\
        --adaptive 1500 --box 200,120,420,330
    depthlm dense --model runs/multi --image kitchen.jpg --out out/k16 --points-per-query 16
    depthlm dense --model constant:2.0 --image kitchen.jpg --out out/dry     # dry run, no model
    depthlm dense --model runs/sft --eval data/synth/val --out results/dense  # records with a depth_map

Writes depth.png (16-bit mm, z-depth), depth.npy (float32 m), sparse.npy (the raw answers),
preview.png (scale bar), points.json (pixel, answer text, metres), cloud.ply (binary, camera
frame) and dense.json (strategy, counts, seconds per stage). Rerun with the same --out to
continue a killed run. See docs/dense.md.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from depthlm.commands.backend import (
    add_backend_arguments,
    backend_from_args,
    settings_from_args,
    stop_on_sigterm,
)
from depthlm.commands.camera import add_camera_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_backend_arguments(p, default="vllm")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="your photo (JPEG, PNG, WebP, ...)")
    src.add_argument("--eval", metavar="RECORDS", help="score dense maps on records with extras.depth_map")
    add_camera_arguments(p)
    p.add_argument("--out", required=True, help="output folder; rerunning with the same folder resumes")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--grid", default="32x24", help="COLUMNSxROWS of queried pixels (default 32x24)")
    where.add_argument(
        "--adaptive", type=int, metavar="N", help="about N pixels, denser near image edges and in --box"
    )
    p.add_argument(
        "--box", help="x0,y0,x1,y1: the target (grid: only the box; adaptive: half the extra points)"
    )
    p.add_argument(
        "--points-per-query",
        type=int,
        default=1,
        metavar="K",
        help="1: one depth query per pixel (what eval asks); K > 1: the points task, K markers per "
        "query (a model trained on `points`)",
    )
    p.add_argument("--interpolation", default="jbu", choices=("jbu", "linear", "nearest"))
    p.add_argument("--chunk-size", type=int, default=64, help="queries per generate call and per resume step")
    p.add_argument("--ply-stride", type=int, default=1, help="every n-th pixel in cloud.ply (1: all)")
    p.add_argument(
        "--structured",
        action="store_true",
        help="vLLM: constrain single-point answers to the template (always parseable); not with K > 1",
    )
    p.add_argument("--f-uni", type=float, help="override the unified focal length (ablations; printed)")
    p.add_argument("--max-pixels", type=int, help="override the pixel budget per view (printed)")
    p.add_argument("--max-records", type=int, help="--eval: at most this many records")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def options_from_args(args: argparse.Namespace, size: tuple[int, int] | None):
    from depthlm.dense import DenseOptions
    from depthlm.dense.sampling import parse_box, parse_grid
    from depthlm.dense.strategy import MAX_K
    from depthlm.errors import DepthLMError

    if not 1 <= args.points_per_query <= MAX_K:
        raise DepthLMError(
            f"--points-per-query must be 1..{MAX_K} (labels A..Z), got {args.points_per_query}"
        )
    if size is None and (args.intrinsics or args.fov):
        raise DepthLMError("--intrinsics and --fov are for --image; records carry their own intrinsics")
    box = None
    if args.box:
        if size is None:
            raise DepthLMError("--box is for one photo (--image), not --eval")
        box = parse_box(args.box, size)
    return DenseOptions(
        grid=None if args.adaptive else parse_grid(args.grid),
        adaptive=args.adaptive,
        box=box,
        k=args.points_per_query,
        method=args.interpolation,
        seed=args.seed,
        chunk_size=args.chunk_size,
        max_tokens=args.max_tokens,
        structured=args.structured,
    )


def run(args: argparse.Namespace) -> int:
    from depthlm.ask import load_photo
    from depthlm.dense import dense_depth
    from depthlm.dense.evaluate import evaluate_dense
    from depthlm.intrinsics_guess import guess_camera

    photo = camera = None
    if args.image:
        photo = load_photo(args.image)
        camera = guess_camera(photo.size, photo.exif, intrinsics=args.intrinsics, fov=args.fov)
    options = options_from_args(args, photo.size if photo else None)  # bad flags fail before a model loads
    overrides = {"f_uni": args.f_uni, "max_pixels": args.max_pixels}
    settings = settings_from_args(args, **overrides)
    changed = {k: v for k, v in overrides.items() if v is not None}
    if changed:
        print(f"render settings overridden: {changed}")
    backend = backend_from_args(args, settings)
    previous = stop_on_sigterm()
    try:
        if args.eval:
            summary = evaluate_dense(
                backend,
                args.eval,
                args.out,
                options,
                max_records=args.max_records,
                progress=not args.no_progress,
            )
            print(
                json.dumps({k: summary[k] for k in ("records", "mean", "regions_median", "flying_rate_mean")})
            )
            if summary["skipped"]:
                print(f"skipped {len(summary['skipped'])} records (listed in metrics.json)", file=sys.stderr)
            return 0
        print(f"camera: {camera.describe()}")
        if camera.warning:
            print(f"warning: {camera.warning}", file=sys.stderr)
        result, files = dense_depth(
            backend,
            photo.image,
            intrinsics=camera.intrinsics,
            options=options,
            out_dir=args.out,
            progress=not args.no_progress,
            ply_stride=args.ply_stride,
        )
    finally:
        backend.close()
        signal.signal(signal.SIGTERM, previous)
    s = result.stats
    print(
        f"{s['points']} points in {s['queries']} queries, {s['answered_points']} answered, "
        f"{s['missing_points']} without a distance; "
        + ", ".join(f"{k} {v:.2f} s" for k, v in result.timing.items())
    )
    print("wrote: " + ", ".join(str(p) for p in files.values()))
    return 0
