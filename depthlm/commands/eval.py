"""``depthlm eval --model M (--data D1 [D2 ...] | --config eval/X.yaml ...) --out DIR``: score a
model, resumably. The one evaluation runner: several configurations run in one call, on one
engine (like lmms-eval's tasks), each into DIR/<config name>/, then DIR/leaderboard.md.

Examples::

    depthlm eval --model runs/sft --data ibims1=data/ibims1 nyuv2=data/nyuv2 --out results/sft
    depthlm eval --model runs/sft --config eval/depthlmbench.yaml --out results/sft
    depthlm eval --model runs/sft --config eval/ --out results/sft          # every eval/*.yaml
    depthlm eval --model constant:2.0 --data data/ibims1 --out results/constant
    depthlm eval --model median:data/train.jsonl --data data/ibims1 --out results/median
    depthlm eval --backend openai --model qwen --base-url http://127.0.0.1:8000/v1 --preset reference \\
        --config eval/ibims1.yaml --out results/qwen-served
    depthlm eval --model runs/sft --config eval/depthlmbench.yaml --out R --tensor-parallel-size 2 \\
        --engine-arg gpu_memory_utilization=0.85 --engine-arg max_model_len=8192
    depthlm eval --model runs/sft --config eval/depthlmbench.yaml --out R --data-parallel-size 8
    depthlm eval --model runs/sft --config eval/depthlmbench.yaml --out R --shard 3/16   # job array
    depthlm eval --config eval/depthlmbench.yaml --out R --merge                           # then merge

See docs/evaluation.md for one GPU, eight, and a cluster.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from depthlm.commands.backend import add_backend_arguments
from depthlm.errors import DepthLMError

PARSER: argparse.ArgumentParser | None = None  # kept to re-issue the command line to shards


def add_arguments(p: argparse.ArgumentParser) -> None:
    global PARSER
    PARSER = p
    add_backend_arguments(p, default="vllm", model_required=False)
    p.add_argument("--data", nargs="+", help="record sets: PATH or NAME=PATH (jsonl file or folder)")
    p.add_argument(
        "--config",
        action="append",
        default=[],
        help="benchmark configuration YAML (eval/*.yaml: datasets, points, max queries, engine), "
        "or a folder of them; repeatable: all run on one engine, each into OUT/<name>/",
    )
    p.add_argument("--out", required=True, help="run folder; rerunning with the same folder resumes")
    p.add_argument("--points-per-image", type=int, help="labelled points asked per image (default 1)")
    p.add_argument(
        "--max-queries", type=int, help="at most this many queries per dataset (every image first)"
    )
    p.add_argument("--seed", type=int, help="query selection seed (default 0)")
    p.add_argument(
        "--tasks",
        help="comma-separated depthlm.tasks to ask (e.g. depth,distance,closer; 'all'); default depth; "
        "metrics per task and dataset in metrics.json['tasks']",
    )
    p.add_argument("--f-uni", type=float, help="override the unified focal length (ablations; printed)")
    p.add_argument("--template", help="override the prompt template (ablations; printed)")
    p.add_argument("--max-pixels", type=int, help="override the pixel budget")
    p.add_argument(
        "--structured", action="store_true", help="constrain answers to the template's regex (vllm/openai)"
    )
    p.add_argument(
        "--chunk-size", type=int, help="queries per generate call and per resumable step (default 48)"
    )
    p.add_argument("--skip-missing", action="store_true", help="leave out datasets that are not built here")
    p.add_argument("--no-plots", action="store_true")
    dense = p.add_argument_group("dense maps (depthlm.dense; record sets with extras.depth_map)")
    dense.add_argument(
        "--dense",
        action="store_true",
        help="score dense depth maps instead of single queries: into OUT/dense/<dataset>/ "
        "(dense metrics, FDE-Bench region metrics, flying points; docs/dense.md)",
    )
    dense.add_argument("--dense-grid", default="32x24", help="COLUMNSxROWS of queried pixels (default 32x24)")
    dense.add_argument(
        "--dense-points-per-query", type=int, default=1, help="K points per query (the points task)"
    )
    split = p.add_argument_group("splitting a run (job arrays, several engines)")
    split.add_argument(
        "--shard", metavar="I/N", help="generate only shard I of N into OUT/parts/ (merge with --merge)"
    )
    split.add_argument(
        "--merge", action="store_true", help="merge OUT/parts/ shards and score them (needs no model)"
    )
    split.add_argument(
        "--data-parallel-size",
        type=int,
        default=1,
        help="run N engines at once (each on its own tensor-parallel-size GPUs), one shard each, then merge",
    )


def expand_configs(items: list[str]) -> list[str]:
    """Config files, with folders replaced by their *.yaml files (sorted)."""
    out = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.glob("*.yaml"))
            if not found:
                raise DepthLMError(f"{item}: no *.yaml configuration in this folder")
            out += found
        else:
            out.append(item)
    return out


def plan_runs(args: argparse.Namespace) -> list[dict]:
    """What to evaluate: one entry per configuration (or one for --data), with its run folder."""
    from depthlm.evaluation import load_config

    configs = expand_configs(args.config)
    if args.data and configs:
        raise DepthLMError("give record sets with --data or --config, not both")
    cfgs = [load_config(c) for c in configs] if configs else [{"name": None, "data": list(args.data or [])}]
    if not cfgs[0]["data"]:
        raise DepthLMError("give record sets with --data or a --config")
    names = [c.get("name") or Path(p).stem for c, p in zip(cfgs, configs or [None])] if configs else [None]
    if len(set(names)) != len(names):
        raise DepthLMError(f"configurations share a name ({', '.join(map(str, names))}); rename one")
    runs = []
    for cfg, name in zip(cfgs, names):
        data = cfg["data"]
        if args.skip_missing:
            data = [d for d in data if Path(d.partition("=")[2] or d).exists()]
            for gone in sorted(set(cfg["data"]) - set(data)):
                print(f"{name}: skipping {gone} (not found)")
            if not data:
                print(f"{name}: nothing to evaluate here, skipped")
                continue
        runs.append(
            {
                "name": name,
                "out": Path(args.out) / name if len(cfgs) > 1 else Path(args.out),
                "data": data,
                "points": args.points_per_image or cfg.get("points_per_image") or 1,
                "max_queries": args.max_queries if args.max_queries is not None else cfg.get("max_queries"),
                "seed": args.seed if args.seed is not None else int(cfg.get("seed") or 0),
                "engine": cfg.get("engine") or {},
                "tasks": eval_tasks(args.tasks if args.tasks else cfg.get("tasks")),
            }
        )
    if not runs:
        raise DepthLMError("no configuration has any dataset to evaluate")
    return runs


def eval_tasks(spec) -> list[str] | None:
    """Task names from --tasks or a configuration's ``tasks:`` (a list, a mapping whose weights are
    ignored, or "a,b" / "all"); None: depth alone."""
    if spec is None:
        return None
    from depthlm.tasks.mix import parse_weights

    if isinstance(spec, (list, tuple)):
        spec = ",".join(map(str, spec))
    return list(parse_weights(spec))


def config_engine(runs: list[dict]) -> dict:
    """The configurations' ``engine:`` blocks, which must agree: they share one engine."""
    engine: dict = {}
    for r in runs:
        for key, value in r["engine"].items():
            if key in engine and engine[key] != value:
                raise DepthLMError(
                    f"configurations disagree on engine argument {key!r} ({engine[key]!r}, {value!r})"
                )
            engine[key] = value
    return engine


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C or kill: the engine is shut down; finished chunks are kept
        print(f"\ninterrupted; rerun the same command to resume from {args.out}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from depthlm.evaluation import evaluate, load_datasets, parse_shard

    if args.merge:
        return _merge(args)
    if args.data_parallel_size > 1:
        return _data_parallel(args)
    from depthlm.commands.backend import backend_from_args, backend_kind, settings_from_args, stop_on_sigterm

    shard = parse_shard(args.shard) if args.shard else None
    if args.dense and shard is not None:
        raise DepthLMError("--dense runs whole record sets: no --shard (give each job its own --data)")
    runs = plan_runs(args)
    kind = backend_kind(args)
    overrides = {"f_uni": args.f_uni, "template": args.template, "max_pixels": args.max_pixels}
    settings = settings_from_args(args, **overrides)
    changed = {k: v for k, v in overrides.items() if v is not None}
    if changed:
        print(f"render settings overridden: {changed}")
    loaded = []
    for r in runs:
        datasets = load_datasets(r["data"])
        for ds in datasets:
            extra = f", {len(ds.rejects)} rejected (listed in metrics.json)" if ds.rejects else ""
            print(f"{ds.name}: {len(ds.records)} images from {ds.path}{extra}")
        loaded.append(datasets)

    asked = sorted({t for r in runs for t in r["tasks"] or ()})  # motion shows vLLM two images
    backend = backend_from_args(args, settings, config_engine(runs), asked)
    previous = stop_on_sigterm()  # kill = Ctrl-C: the `finally` below shuts vLLM's engine processes down
    chunk = args.chunk_size or (args.batch_size * 16 if kind == "transformers" else 48)
    results = []
    try:
        if args.dense:
            return _dense(backend, runs, loaded, args)
        for r, datasets in zip(runs, loaded):
            if r["name"] and len(runs) > 1:
                print(f"== {r['name']}")
            results.append(
                evaluate(
                    backend,
                    datasets,
                    r["out"],
                    points_per_image=r["points"],
                    max_queries=r["max_queries"],
                    seed=r["seed"],
                    max_tokens=args.max_tokens,
                    structured=args.structured,
                    chunk_size=chunk,
                    plots=not args.no_plots,
                    shard=shard,
                    tasks=r["tasks"],
                )
            )
    finally:
        backend.close()
        signal.signal(signal.SIGTERM, previous)
    if shard is not None:
        print(f"shard {shard[0]}/{shard[1]} done; when every shard is: depthlm eval --out {args.out} --merge")
        return 0
    _report(runs, results, args)
    return 0


def _dense(backend, runs: list[dict], loaded: list, args: argparse.Namespace) -> int:
    """--dense: each record set's dense maps and scores (depthlm.dense.evaluate), one engine for all."""
    from depthlm.dense import DenseOptions
    from depthlm.dense.evaluate import evaluate_dense
    from depthlm.dense.sampling import parse_grid

    options = DenseOptions(
        grid=parse_grid(args.dense_grid),
        k=args.dense_points_per_query,
        max_tokens=args.max_tokens,
        structured=args.structured,
        seed=args.seed or 0,
    )
    for r, datasets in zip(runs, loaded):
        for ds in datasets:
            summary = evaluate_dense(backend, ds.path, Path(r["out"]) / "dense" / ds.name, options)
            mean = summary["mean"] or {}
            print(
                f"{ds.name}: dense delta1 {mean.get('delta1', float('nan')):.3f}, AbsRel "
                f"{mean.get('abs_rel', float('nan')):.3f} over {summary['records']} records "
                f"({len(summary['skipped'])} skipped, listed in metrics.json); "
                f"wrote {Path(r['out']) / 'dense' / ds.name}"
            )
    return 0


def _report(runs: list[dict], results: list[dict], args: argparse.Namespace) -> None:
    for r, metrics in zip(runs, results):
        print((r["out"] / "row.md").read_text(), end="")
        avg = metrics["average"]
        print(
            f"delta1 {avg['delta1']:.3f} over {avg['n']} queries, parse failures "
            f"{avg['parse_failure_rate']:.1%}; wrote {r['out']}"
        )
        for name, t in metrics.get("tasks", {}).items():
            a = t["average"]
            print(
                f"  {name}: {t['metric']} {a.get(t['metric'], float('nan')):.3f} over {a.get('n', 0)} queries"
            )
    if len(runs) > 1:
        from depthlm.leaderboard import build, to_html, to_markdown

        model = results[0]["model"]
        columns, rows = build([f"{model} ({r['name']})={r['out']}" for r in runs])
        out = Path(args.out)
        (out / "leaderboard.md").write_text(to_markdown(columns, rows))
        (out / "leaderboard.html").write_text(to_html(columns, rows))
        print(f"wrote {out / 'leaderboard.md'} and leaderboard.html")


def _merge(args: argparse.Namespace) -> int:
    """--merge: score the shards of every run folder (one per configuration)."""
    from depthlm.evaluation import PARTS_DIR, merge_shards

    out = Path(args.out)
    if args.config:
        runs = plan_runs(args)
    elif (out / PARTS_DIR).is_dir():
        runs = [{"name": None, "out": out}]
    else:
        found = sorted(d for d in out.glob(f"*/{PARTS_DIR}") if d.is_dir())
        if not found:
            raise DepthLMError(f"{out}: no shards to merge (no {PARTS_DIR}/ folder here or one level down)")
        runs = [{"name": d.parent.name, "out": d.parent} for d in found]
    results = [merge_shards(r["out"], plots=not args.no_plots) for r in runs]
    _report(runs, results, args)
    return 0


def shard_command(args: argparse.Namespace, index: int, count: int) -> list[str]:
    """This same command line, for shard `index` of `count` (one engine of a data-parallel run)."""
    assert PARSER is not None
    argv = [sys.executable, "-m", "depthlm.cli", "eval"]
    for action in PARSER._actions:
        if not action.option_strings or action.dest in ("help", "data_parallel_size", "shard", "merge"):
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default or value is False:
            continue
        flag = action.option_strings[-1]
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            if action.nargs in ("+", "*"):
                argv += [flag, *map(str, value)]
            else:
                for v in value:
                    argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return [*argv, "--shard", f"{index}/{count}"]


def _data_parallel(args: argparse.Namespace) -> int:
    """--data-parallel-size N: N copies of this command, shard i/N each, each pinned to its own
    GPUs (tensor x pipeline parallel size of them) when there are enough; then the merge.
    For dense models this is what vLLM's offline data-parallel example does (one engine per
    rank, each on a slice of the prompts), with depthlm's resumable shards as the slices."""
    from depthlm.commands.backend import stop_on_sigterm
    from depthlm.evaluation import PARTS_DIR, shard_name
    from depthlm.lifetime import set_pdeathsig

    count = args.data_parallel_size
    if args.shard:
        raise DepthLMError("--data-parallel-size and --shard do not mix: each engine is a shard already")
    per = (args.tensor_parallel_size or 1) * (args.pipeline_parallel_size or 1)
    gpus = _gpu_count()
    if gpus and gpus < count * per:
        raise DepthLMError(
            f"--data-parallel-size {count} x {per} GPU(s) each needs {count * per} GPUs, found {gpus}"
        )
    runs = plan_runs(args)  # errors in the configuration show before N processes start
    Path(args.out).mkdir(parents=True, exist_ok=True)
    parent = os.getpid()
    # the GPUs this process may use, as the children must name them (an existing selection is kept)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    devices = [d.strip() for d in visible.split(",") if d.strip()] or [str(g) for g in range(gpus)]
    procs = []
    stop_on_sigterm()
    try:
        for i in range(count):
            env = dict(os.environ, TQDM_DISABLE="1")
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(devices[i * per : (i + 1) * per])
            log_dir = runs[0]["out"] / PARTS_DIR
            log_dir.mkdir(parents=True, exist_ok=True)
            log = open(log_dir / f"{shard_name(i, count)}.log", "w")
            procs.append(
                (
                    subprocess.Popen(
                        shard_command(args, i, count),
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        preexec_fn=lambda: set_pdeathsig(parent),
                    ),
                    log,
                )
            )
        print(
            f"{count} engines started (logs: {runs[0]['out'] / PARTS_DIR}/shard-I-of-{count}.log)", flush=True
        )
        failed = []
        for i, (proc, log) in enumerate(procs):
            if proc.wait() != 0:
                failed.append(f"{i}/{count} (exit {proc.returncode}, log {log.name})")
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            log.close()
    if failed:
        raise DepthLMError(f"shard(s) {', '.join(failed)} failed; rerun the same command to resume them")
    return _merge(args)


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0
