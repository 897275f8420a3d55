"""``depthlm demo``: synthetic scenes, a tiny model, SFT with the recipe, vLLM evaluation,
a table and pictures, on the CPU in minutes (see depthlm.demo). Rerun with the same --out to
continue a killed demo. ``depthlm demo --tasks all``: one tiny model trained on every task and
scored per task on the queries it trained on (see depthlm.task_demo)."""

from __future__ import annotations

import argparse

from data_builders.sources.synthetic import image_size as parse_size
from depthlm.demo import HONEST_NOTE, DemoConfig, check_folder, run_demo
from depthlm.task_demo import TASK_STEPS, run_task_demo, task_config, task_figure, task_names, task_table

_D = DemoConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help=f"run folder (default {_D.out}; with --tasks {_D.out}-tasks)")
    p.add_argument(
        "--train-images", type=int, default=_D.train_images, help="scenes trained on, one point each"
    )
    p.add_argument(
        "--heldout-images", type=int, default=_D.heldout_images, help="unseen scenes, one point each"
    )
    p.add_argument("--image-size", type=parse_size, default=_D.image_size, help="WxH (default 320x240)")
    p.add_argument("--preset", default=_D.preset, choices=["default", "easy"], help="synthetic scene preset")
    p.add_argument("--arch", default=_D.arch, choices=["qwen2_5_vl", "qwen3_vl"], help="tiny model family")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help=f"SFT steps (default {_D.max_steps}; with --tasks {TASK_STEPS})",
    )
    p.add_argument("--learning-rate", type=float, default=_D.learning_rate)
    p.add_argument("--template", default=_D.template, help="prompt template (depthlm.prompts)")
    p.add_argument(
        "--backend", default=_D.backend, choices=["vllm", "transformers"], help="evaluation backend"
    )
    p.add_argument("--seed", type=int, default=_D.seed)
    p.add_argument(
        "--tasks",
        default=None,
        help="train one model on these tasks instead ('all' or e.g. 'depth,closer,motion'; depthlm tasks "
        "lists them) and score each on the queries it trained on",
    )
    p.add_argument(
        "--queries-per-task",
        type=int,
        default=8,
        help="--tasks: scenes (one query each) per task (default 8)",
    )


def run(args: argparse.Namespace) -> int:
    cfg = DemoConfig(
        out=args.out or (f"{_D.out}-tasks" if args.tasks else _D.out),
        train_images=args.train_images,
        heldout_images=args.heldout_images,
        image_size=tuple(args.image_size),
        preset=args.preset,
        arch=args.arch,
        max_steps=args.max_steps or (TASK_STEPS if args.tasks else _D.max_steps),
        learning_rate=args.learning_rate,
        template=args.template,
        backend=args.backend,
        seed=args.seed,
    )
    if args.tasks:
        return run_tasks(cfg, args)
    result = run_demo(cfg)
    print()
    print(result["table"])
    print()
    print(HONEST_NOTE)
    print(f"\ntrained in {result['train_seconds']:.0f} s; whole demo {result['total_seconds']:.0f} s")
    print(f"pictures: {cfg.folder / 'pictures'}   report: {cfg.folder / 'report.md'}")
    return 0


def run_tasks(cfg: DemoConfig, args: argparse.Namespace) -> int:
    names = task_names(args.tasks)
    if args.queries_per_task < 1:
        raise SystemExit("--queries-per-task must be at least 1")
    check_folder(task_config(cfg, names, args.queries_per_task))
    result = run_task_demo(cfg, names, args.queries_per_task)
    print(f"[4/4] pictures -> {cfg.folder / 'pictures'}", flush=True)
    picture = task_figure(result["answers"], cfg.folder / "pictures" / "tasks.png")
    table = task_table(result, names)
    (cfg.folder / "report.md").write_text(f"{table}\n\n{HONEST_NOTE}\n")
    print()
    print(table)
    print()
    verdict = "every task" if result["all_at_least_0.9"] else "NOT every task"
    print(f"{verdict} at >= 0.9 on its trained queries, one model")
    print(f"\ntrained in {result['train_seconds']:.0f} s; whole run {result['seconds']:.0f} s")
    print(f"picture: {picture}   report: {cfg.folder / 'report.md'}")
    return 0
