"""Run one model over leaderboard configurations, then tabulate.

    python eval/run.py --model runs/sft --out results/sft                      # every eval/*.yaml
    python eval/run.py --model runs/sft --out results/sft --configs eval/ibims1.yaml
    python eval/run.py --model constant:2.0 --out results/constant --skip-missing
    python eval/run.py --model qwen --backend openai --base-url http://127.0.0.1:8000/v1 \
        --preset reference --out results/qwen-api

The model is loaded once (one vLLM engine) for all configurations. Each configuration
writes its own resumable run folder OUT/<config name>/ (rerun the same command after an
interruption), and OUT/leaderboard.md + .html compare them with the paper's quoted rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depthlm.errors import DepthLMError
from depthlm.evaluation import evaluate, load_config, load_datasets
from depthlm.inference import make_backend, split_model_spec
from depthlm.leaderboard import build, to_html, to_markdown
from depthlm.settings import PRESETS, resolve_settings

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True, help="results root: one run folder per configuration")
    p.add_argument("--configs", nargs="+", default=sorted(str(f) for f in HERE.glob("*.yaml")))
    p.add_argument("--backend", choices=["vllm", "transformers", "openai"])
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--base-url", help="openai backend server")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--structured", action="store_true")
    p.add_argument("--skip-missing", action="store_true", help="leave out datasets that are not built here")
    args = p.parse_args(argv)

    kind, _ = split_model_spec(args.model, args.backend)
    settings = resolve_settings(args.model if kind in ("vllm", "transformers") else None, args.preset)
    plans = []
    for cfg_path in args.configs:
        try:
            cfg = load_config(cfg_path)
        except DepthLMError as err:
            if not args.skip_missing:
                raise
            print(f"skipping {cfg_path}: {err}")
            continue
        data = [d for d in cfg["data"] if not args.skip_missing or Path(d.partition("=")[2] or d).exists()]
        for missing in sorted(set(cfg["data"]) - set(data)):
            print(f"{cfg_path}: skipping {missing} (not found)")
        if data:
            plans.append((cfg, data))
    if not plans:
        raise DepthLMError("no configuration has any dataset to evaluate")

    opts = {"base_url": args.base_url} if kind == "openai" else {}
    if kind in ("vllm", "transformers"):
        opts["dtype"] = args.dtype
    backend = make_backend(kind, args.model, settings, **opts)
    out_root = Path(args.out)
    try:
        for cfg, data in plans:
            print(f"== {cfg['name']}")
            evaluate(
                backend,
                load_datasets(data),
                out_root / cfg["name"],
                points_per_image=int(cfg.get("points_per_image") or 1),
                max_queries=cfg.get("max_queries"),
                seed=int(cfg.get("seed", 0)),
                structured=args.structured,
            )
    finally:
        backend.close()
    runs = [f"{args.model} ({cfg['name']})={out_root / cfg['name']}" for cfg, _ in plans]
    columns, rows = build(runs)
    (out_root / "leaderboard.md").write_text(to_markdown(columns, rows))
    (out_root / "leaderboard.html").write_text(to_html(columns, rows))
    print(to_markdown(columns, rows), end="")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DepthLMError as err:
        print(f"eval/run.py: error: {err}", file=sys.stderr)
        sys.exit(2)
