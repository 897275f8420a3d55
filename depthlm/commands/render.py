"""``depthlm render DATA --index I --out sample.png``: save exactly what the model sees."""

from __future__ import annotations

import argparse

import numpy as np

from depthlm.errors import DepthLMError
from depthlm.records import read_records
from depthlm.render import render_record
from depthlm.settings import PRESETS, resolve_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="records jsonl file or folder")
    p.add_argument("--index", type=int, default=0, help="record number (0-based)")
    p.add_argument("--point", type=int, default=0, help="labelled point within the record")
    p.add_argument("--out", default="sample.png", help="where to save the rendered image")
    p.add_argument("--model", help="model folder whose recorded render settings to use")
    p.add_argument("--preset", choices=sorted(PRESETS), help="settings preset when the model records none")
    p.add_argument("--f-uni", type=float, help="override the unified focal length")
    p.add_argument("--template", help="override the prompt template")
    p.add_argument("--marker", help="override the marker style")
    p.add_argument("--train", action="store_true", help="render a training view (random crop)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    settings = resolve_settings(
        args.model, args.preset, f_uni=args.f_uni, template=args.template, marker=args.marker
    )
    rejects = []
    records = read_records(args.data, rejects=rejects)
    if not 0 <= args.index < len(records):
        why = f"; {len(rejects)} problem(s) while reading, first: {rejects[0]}" if rejects else ""
        raise DepthLMError(f"{args.data}: --index {args.index} out of range ({len(records)} records{why})")
    rng = np.random.default_rng(args.seed) if args.train else None
    query = render_record(records[args.index], args.point, settings, rng=rng)
    query.image.save(args.out)
    print(f"saved {args.out} ({query.image.width}x{query.image.height}, query pixel {query.point})")
    print(f"question: {query.question}")
    print(f"answer:   {query.answer}")
    return 0
