"""``depthlm demo``: synthetic scenes, a tiny model, SFT with the recipe, vLLM evaluation,
a table and pictures, on the CPU in minutes (see depthlm.demo). Rerun with the same --out to
continue a killed demo."""

from __future__ import annotations

import argparse

from data_builders.sources.synthetic import image_size as parse_size
from depthlm.demo import HONEST_NOTE, DemoConfig, run_demo

_D = DemoConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=_D.out, help=f"run folder (default {_D.out})")
    p.add_argument(
        "--train-images", type=int, default=_D.train_images, help="scenes trained on, one point each"
    )
    p.add_argument(
        "--heldout-images", type=int, default=_D.heldout_images, help="unseen scenes, one point each"
    )
    p.add_argument("--image-size", type=parse_size, default=_D.image_size, help="WxH (default 320x240)")
    p.add_argument("--preset", default=_D.preset, choices=["default", "easy"], help="synthetic scene preset")
    p.add_argument("--arch", default=_D.arch, choices=["qwen2_5_vl", "qwen3_vl"], help="tiny model family")
    p.add_argument("--max-steps", type=int, default=_D.max_steps, help="SFT steps")
    p.add_argument("--learning-rate", type=float, default=_D.learning_rate)
    p.add_argument("--template", default=_D.template, help="prompt template (depthlm.prompts)")
    p.add_argument(
        "--backend", default=_D.backend, choices=["vllm", "transformers"], help="evaluation backend"
    )
    p.add_argument("--seed", type=int, default=_D.seed)


def run(args: argparse.Namespace) -> int:
    cfg = DemoConfig(
        out=args.out,
        train_images=args.train_images,
        heldout_images=args.heldout_images,
        image_size=tuple(args.image_size),
        preset=args.preset,
        arch=args.arch,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        template=args.template,
        backend=args.backend,
        seed=args.seed,
    )
    result = run_demo(cfg)
    print()
    print(result["table"])
    print()
    print(HONEST_NOTE)
    print(f"\ntrained in {result['train_seconds']:.0f} s; whole demo {result['total_seconds']:.0f} s")
    print(f"pictures: {cfg.folder / 'pictures'}   report: {cfg.folder / 'report.md'}")
    return 0
