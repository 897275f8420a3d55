"""``depthlm tiny-model``: build a random-weight tiny Qwen-VL model folder, offline.

depthlm tiny-model --arch qwen2_5_vl --out models/tiny-qwen2_5_vl
depthlm tiny-model --arch qwen3_vl --size small --seed 1 --out models/small-qwen3_vl
"""

from __future__ import annotations

import argparse
import time

from depthlm.tiny import ARCHS, SIZES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=ARCHS, required=True, help="model architecture to imitate")
    parser.add_argument("--out", required=True, help="folder to write the model into")
    parser.add_argument(
        "--size",
        choices=SIZES,
        default="tiny",
        help="nano: fastest tests; tiny: about 1M parameters (default); small: about 12M, for learning runs",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for the weights (default 0)")


def run(args: argparse.Namespace) -> int:
    from depthlm.tiny import build_tiny_model

    start = time.perf_counter()
    out = build_tiny_model(args.arch, args.out, size=args.size, seed=args.seed)
    print(
        f"wrote random-weight {args.size} {args.arch} model to {out} in {time.perf_counter() - start:.1f} s"
    )
    return 0
