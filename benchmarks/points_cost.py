"""Visual-token cost of the ``points`` task: tokens per labelled point for K = 1, 4, 16.

One ``points`` query shares one image among K labelled points, so the image's tokens are paid
once for K answers; this is the lever for dense maps. For each K, every record of the set
gets one ``points`` query (evaluation view, default render settings: f_uni 1000, 28-px grid,
1280-token budget), run through the tiny Qwen2.5-VL's processor (the stock Qwen2.5-VL image
processor: 14-px patches merged 2x2, so image tokens are exact; its byte-level tokenizer is
trained on little text, so text token counts are only indicative), and the script reports
image tokens, whole-sample tokens (chat template, question, image and answer) and both per
labelled point. K single-point ``depth`` queries are the baseline.

    DEPTHLM_IBIMS1=/work/shared/data/ibims1 .venv/bin/python benchmarks/points_cost.py
    .venv/bin/python benchmarks/points_cost.py --records 20    # synthetic scenes when no iBims-1

The last stdout line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from depthlm import tasks  # noqa: E402
from depthlm.models import load_processor  # noqa: E402
from depthlm.records import Record, read_records  # noqa: E402
from depthlm.settings import RenderSettings  # noqa: E402
from depthlm.tasks.points import PointsTask  # noqa: E402
from depthlm.tiny import build_tiny_model  # noqa: E402

KS = (1, 4, 16)


def synthetic_records(n: int, folder: Path) -> list[Record]:
    """n synthetic 640x480 scenes with 400 labelled points each (z-depth)."""
    from PIL import Image  # noqa: F401  (images are saved through the Scene's PIL image)

    from data_builders.scenes import render_scene

    out = []
    for seed in range(n):
        scene = render_scene(seed, size=(640, 480), focal_range=(450.0, 650.0))
        path = folder / f"{seed}.png"
        scene.image.save(path)
        ys, xs = np.nonzero(scene.depth > 0)
        pick = np.random.default_rng(seed).choice(len(xs), 400, replace=False)
        out.append(
            Record(
                str(path),
                scene.intrinsics,
                np.stack([xs[pick], ys[pick]], 1),
                scene.depth[ys[pick], xs[pick]],
                "z",
            )
        )
    return out


def count(processor, query: tasks.TaskQuery) -> tuple[int, int, int]:
    """(image tokens, whole-sample tokens, answer tokens) of one query as the model is trained on it."""
    text = processor.apply_chat_template(query.messages(with_answer=True), tokenize=False)
    batch = processor(text=[text], images=query.images, return_tensors="np")
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    ids = batch["input_ids"][0]
    answer = len(processor.tokenizer(query.answer, add_special_tokens=False)["input_ids"])
    return int((ids == pad).sum()), int(len(ids)), answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=os.environ.get("DEPTHLM_IBIMS1"), help="records (default: iBims-1 sample)"
    )
    parser.add_argument("--records", type=int, default=20, help="records used (first N)")
    args = parser.parse_args()
    settings = RenderSettings()
    with tempfile.TemporaryDirectory() as tmp:
        processor = load_processor(build_tiny_model("qwen2_5_vl", Path(tmp) / "tiny", size="tiny"))
        if args.data:
            records, source = read_records(args.data)[: args.records], str(args.data)
        else:
            records, source = synthetic_records(args.records, Path(tmp)), "synthetic 640x480"
        result: dict = {"data": source, "records": len(records), "f_uni": settings.f_uni}
        depth = [
            count(processor, tasks.get("depth").query(r, settings, np.random.default_rng(i)))
            for i, r in enumerate(records)
        ]
        one_image, one_total = (float(np.mean([c[i] for c in depth])) for i in (0, 1))
        for k in KS:
            task = PointsTask(k=k)
            counts, skipped = [], 0
            for i, record in enumerate(records):
                try:
                    counts.append(count(processor, task.query(record, settings, np.random.default_rng(i))))
                except tasks.TaskError:
                    skipped += 1
            image, total, answer = (float(np.mean([c[i] for c in counts])) for i in range(3))
            result[f"K{k}"] = {
                "queries": len(counts),
                "skipped": skipped,
                "image_tokens": round(image, 1),
                "sample_tokens": round(total, 1),
                "answer_tokens": round(answer, 1),
                "image_tokens_per_point": round(image / k, 1),
                "sample_tokens_per_point": round(total / k, 1),
                "k_depth_queries_tokens_per_point": round(one_total, 1),
                "saving_vs_depth_queries": round(one_total * k / total, 2),
            }
            print(
                f"K={k:2d}: {image:7.1f} image tokens, {total:7.1f} tokens per sample -> "
                f"{image / k:6.1f} image / {total / k:6.1f} total tokens per point "
                f"(K depth queries: {one_total:.1f} per point; {len(counts)} queries, {skipped} skipped)"
            )
        result["depth_query"] = {"image_tokens": round(one_image, 1), "sample_tokens": round(one_total, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
