"""Evaluation cost: vLLM vs the reference's transformers loop, answer tokens per template,
visual tokens per iBims-1 image.

    .venv/bin/python benchmarks/eval_speed.py                      # everything: ~5 min on 2 quiet CPU cores
    .venv/bin/python benchmarks/eval_speed.py --templates plain --train-steps 100 --queries 60
    .venv/bin/python benchmarks/eval_speed.py --skip-trained       # random model + visual tokens: ~1.5 min

1. Speed and agreement. The same rendered queries (synthetic 320x240 scenes, 3 points per
   image chosen as ``depthlm eval`` chooses them, rendered with the tiny CPU recipe's settings)
   go through depthlm's ``vllm`` backend (one batched call) and its ``transformers`` backend run
   the way the DepthLM reference evaluates (HF ``generate``, batch 3, greedy), both float32,
   ``--max-tokens`` new tokens. Start-up is excluded: both backends stay loaded and first answer
   a warm-up workload; then ``--passes`` workloads of fresh scenes (vLLM caches repeated images,
   a real evaluation never repeats one) are timed on each backend in turn; the median counts.
   Agreement is the fraction of identical raw answer texts over all passes. Done on a random
   tiny Qwen2.5-VL and on the same model after a short SFT run (recipes/sft.py with
   recipes/configs/tiny_cpu.yaml). On a CPU, vLLM's worker binds one OpenMP thread to one core
   and leaves the other to the engine; transformers uses torch's default (all cores).
2. Answer tokens per template. One tiny model trained per template (same recipe, --template),
   answering the workload with the template's default token limit, free and with structured
   (regex) decoding: mean generated tokens per query (``<|im_end|>`` included), next to the
   token count of the template's target answers under the same tokenizer.
3. Visual tokens per query on the real iBims-1 sample at the "default" and "reference" presets
   (evaluation views and training crops), counted by transformers' Qwen2.5-VL image processor
   (``image_grid_thw``; patch 14, merge 2 as in the real models) and by the render path's own
   prediction (``depthlm.models.visual_tokens``); next to the reference
   pipeline (train at f 1000, centre crop; evaluate at f 750) computed the same way.

The tokenizer is the tiny model's 512-entry byte-level BPE (digits one per token, as Qwen's);
real Qwen tokenizers may differ by a token or two per answer. The last stdout line is one
JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = ("reference", "plain", "number")


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------- inputs


def recipe_settings(template: str = "plain"):
    """The rendering settings the tiny CPU recipe trains with (the recipe's own parse of its YAML)."""
    import tempfile

    from depthlm.demo import recipe_arguments, tiny_config
    from depthlm.training.config import render_settings

    with tempfile.TemporaryDirectory() as folder:
        script_args, _, _ = recipe_arguments(["--config", str(tiny_config(folder)), "--template", template])
    return render_settings(script_args)


def build_synthetic(out: Path, split: str, images: int, points: int, scene_seed: int = 0) -> Path:
    from data_builders.framework import build

    if not (out / "summary.json").is_file():
        build(
            "synthetic", out=out, split=split, num_images=images, points_per_image=points,
            scene_seed=scene_seed, progress=False,
        )  # fmt: skip
    return out


def workload(data: Path, settings, queries: int | None = None) -> list:
    """Queries as ``depthlm eval`` plans and renders them (3 points per image, one per depth stratum)."""
    from depthlm.evaluation import load_datasets, plan_queries
    from depthlm.render import render_record

    ds = load_datasets([f"synthetic={data}"])[0]
    plan = plan_queries([ds], 3, queries, 0)
    return [render_record(ds.records[it.record], it.point, settings) for it in plan]


def train(model: Path, records: Path, out: Path, template: str, steps: int) -> tuple[Path, float | None]:
    """A short SFT run of the tiny CPU recipe, launched as the demo launches it, with the YAML's own
    crops and epoch size; returns (model folder, wall time; None: reused from --work-dir)."""
    from depthlm.demo import DemoConfig, trained
    from depthlm.demo import train as run_recipe

    cfg = DemoConfig(
        out=str(out),
        template=template,
        max_steps=steps,
        train_images=512,  # samples_per_epoch, as tiny_cpu.yaml
        train_crop=True,
        extra_train_args=["--save_strategy", "no", "--log_samples", "0"],
    )
    if trained(cfg.folder / "sft"):
        return cfg.folder / "sft", None
    return run_recipe(cfg, model, records, echo=False)


# ---------------------------------------------------------------------------- measurements


def timed(backend, queries: list, max_tokens: int | None, structured: bool = False):
    start = time.perf_counter()
    texts = backend.generate(queries, max_tokens=max_tokens, structured=structured)
    return texts, time.perf_counter() - start, list(backend.last_token_counts)


def speed(
    model: Path,
    settings,
    warmup: list,
    passes: list[list],
    max_tokens: int,
    batch_size: int,
    tokens: bool = False,
) -> dict:
    """vLLM (batched) vs transformers (batch `batch_size`) on one model: q/s, tokens, agreement.

    Both backends stay loaded; after one warm-up pass each, every workload in `passes` is timed
    on transformers then on vLLM (interleaved, so a load spike from elsewhere hits both alike).
    Each workload holds images neither backend has seen (vLLM caches repeated images and prefixes,
    which a real evaluation never repeats). With `tokens`, the engine also measures answer tokens."""
    from depthlm.inference import make_backend
    from depthlm.parsing import parse_distance

    hf = make_backend("transformers", str(model), settings, dtype="float32", batch_size=batch_size)
    engine = make_backend("vllm", str(model), settings, dtype="float32")
    try:
        hf.generate(warmup, max_tokens=max_tokens)
        engine.generate(warmup, max_tokens=max_tokens)
        hf_s, v_s, hf_texts, v_texts, hf_tokens, v_tokens = [], [], [], [], [], []
        for queries in passes:
            texts, sec, counts = timed(hf, queries, max_tokens)
            hf_texts += texts
            hf_s.append(sec)
            hf_tokens += counts
            texts, sec, counts = timed(engine, queries, max_tokens)
            v_texts += texts
            v_s.append(sec)
            v_tokens += counts
        answers = answer_tokens(engine, passes[0]) if tokens else None
    finally:
        engine.close()
        hf.close()
    n = len(passes[0])
    v_qps, hf_qps = sorted(n / t for t in v_s), sorted(n / t for t in hf_s)
    same = sum(a == b for a, b in zip(v_texts, hf_texts))
    return {
        "queries_per_pass": n,
        "passes": len(passes),
        "max_tokens": max_tokens,
        "vllm_qps": round(float(np.median(v_qps)), 1),
        "hf_qps": round(float(np.median(hf_qps)), 1),
        "speedup": round(float(np.median([h / v for h, v in zip(hf_s, v_s)])), 2),
        "vllm_qps_all": [round(x, 1) for x in v_qps],
        "hf_qps_all": [round(x, 1) for x in hf_qps],
        "vllm_mean_new_tokens": round(float(np.mean(v_tokens)), 2),
        "hf_mean_new_tokens": round(float(np.mean(hf_tokens)), 2),
        "compared": len(v_texts),
        "identical_fraction": round(same / len(v_texts), 3),
        "distinct_answers": len(set(v_texts)),  # a model that says one thing agrees trivially
        "vllm_parsed_fraction": round(sum(parse_distance(t) is not None for t in v_texts) / len(v_texts), 3),
        "examples": [{"vllm": a, "hf": b} for a, b in list(zip(v_texts, hf_texts))[:2]],
        **({"answer_tokens": answers} if answers else {}),
    }


def answer_tokens(engine, queries: list) -> dict:
    """Generated tokens per query with the template's default limit, free and structured,
    and the token count of the target answers (same tokenizer)."""
    from depthlm.parsing import parse_distance

    out = {}
    for structured in (False, True):
        texts, _, counts = timed(engine, queries, None, structured)
        key = "structured" if structured else "free"
        out[f"{key}_mean_tokens"] = round(float(np.mean(counts)), 2)
        out[f"{key}_parsed_fraction"] = round(
            sum(parse_distance(t) is not None for t in texts) / len(texts), 3
        )
        out[f"{key}_example"] = texts[0]
    tok = engine.tokenizer
    targets = [len(tok(q.answer + "<|im_end|>", add_special_tokens=False)["input_ids"]) for q in queries]
    out["target_mean_tokens"] = round(float(np.mean(targets)), 2)
    return out


def template_tokens(model: Path, settings, queries: list) -> dict:
    from depthlm.inference import make_backend

    engine = make_backend("vllm", str(model), settings, dtype="float32")
    try:
        return answer_tokens(engine, queries)
    finally:
        engine.close()


def visual_tokens_ibims(data: str, model: Path, train_samples: int) -> dict:
    """Visual tokens per iBims-1 query, ours (presets) and the reference pipeline's, by the processor."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from depthlm.models import load_processor, visual_tokens
    from depthlm.records import read_records
    from depthlm.render import render_record
    from depthlm.settings import PRESETS

    records = read_records(data)
    out: dict = {"images": len(records)}
    for name in ("default", "reference"):
        s = PRESETS[name]
        proc = load_processor(model, min_pixels=s.min_pixels, max_pixels=s.max_pixels)
        merge = proc.image_processor.merge_size**2
        counted, predicted = [], []
        for rec in records:
            view = render_record(rec, 0, s).image
            thw = proc.image_processor(images=[view], return_tensors="np")["image_grid_thw"][0]
            counted.append(int(np.prod(thw)) // merge)
            predicted.append(visual_tokens(proc, *view.size))
        rng = np.random.default_rng(0)
        train = []
        for i in range(train_samples):
            rec = records[i % len(records)]
            view = render_record(rec, int(rng.integers(len(rec))), s, rng=np.random.default_rng([0, i])).image
            train.append(visual_tokens(proc, *view.size))
        out[name] = {
            "f_uni": s.f_uni,
            "max_pixels": s.max_pixels,
            "eval_mean": round(float(np.mean(counted)), 1),
            "eval_range": [min(counted), max(counted)],
            "eval_predicted_equals_processor": predicted == counted,
            "train_mean": round(float(np.mean(train)), 1),
        }
    # The reference pipeline: resize by f/fx to int(W*s) x int(H*s); training centre-crops
    # U(1000,1400) x U(700,1200) px (capped by the image); the processor then rounds to 28 px.
    # Its processor budget is Qwen2.5-VL's default (3136 .. 12845056 px), which never binds here.
    rng = np.random.default_rng(0)

    def tokens(w: int, h: int) -> int:
        nh, nw = smart_resize(h, w, factor=28, min_pixels=3136, max_pixels=12845056)
        return (nh // 28) * (nw // 28)

    ref_eval, ref_train = [], []
    for rec in records:
        for f, bucket in ((750.0, ref_eval), (1000.0, ref_train)):
            k = f / rec.intrinsics.fx
            w, h = int(rec.intrinsics.width * k), int(rec.intrinsics.height * k)
            if bucket is ref_train:
                w, h = min(w, int(rng.uniform(1000, 1400))), min(h, int(rng.uniform(700, 1200)))
            bucket.append(tokens(w, h))
    out["reference_pipeline"] = {
        "eval_f": 750.0,
        "eval_mean": round(float(np.mean(ref_eval)), 1),
        "train_f": 1000.0,
        "train_mean": round(float(np.mean(ref_train)), 1),
    }
    return out


# ---------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=int, default=150, help="workload size (3 points per image)")
    p.add_argument("--max-tokens", type=int, default=24, help="new tokens per query in the speed test")
    p.add_argument("--passes", type=int, default=3, help="timed workloads (fresh scenes each); median")
    p.add_argument("--batch-size", type=int, default=3, help="transformers batch (the reference: 3)")
    p.add_argument("--train-steps", type=int, default=200, help="SFT steps per trained model (batch 16)")
    p.add_argument("--train-images", type=int, default=256, help="synthetic training scenes (8 points each)")
    p.add_argument("--templates", default=",".join(TEMPLATES), help="templates to train and count tokens for")
    p.add_argument("--skip-trained", action="store_true", help="random model only (no training)")
    p.add_argument(
        "--ibims", default=os.environ.get("DEPTHLM_IBIMS1", str(REPO.parent / "shared/data/ibims1"))
    )
    p.add_argument("--train-views", type=int, default=300, help="training crops sampled for visual tokens")
    p.add_argument(
        "--work-dir", help="keep models and data here (reused when rerun; default: a temporary folder)"
    )
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # vLLM logs to stdout: keep it to the figures
    templates = [t for t in args.templates.split(",") if t]
    t0 = time.perf_counter()

    from depthlm.tiny import build_tiny_model

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="depthlm-eval-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    random_model = work / "tiny-random"
    if not (random_model / "config.json").is_file():
        build_tiny_model("qwen2_5_vl", random_model, size="tiny")
    images = -(-args.queries // 3)
    # Set 0 warms up; sets 1..passes are timed. Disjoint scenes (scene seeds), same kind of views.
    sets = [build_synthetic(work / f"val{k}", "val", images, 3, k) for k in range(args.passes + 1)]
    figures: dict = {"cpu_threads": os.cpu_count(), "load_average_start": round(os.getloadavg()[0], 2)}
    base = recipe_settings("plain")

    log(f"== speed: {args.queries} queries, {args.max_tokens} new tokens, f_uni {base.f_uni:g}, "
        f"pixel budget {base.min_pixels}..{base.max_pixels}")  # fmt: skip
    warmup, *passes = [workload(d, base, args.queries) for d in sets]
    queries = passes[0]
    from depthlm.models import load_processor, visual_tokens

    proc = load_processor(random_model, min_pixels=base.min_pixels, max_pixels=base.max_pixels)
    figures["workload"] = {
        "queries": len(queries),
        "source_size": [320, 240],
        "f_uni": base.f_uni,
        "mean_visual_tokens": round(float(np.mean([visual_tokens(proc, *q.image.size) for q in queries])), 1),
        "distinct_view_sizes": len({q.image.size for q in queries}),
    }
    figures["speed_random"] = r = speed(random_model, base, warmup, passes, args.max_tokens, args.batch_size)
    log(f"random tiny model: vLLM {r['vllm_qps']} q/s, HF batch {args.batch_size} {r['hf_qps']} q/s "
        f"({r['speedup']}x), identical outputs {r['identical_fraction']:.0%} "
        f"({r['distinct_answers']} distinct answers)")  # fmt: skip

    if not args.skip_trained:
        train_data = build_synthetic(work / "train", "train", args.train_images, 8)
        trained: dict[str, Path] = {}
        figures["train_seconds"] = {}
        for template in dict.fromkeys(["plain", *templates]):
            trained[template], sec = train(
                random_model, train_data, work / f"tiny-sft-{template}", template, args.train_steps
            )
            figures["train_seconds"][template] = None if sec is None else round(sec, 1)
            took = "reused" if sec is None else f"{args.train_steps} steps in {sec:.0f} s"
            log(f"trained {template}: {took} -> {trained[template]}")
        figures["speed_trained"] = r = speed(
            trained["plain"], base, warmup, passes, args.max_tokens, args.batch_size, tokens=True
        )
        log(f"trained tiny model: vLLM {r['vllm_qps']} q/s, HF batch {args.batch_size} {r['hf_qps']} q/s "
            f"({r['speedup']}x), identical outputs {r['identical_fraction']:.0%} "
        f"({r['distinct_answers']} distinct answers)")  # fmt: skip

        log("== answer tokens per template (trained models, vLLM, default token limit)")
        figures["answer_tokens"] = {}
        for template in templates:
            if template == "plain":
                t = r.pop("answer_tokens")
            else:
                s = recipe_settings(template)
                t = template_tokens(trained[template], s, workload(sets[1], s, args.queries))
            figures["answer_tokens"][template] = t
            log(f"{template}: free {t['free_mean_tokens']} tokens/query (parsed {t['free_parsed_fraction']:.0%}), "
                f"structured {t['structured_mean_tokens']}, target {t['target_mean_tokens']}")  # fmt: skip
        if "reference" in templates:
            ref = figures["answer_tokens"]["reference"]["free_mean_tokens"]
            figures["tokens_vs_reference"] = {
                t: round(ref / v["free_mean_tokens"], 2) for t, v in figures["answer_tokens"].items()
            }

    ibims = Path(args.ibims) / "ibims1_val.jsonl"
    if ibims.is_file():
        log("== visual tokens per iBims-1 query")
        figures["visual_tokens_ibims"] = v = visual_tokens_ibims(str(ibims), random_model, args.train_views)
        for name in ("default", "reference"):
            log(f"preset {name}: eval {v[name]['eval_mean']} (range {v[name]['eval_range']}), "
                f"train crops {v[name]['train_mean']}")  # fmt: skip
        rp = v["reference_pipeline"]
        log(f"reference pipeline: eval at f 750 {rp['eval_mean']}, train at f 1000 {rp['train_mean']}")
    else:
        log(f"no iBims-1 sample at {args.ibims}: visual tokens skipped")
    figures["load_average_end"] = round(os.getloadavg()[0], 2)
    figures["seconds_total"] = round(time.perf_counter() - t0, 1)
    figures["work_dir"] = str(work) if args.work_dir else None
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
