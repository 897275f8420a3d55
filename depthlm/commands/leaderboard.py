"""``depthlm leaderboard DIR1 DIR2 ... [--out board.md] [--html board.html]``: tabulate runs.

Rows are the evaluation run folders written by ``depthlm eval``, best first, followed by the
DepthLM paper's published rows, clearly labelled as quoted (``--no-references`` leaves them out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from depthlm.metrics import METRIC_NAMES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run folders (each with metrics.json), optionally NAME=DIR")
    p.add_argument("--metric", default="delta1", choices=[m for m in METRIC_NAMES])
    p.add_argument("--out", help="write the markdown table here (default: print it)")
    p.add_argument("--html", help="also write an HTML table here")
    p.add_argument("--no-references", action="store_true", help="leave out the paper's quoted rows")


def run(args: argparse.Namespace) -> int:
    from depthlm.leaderboard import build, to_html, to_markdown

    columns, rows = build(args.runs, args.metric, references=not args.no_references)
    md = to_markdown(columns, rows, args.metric)
    if args.out:
        Path(args.out).write_text(md)
        print(f"wrote {args.out}")
    else:
        print(md, end="")
    if args.html:
        Path(args.html).write_text(to_html(columns, rows, args.metric))
        print(f"wrote {args.html}")
    return 0
