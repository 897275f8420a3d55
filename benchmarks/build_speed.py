"""Build speed: images/s and points/s of `depthlm build` for the jsonl passthrough (real
iBims-1 sample) and for procedural synthetic scenes, with each build's peak memory.

    DEPTHLM_IBIMS1=../shared/data/ibims1 .venv/bin/python benchmarks/build_speed.py
    .venv/bin/python benchmarks/build_speed.py --synthetic-images 500 --num-proc 2

Each build runs in its own process so its peak resident memory (ru_maxrss, which includes
the interpreter and numpy/scipy, about 100 MB) is its own. The last stdout line is one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(spec: dict) -> dict:
    """Run one build (in this process) and measure it."""
    import data_builders
    from data_builders.scenes import render_scene

    out = Path(tempfile.mkdtemp(prefix="depthlm-bench-"))
    kind = spec.pop("kind")
    if kind == "render":
        n, size = spec["images"], tuple(spec["size"])
        render_scene(0, size=size)  # warm-up
        t = time.perf_counter()
        for seed in range(n):
            render_scene(seed, size=size)
        seconds = time.perf_counter() - t
        return {"images": n, "seconds": seconds, "images_per_s": n / seconds}
    t = time.perf_counter()
    summary = data_builders.build(out=out / "records", progress=False, **spec)
    seconds = time.perf_counter() - t
    return {
        "images": summary["images"],
        "points": summary["points"],
        "seconds": round(seconds, 3),
        "images_per_s": round(summary["images"] / seconds, 1),
        "points_per_s": round(summary["points"] / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run_child(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--synthetic-images", type=int, default=300)
    p.add_argument("--num-proc", type=int, default=1)
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return
    # the machine may be shared: the load average says how much of it this run had
    figures: dict = {"num_proc": args.num_proc, "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]}
    ibims = os.environ.get("DEPTHLM_IBIMS1")
    if ibims and Path(ibims, "ibims1_val.jsonl").is_file():
        spec = {
            "kind": "build",
            "source": "jsonl",
            "root": str(Path(ibims, "ibims1_val.jsonl")),
            "split": "val",
        }
        figures["jsonl_ibims1"] = run_child({**spec, "num_proc": args.num_proc})
        print(f"jsonl (iBims-1, 100 images x 100 points): {figures['jsonl_ibims1']}")
    else:
        print("jsonl: skipped (set DEPTHLM_IBIMS1 to the iBims-1 sample folder)")
    n = args.synthetic_images
    for ppi in (1, 100):
        spec = {"kind": "build", "source": "synthetic", "num_images": n, "points_per_image": ppi}
        key = f"synthetic_320x240_{ppi}pt"
        figures[key] = run_child({**spec, "num_proc": args.num_proc})
        print(f"synthetic build, 320x240, {ppi} point(s)/image: {figures[key]}")
    figures["synthetic_render_only_320x240"] = run_child(
        {"kind": "render", "images": min(n, 200), "size": [320, 240]}
    )
    print(f"render_scene only, 320x240: {figures['synthetic_render_only_320x240']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
