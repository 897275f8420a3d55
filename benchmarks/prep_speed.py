"""Speed of the rendering path: PNG on disk -> model-ready pixel tensors, per training sample.

Compares, on the real iBims-1 sample at f_uni 1000 with training crops:
  ours      depthlm.render.render_record (one resample straight to the grid-aligned crop,
            marker, prompt) + the image processor training uses (depthlm.models.load_processor:
            torchvision backend where it works) with resizing switched off (the rendered
            size is already on its grid);
  floor     PNG decode + one bicubic resize of the whole image to the size ours emits;
  reference the reference pipeline: resize to int(W*s) x int(H*s) (s = f/fx), centre crop,
            then the processor's own resize to multiples of 28 (its undistort step, ~5 ms,
            is left out: OpenCV is not a dependency here).

    .venv/bin/python benchmarks/prep_speed.py [--data ../shared/data/ibims1] [--samples 200]

The last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
from PIL import Image

from depthlm.models import load_processor
from depthlm.records import read_records
from depthlm.render import render_record
from depthlm.settings import RenderSettings


def timed(fn, items) -> float:
    fn(items[0])  # warm-up
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("DEPTHLM_IBIMS1", "../shared/data/ibims1"))
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--f-uni", type=float, default=1000.0)
    args = parser.parse_args()

    records = read_records(os.path.join(args.data, "ibims1_val.jsonl"))
    settings = RenderSettings(f_uni=args.f_uni)
    from depthlm.tiny import build_tiny_model

    with (
        tempfile.TemporaryDirectory() as tmp
    ):  # the processor of a Qwen2.5-VL checkpoint, as training loads it
        model_dir = build_tiny_model("qwen2_5_vl", tmp)
        processor = load_processor(
            model_dir, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels
        ).image_processor
    rng = np.random.default_rng(0)
    jobs = [
        (records[i % len(records)], int(rng.integers(len(records[i % len(records)]))))
        for i in range(args.samples)
    ]
    sizes: dict[int, tuple[int, int]] = {}

    def ours(job):
        rec, k = job
        q = render_record(rec, k, settings, rng=np.random.default_rng(id(job) % 2**32))
        sizes[id(job)] = q.image.size
        return processor(images=[q.image], do_resize=False, return_tensors="pt")["pixel_values"]

    def floor(job):
        rec, _ = job
        with Image.open(rec.image) as im:
            return im.convert("RGB").resize(sizes[id(job)], Image.Resampling.BICUBIC)

    def reference(job):
        rec, _ = job
        s = settings.f_uni / rec.intrinsics.fx
        with Image.open(rec.image) as im:
            im = im.convert("RGB")
            im = im.resize((int(im.width * s), int(im.height * s)), Image.Resampling.BICUBIC)
        w, h = min(im.width, 1200), min(im.height, 950)
        left, top = (im.width - w) // 2, (im.height - h) // 2
        im = im.crop((left, top, left + w, top + h))
        return processor(images=[im], return_tensors="pt")["pixel_values"]

    ours_ms = timed(ours, jobs)
    floor_ms = timed(floor, jobs)
    reference_ms = timed(reference, jobs)
    render_only = timed(lambda j: render_record(j[0], j[1], settings, rng=np.random.default_rng(0)), jobs)
    mean_pixels = float(np.mean([w * h for w, h in sizes.values()]))
    figures = {
        "samples": len(jobs),
        "f_uni": settings.f_uni,
        "ours_ms": round(ours_ms, 2),
        "ours_render_only_ms": round(render_only, 2),
        "floor_ms": round(floor_ms, 2),
        "reference_ms": round(reference_ms, 2),
        "prep_over_floor_ratio": round(ours_ms / floor_ms, 3),
        "reference_over_ours": round(reference_ms / ours_ms, 3),
        "mean_view_pixels": round(mean_pixels),
        "processor": type(processor).__name__,
        "render_over_floor_ratio": round(render_only / floor_ms, 3),
    }
    print(
        f"ours {ours_ms:.1f} ms/sample (render {render_only:.1f}), floor {floor_ms:.1f}, reference {reference_ms:.1f}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
