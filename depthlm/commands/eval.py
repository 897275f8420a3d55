"""``depthlm eval --model M --data D1 [D2 ...] --out DIR``: score a model, resumably.

Examples::

    depthlm eval --model runs/sft --data ibims1=data/ibims1 nyuv2=data/nyuv2 --out results/sft
    depthlm eval --model constant:2.0 --data data/ibims1 --out results/constant
    depthlm eval --model median:data/train.jsonl --data data/ibims1 --out results/median
    depthlm eval --backend openai --model qwen --base-url http://127.0.0.1:8000/v1 --preset reference ...
    depthlm eval --config eval/quick.yaml --model runs/sft --out results/sft
"""

from __future__ import annotations

import argparse
from pathlib import Path

from depthlm.errors import DepthLMError
from depthlm.settings import PRESETS, resolve_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="model folder or hub id; served name (openai); constant:2.0 or median:TRAIN_DATA",
    )
    p.add_argument("--data", nargs="+", help="record sets: PATH or NAME=PATH (jsonl file or folder)")
    p.add_argument("--config", help="leaderboard configuration YAML (eval/*.yaml): data, points, max queries")
    p.add_argument("--out", required=True, help="run folder; rerunning with the same folder resumes")
    p.add_argument(
        "--backend", choices=["vllm", "transformers", "openai"], help="default: vllm (baselines need none)"
    )
    p.add_argument("--points-per-image", type=int, help="labelled points asked per image (default 1)")
    p.add_argument(
        "--max-queries", type=int, help="at most this many queries per dataset (every image first)"
    )
    p.add_argument("--seed", type=int, help="query selection seed (default 0)")
    p.add_argument(
        "--preset", choices=sorted(PRESETS), help="render settings when the model folder records none"
    )
    p.add_argument(
        "--render-settings", help="take render settings from this model folder (e.g. for --backend openai)"
    )
    p.add_argument("--f-uni", type=float, help="override the unified focal length (ablations; printed)")
    p.add_argument("--template", help="override the prompt template (ablations; printed)")
    p.add_argument("--max-pixels", type=int, help="override the pixel budget")
    p.add_argument(
        "--max-tokens", type=int, help="new tokens per answer (default: the template's answer + 8)"
    )
    p.add_argument(
        "--structured", action="store_true", help="constrain answers to the template's regex (vllm/openai)"
    )
    p.add_argument(
        "--dtype", default="auto", help="model dtype for vllm/transformers (auto, float32, bfloat16)"
    )
    p.add_argument("--batch-size", type=int, default=3, help="transformers backend batch size (reference: 3)")
    p.add_argument(
        "--chunk-size", type=int, help="queries per generate call and per resumable step (default 48)"
    )
    p.add_argument("--base-url", help="openai backend: server URL (default OPENAI_BASE_URL)")
    p.add_argument("--concurrency", type=int, default=8, help="openai backend: requests in flight")
    p.add_argument("--no-plots", action="store_true")


def run(args: argparse.Namespace) -> int:
    from depthlm.evaluation import evaluate, load_config, load_datasets
    from depthlm.inference import make_backend, split_model_spec

    cfg = load_config(args.config) if args.config else {}
    data = list(args.data or []) or cfg.get("data")
    if not data:
        raise DepthLMError("give record sets with --data or a --config")
    points = args.points_per_image or cfg.get("points_per_image") or 1
    max_queries = args.max_queries if args.max_queries is not None else cfg.get("max_queries")
    seed = args.seed if args.seed is not None else int(cfg.get("seed", 0))

    kind, _ = split_model_spec(args.model, args.backend)
    settings_from = args.render_settings or (args.model if kind in ("vllm", "transformers") else None)
    overrides = {"f_uni": args.f_uni, "template": args.template, "max_pixels": args.max_pixels}
    settings = resolve_settings(settings_from, args.preset, **overrides)
    changed = {k: v for k, v in overrides.items() if v is not None}
    if changed:
        print(f"render settings overridden: {changed}")
    datasets = load_datasets(data)
    for ds in datasets:
        extra = f", {len(ds.rejects)} rejected (listed in metrics.json)" if ds.rejects else ""
        print(f"{ds.name}: {len(ds.records)} images from {ds.path}{extra}")

    opts: dict = {}
    if kind in ("vllm", "transformers"):
        opts["dtype"] = args.dtype
    if kind == "transformers":
        opts["batch_size"] = args.batch_size
    if kind == "openai":
        opts.update(base_url=args.base_url, concurrency=args.concurrency)
    backend = make_backend(kind, args.model, settings, **opts)
    chunk = args.chunk_size or (args.batch_size * 16 if kind == "transformers" else 48)
    try:
        metrics = evaluate(
            backend,
            datasets,
            args.out,
            points_per_image=points,
            max_queries=max_queries,
            seed=seed,
            max_tokens=args.max_tokens,
            structured=args.structured,
            chunk_size=chunk,
            plots=not args.no_plots,
        )
    finally:
        backend.close()
    print((Path(args.out) / "row.md").read_text(), end="")
    avg = metrics["average"]
    print(
        f"delta1 {avg['delta1']:.3f} over {avg['n']} queries, parse failures {avg['parse_failure_rate']:.1%}; wrote {args.out}"
    )
    return 0
