"""Cost of a dense map: a 32x24 grid (768 labelled points) on one image, asked through the
tiny Qwen2.5-VL on vLLM one point per query (the depth task, what eval asks) and K = 4, 8, 16
points per query (the points task). Per labelled point: seconds (render, generate, whole
run), visual tokens (exact: the views sit on the processor's 28-px grid, one token per cell)
and generated tokens.

    DEPTHLM_IBIMS1=/work/shared/data/ibims1 .venv/bin/python benchmarks/dense_cost.py
    .venv/bin/python benchmarks/dense_cost.py --grid 16x12          # synthetic scene, quicker
    .venv/bin/python benchmarks/dense_cost.py --memorize-steps 300   # + the memorised-model delta1 check

``--memorize-steps`` trains a fresh tiny model with the SFT recipe on exactly the dense queries of
one synthetic scene (an 8x6 grid, one point per query and 16 per query) and compares the delta1
of its answers both ways: whether K points per query cost accuracy once a model knows the answers.

A random tiny model never says "stop", so it generates up to the token cap of every query:
``generated_tokens_per_point`` is that measured count; ``answer_tokens_per_point`` is what a
trained model emits (the target answer's tokens: "The point is around 2.31 meters away from
the camera." vs "A: 2.31 m" per line). Seconds are for this machine's CPU with a 1M-parameter
model, where the vision encoder is nearly free; see docs/dense.md for what changes on a GPU
with a 3B model. The last stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KS = (1, 4, 8, 16)


def photo(data: str | None):
    """(image, intrinsics, where from): the first iBims-1 record, else a synthetic 640x480 scene."""
    from depthlm.render import load_image

    if data:
        from depthlm.records import read_records

        rec = read_records(data)[0]
        return load_image(rec.image), rec.intrinsics, f"{data}: {Path(rec.image).name}"
    from data_builders.scenes import render_scene

    scene = render_scene(0, size=(640, 480), focal_range=(450.0, 650.0))
    return scene.image, scene.intrinsics, "synthetic scene 0, 640x480"


def answer_tokens(tokenizer, settings, k: int) -> int:
    from depthlm.prompts import get_template
    from depthlm.tasks.base import letters

    text = (
        get_template(settings.template).format_answer(2.31)
        if k == 1
        else "\n".join(f"{label}: 2.31 m" for label in letters(k))
    )
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # + the end-of-turn token


def memorize(folder: Path, steps: int, grid: tuple[int, int], k: int = 16, repeat_k: int = 8) -> dict:
    """Train a fresh tiny Qwen2.5-VL with the SFT recipe (recipes/configs/tiny_cpu.yaml: f_uni 150,
    24 visual tokens) on exactly the dense queries of one synthetic 256x192 scene, one point
    per query and K per query (each K query repeated `repeat_k` times: there are K times fewer),
    then ask both ways through vLLM and score each pixel's answer against the scene's exact ray
    distance. Returns delta1 / AbsRel / parse failures per K."""
    import numpy as np
    from datasets import Dataset

    from data_builders.scenes import render_scene
    from depthlm.dense import DenseOptions, run_dense
    from depthlm.dense.sampling import grid_points
    from depthlm.dense.strategy import build_prompts, group_points
    from depthlm.geometry import ray_scale
    from depthlm.inference import make_backend
    from depthlm.metrics import depth_metrics
    from depthlm.prompts import get_template
    from depthlm.recipes import sft
    from depthlm.records import Record
    from depthlm.tiny import build_tiny_model

    folder.mkdir(parents=True, exist_ok=True)
    scene = render_scene(0, size=(256, 192), focal_range=(250.0, 300.0))
    scene.image.save(folder / "photo.png")
    pts = grid_points(scene.image.size, grid)
    z = scene.depth[pts[:, 1].astype(int), pts[:, 0].astype(int)]
    ray = z * ray_scale(pts, scene.intrinsics)
    record = Record(str(folder / "photo.png"), scene.intrinsics, pts, z, "z")
    (folder / "records.jsonl").write_text(
        json.dumps(record.to_json()) + "\n"
    )  # the recipe wants a record set
    model = build_tiny_model("qwen2_5_vl", folder / "tiny", size="tiny")
    argv = ["--config", str(REPO / "recipes/configs/tiny_cpu.yaml"), "--model_name_or_path", str(model)]
    argv += ["--record_sets", str(folder / "records.jsonl"), "--output_dir", str(folder / "sft")]
    argv += [
        "--max_steps",
        str(steps),
        "--report_to",
        "none",
        "--save_steps",
        "100000",
        "--train_crop",
        "false",
    ]
    trainer = sft.build_trainer(*sft.make_parser().parse_args_and_config(argv))
    settings = trainer.render_settings
    template = get_template(settings.template)
    examples = []
    for kk, repeat in ((1, 1), (k, repeat_k)):
        groups = group_points(pts, kk, scene.intrinsics, settings)
        for g, p in zip(groups, build_prompts(scene.image, scene.intrinsics, pts, groups, settings, kk)):
            answer = (
                template.format_answer(ray[g[0]])
                if kk == 1
                else "\n".join(f"{label}: {ray[i]:.2f} m" for label, i in zip(p.labels, g))
            )
            msgs = [*p.messages(), {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
            examples += [{"images": [p.image], "messages": msgs}] * repeat
    rows = Dataset.from_dict({"slot": np.arange(len(examples), dtype=np.int64)})
    rows.set_transform(
        lambda batch: {
            "images": [examples[int(i)]["images"] for i in batch["slot"]],
            "messages": [examples[int(i)]["messages"] for i in batch["slot"]],
        }
    )
    trainer.train_dataset = rows  # the recipe's trainer, on exactly these queries
    start = time.perf_counter()
    sft.train(trainer)
    out: dict = {
        "steps": steps,
        "train_seconds": round(time.perf_counter() - start, 1),
        "examples": len(examples),
    }
    backend = make_backend("vllm", str(folder / "sft"), settings, dtype="float32")
    truth = {tuple(p): r for p, r in zip(pts.tolist(), ray)}
    try:
        for kk in (1, k):
            r = run_dense(
                backend,
                scene.image,
                scene.intrinsics,
                settings,
                DenseOptions(grid=grid, k=kk),
                progress=False,
            )
            m = depth_metrics([s["metres"] for s in r.samples], [truth[tuple(s["pixel"])] for s in r.samples])
            out[str(kk)] = {key: round(m[key], 4) for key in ("delta1", "abs_rel", "parse_failure_rate")}
            out[str(kk)]["queries"] = r.stats["queries"]
    finally:
        backend.close()
    out["delta1_gap_k16"] = round(out[str(k)]["delta1"] - out["1"]["delta1"], 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=os.environ.get("DEPTHLM_IBIMS1"), help="records (default: iBims-1 sample)"
    )
    parser.add_argument("--model", help="model folder (default: a fresh random tiny Qwen2.5-VL)")
    parser.add_argument("--grid", default="32x24")
    parser.add_argument("--ks", type=int, nargs="+", default=list(KS))
    parser.add_argument(
        "--memorize-steps",
        type=int,
        default=0,
        help="also train a tiny model on one scene's dense queries (K = 1 and 16) for this many SFT "
        "steps and compare their delta1 (0: skip; 300 takes minutes)",
    )
    parser.add_argument("--memorize-grid", default="8x6", help="grid of the memorisation scene")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

    from depthlm.dense import DenseOptions, run_dense
    from depthlm.dense.sampling import parse_grid
    from depthlm.dense.strategy import max_tokens_for
    from depthlm.inference import default_max_tokens, make_backend
    from depthlm.settings import resolve_settings
    from depthlm.tiny import build_tiny_model

    grid = parse_grid(args.grid)
    image, intrinsics, source = photo(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_tiny_model("qwen2_5_vl", Path(tmp) / "tiny", size="tiny"))
        settings = resolve_settings(model)
        t = time.perf_counter()
        backend = make_backend("vllm", model, settings, dtype="float32")
        start_s = time.perf_counter() - t
        try:
            run_dense(
                backend, image, intrinsics, settings, DenseOptions(grid=(2, 2)), progress=False
            )  # warm-up
            result: dict = {
                "data": source,
                "image_size": list(image.size),
                "grid": list(grid),
                "f_uni": settings.f_uni,
                "max_pixels": settings.max_pixels,
                "engine_start_s": round(start_s, 1),
                "threads": os.cpu_count(),
            }
            per_k = {}
            for k in args.ks:
                opts = DenseOptions(grid=grid, k=k, chunk_size=256)  # memory: one chunk of views
                t = time.perf_counter()
                r = run_dense(backend, image, intrinsics, settings, opts, progress=False)
                wall = time.perf_counter() - t
                n = r.stats["points"]
                per_k[k] = {
                    "queries": r.stats["queries"],
                    "points": n,
                    "points_per_query": round(r.stats["points_per_query"], 2),
                    "seconds": round(wall, 2),
                    "seconds_per_point": round(wall / n, 5),
                    "render_s": round(r.timing["render"], 2),
                    "generate_s": round(r.timing["generate"], 2),
                    "interpolate_s": round(r.timing["interpolate"], 2),
                    "visual_tokens_per_point": round(r.stats["visual_tokens"] / n, 1),
                    "generated_tokens_per_point": round(r.stats["generated_tokens"] / n, 2),
                    "answer_tokens_per_point": round(answer_tokens(backend.tokenizer, settings, k) / k, 2),
                    "max_tokens_per_query": max_tokens_for(backend, k)
                    or default_max_tokens(settings, backend.tokenizer),
                }
                row = per_k[k]
                print(
                    f"K={k:2d}: {row['queries']:4d} queries, {row['seconds']:7.2f} s "
                    f"(render {row['render_s']:.2f}, generate {row['generate_s']:.2f}), "
                    f"{row['seconds_per_point'] * 1000:7.2f} ms/point, "
                    f"{row['visual_tokens_per_point']:7.1f} visual tokens/point, "
                    f"{row['generated_tokens_per_point']:5.2f} generated (answer {row['answer_tokens_per_point']:.2f}) tokens/point",
                    flush=True,
                )
        finally:
            backend.close()
    result["per_k"] = {str(k): v for k, v in per_k.items()}
    result["visual_tokens_per_point"] = {str(k): v["visual_tokens_per_point"] for k, v in per_k.items()}
    result["seconds_per_point"] = {str(k): v["seconds_per_point"] for k, v in per_k.items()}
    result["generated_tokens_per_point"] = {str(k): v["generated_tokens_per_point"] for k, v in per_k.items()}
    if 1 in per_k and 16 in per_k:
        result["visual_tokens_per_point_ratio_k16"] = round(
            per_k[16]["visual_tokens_per_point"] / per_k[1]["visual_tokens_per_point"], 4
        )
        result["seconds_per_point_ratio_k16"] = round(
            per_k[16]["seconds_per_point"] / per_k[1]["seconds_per_point"], 4
        )
    if args.memorize_steps:
        with tempfile.TemporaryDirectory() as tmp:
            mem = memorize(Path(tmp), args.memorize_steps, parse_grid(args.memorize_grid))
        result["memorized"] = mem
        print(
            f"memorised tiny model ({mem['steps']} steps, {mem['train_seconds']} s): delta1 K=1 {mem['1']['delta1']:.3f}, "
            f"K=16 {mem['16']['delta1']:.3f} (gap {mem['delta1_gap_k16']:+.3f})"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
