"""Speed of the rendering path: PNG on disk -> model-ready pixel tensors, per training sample.

Compares, on the real iBims-1 sample at f_uni 1000 with training crops:
  ours      depthlm.render.render_record (decode, one resample of the focal-normalised
            frame by depthlm.geometry.resize_image, the grid-aligned crop, marker, prompt)
            + the image processor training uses (depthlm.models.load_processor: torchvision
            backend where it works) with resizing switched off (the view is on its grid);
  floor     PNG decode + one Pillow bicubic resize of the whole image to the size ours
            emits (also reported with depthlm's own resampler: floor_same_resampler_ms);
  reference the reference pipeline: resize to int(W*s) x int(H*s) (s = f/fx), centre crop,
            then the processor's own resize to multiples of 28 (its undistort step, ~5 ms,
            is left out: OpenCV is not a dependency here).

    .venv/bin/python benchmarks/prep_speed.py [--data ../shared/data/ibims1] [--samples 200] [--dataset-only]

Also times the training dataset as the recipes build it (depthlm.training.data.build_dataset):
set-up seconds and samples/s of rendered rows (``dataset_*``; ``--dataset-only``: just those).

Timed on one torch thread (a DataLoader worker's setting; Pillow's resize is single-threaded
too), then again on all of torch's threads (figures under "all_threads").
The last stdout line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from depthlm.geometry import resize_image
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


def measure(jobs, settings: RenderSettings, processor) -> dict[str, float]:
    """ms per sample of each path, in the current torch thread setting."""
    sizes: dict[int, tuple[int, int]] = {}

    def render_job(job):
        i, rec, k = job
        return render_record(rec, k, settings, rng=np.random.default_rng(i))

    def ours(job):
        q = render_job(job)
        sizes[job[0]] = q.image.size
        return processor(images=[q.image], do_resize=False, return_tensors="pt")["pixel_values"]

    def floor(job):
        with Image.open(job[1].image) as im:
            return im.convert("RGB").resize(sizes[job[0]], Image.Resampling.BICUBIC)

    def floor_same_resampler(job):
        with Image.open(job[1].image) as im:
            return resize_image(im.convert("RGB"), sizes[job[0]])

    def reference(job):
        rec = job[1]
        s = settings.f_uni / rec.intrinsics.fx
        with Image.open(rec.image) as im:
            im = im.convert("RGB")
            im = im.resize((int(im.width * s), int(im.height * s)), Image.Resampling.BICUBIC)
        w, h = min(im.width, 1200), min(im.height, 950)
        left, top = (im.width - w) // 2, (im.height - h) // 2
        im = im.crop((left, top, left + w, top + h))
        return processor(images=[im], return_tensors="pt")["pixel_values"]

    figures = {
        "ours_ms": timed(ours, jobs),
        "ours_render_only_ms": timed(render_job, jobs),
        "floor_ms": timed(floor, jobs),
        "floor_same_resampler_ms": timed(floor_same_resampler, jobs),
        "reference_ms": timed(reference, jobs),
    }
    figures = {k: round(v, 2) for k, v in figures.items()}
    figures["prep_over_floor_ratio"] = round(figures["ours_ms"] / figures["floor_ms"], 3)
    figures["render_over_floor_ratio"] = round(figures["ours_render_only_ms"] / figures["floor_ms"], 3)
    figures["reference_over_ours"] = round(figures["reference_ms"] / figures["ours_ms"], 3)
    figures["mean_view_pixels"] = round(float(np.mean([w * h for w, h in sizes.values()])))
    return figures


def training_rows(data: str, samples: int, f_uni: float) -> dict[str, float]:
    """The training dataset as the recipes build it (depthlm.training.data.build_dataset): set-up
    seconds, then samples/s of rendered rows read one by one (one torch thread)."""
    from depthlm.training.config import DataArguments, render_settings
    from depthlm.training.data import build_dataset

    args = DataArguments(record_sets=[data], samples_per_epoch=samples, f_uni=f_uni)
    start = time.perf_counter()
    dataset, _ = build_dataset(args, render_settings(args, grid=28), seed=0)
    setup = time.perf_counter() - start
    dataset[0]  # warm-up
    pixels = 0
    start = time.perf_counter()
    for i in range(samples):
        w, h = dataset[i]["images"][0].size
        pixels += w * h
    per_sample = (time.perf_counter() - start) / samples
    # The views differ in size with the random crops (which the two implementations draw differently):
    # rendering time grows with the view, so compare ms per megapixel as well as samples/s.
    return {
        "dataset_setup_s": round(setup, 2),
        "dataset_samples_per_s": round(1 / per_sample, 1),
        "dataset_mean_view_pixels": round(pixels / samples),
        "dataset_ms_per_mpx": round(per_sample * 1000 / (pixels / samples / 1e6), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("DEPTHLM_IBIMS1", "../shared/data/ibims1"))
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--f-uni", type=float, default=1000.0)
    parser.add_argument(
        "--dataset-only", action="store_true", help="only the training dataset's figures (quick A/B runs)"
    )
    args = parser.parse_args()
    if args.dataset_only:
        torch.set_num_threads(1)
        figures = training_rows(os.path.join(args.data, "ibims1_val.jsonl"), args.samples, args.f_uni)
        print(json.dumps({"samples": args.samples, "f_uni": args.f_uni, "threads": 1, **figures}))
        return

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
    jobs = []
    for i in range(args.samples):
        rec = records[i % len(records)]
        jobs.append((i, rec, int(rng.integers(len(rec)))))

    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a DataLoader worker's setting; Pillow is single-threaded too
    figures = {"samples": len(jobs), "f_uni": settings.f_uni, "threads": 1}
    figures.update(measure(jobs, settings, processor))
    figures.update(training_rows(os.path.join(args.data, "ibims1_val.jsonl"), args.samples, args.f_uni))
    torch.set_num_threads(default_threads)
    all_threads = measure(jobs, settings, processor)
    figures["all_threads"] = {"threads": default_threads, **all_threads}
    figures["processor"] = f"{type(processor).__name__} ({getattr(processor, 'backend', '?')})"
    print(
        f"training dataset (1 thread): {figures['dataset_samples_per_s']:.1f} samples/s, "
        f"set-up {figures['dataset_setup_s']:.2f} s"
    )
    for label, f in (("1 thread", figures), (f"{default_threads} threads", all_threads)):
        print(
            f"{label}: ours {f['ours_ms']:.1f} ms/sample (render {f['ours_render_only_ms']:.1f}), "
            f"floor {f['floor_ms']:.1f} (with depthlm's resampler {f['floor_same_resampler_ms']:.1f}), "
            f"reference {f['reference_ms']:.1f}, ours/floor {f['prep_over_floor_ratio']:.2f}"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
