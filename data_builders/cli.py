"""``depthlm build SOURCE --root RAW --out OUT [options]``: the command form of data_builders.build.

Parsing is two-stage because every source adds its own options: the first stage takes
SOURCE, the second parses the rest with the framework's options plus that source's.
``depthlm build SOURCE --help`` lists both.
"""

from __future__ import annotations

import argparse
import json
import time

from data_builders.framework import build, get_source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        nargs="?",
        help="dataset source (`depthlm build list` shows them); `check-convention FILE` measures whether "
        "a DepthLMBench jsonl file holds z-depth or ray distance",
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="options (see `depthlm build SOURCE --help`)")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default only where it says something (not None/False, not already in the help)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


def source_parser(name: str) -> argparse.ArgumentParser:
    cls = get_source(name)
    doc = (cls.__doc__ or "").strip() or (__import__(cls.__module__, fromlist=["x"]).__doc__ or "")
    p = argparse.ArgumentParser(
        prog=f"depthlm build {name}",
        description=doc.strip().split("\n\n")[0],
        formatter_class=_Formatter,
    )
    p.add_argument("--root", required=cls.needs_root, default=None, help="folder of the raw dataset")
    p.add_argument(
        "--out", required=True, help="output folder (records-*.jsonl, summary.json, rejects.jsonl)"
    )
    p.add_argument(
        "--split", default=cls.splits[0] if "train" not in cls.splits else "train", choices=cls.splits
    )
    p.add_argument(
        "--points-per-image",
        type=int,
        default=None,
        help="labels kept per image; 0 = all (default: source's, else 1 for train, 100 for val/test)",
    )
    p.add_argument("--sampling", choices=("uniform", "stratified"), default="uniform")
    p.add_argument("--seed", type=int, default=0, help="point sampling seed (per frame: seed + frame key)")
    p.add_argument("--num-proc", type=int, default=1, help="worker processes")
    p.add_argument("--shard", default=None, help="I/N: this job's share of the chunks (cluster job arrays)")
    p.add_argument("--max-images", type=int, default=None, help="only the first M frames of the split")
    p.add_argument("--min-depth", type=float, default=None, help="metres of z-depth (default 0)")
    p.add_argument("--max-depth", type=float, default=None, help="metres of z-depth (default none)")
    p.add_argument(
        "--edge-threshold",
        type=float,
        default=None,
        help="reject labels whose neighbourhood depth spread exceeds this fraction of their depth; 0 = off "
        "(default 0.1)",
    )
    p.add_argument("--edge-radius", type=int, default=1, help="neighbourhood radius in pixels for that test")
    p.add_argument(
        "--border", type=int, default=None, help="pixels to keep away from the image edge (default 0)"
    )
    p.add_argument("--copy-images", action="store_true", help="copy image files into OUT/images")
    p.add_argument("--chunk-size", type=int, default=64, help="frames per record shard (unit of resume)")
    p.add_argument("--dataset", default=None, help="dataset name written into the records (default: source)")
    p.add_argument("--export-hf", default=None, metavar="DIR", help="also write a parquet `datasets` dataset")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = p.add_argument_group(f"{name} options")
    cls.add_arguments(group)  # type: ignore[arg-type]  # groups take the same add_argument calls
    return p


FRAMEWORK_DESTS = {
    "root",
    "out",
    "split",
    "points_per_image",
    "sampling",
    "seed",
    "num_proc",
    "shard",
    "max_images",
    "min_depth",
    "max_depth",
    "edge_threshold",
    "edge_radius",
    "border",
    "copy_images",
    "chunk_size",
    "dataset",
    "export_hf",
    "no_progress",
}


def run(args: argparse.Namespace) -> int:
    if not args.source or args.source == "list":
        from data_builders.framework import discover_sources

        for name, cls in sorted(discover_sources().items()):
            doc = (cls.__doc__ or __import__(cls.__module__, fromlist=["x"]).__doc__ or "").strip()
            print(f"{name:14s} {doc.splitlines()[0] if doc else ''}")
        return 0
    if args.source == "check-convention":
        return check_convention(args.rest)
    opts = vars(source_parser(args.source).parse_args(args.rest))
    source_options = {k: v for k, v in opts.items() if k not in FRAMEWORK_DESTS}
    common = {k: v for k, v in opts.items() if k in FRAMEWORK_DESTS}
    start = time.perf_counter()
    summary = build(
        args.source,
        common.pop("root"),
        common.pop("out"),
        progress=not common.pop("no_progress"),
        **common,
        **source_options,
    )
    seconds = time.perf_counter() - start
    if not summary.get("complete"):
        print(summary["message"])
        return 0
    print(
        f"built {summary['images']} images, {summary['points']} points into {opts['out']} "
        f"in {seconds:.1f} s; {summary['frames']['rejected']} frames rejected"
        + (f" ({_top(summary['frame_rejects'])})" if summary["frame_rejects"] else "")
    )
    if summary["label_rejects"]:
        print(f"labels rejected: {_top(summary['label_rejects'])} (details: rejects.jsonl)")
    if opts.get("export_hf"):
        print(f"exported a parquet dataset to {opts['export_hf']}")
    print(
        json.dumps({"images": summary["images"], "points": summary["points"], "seconds": round(seconds, 2)})
    )
    return 0


def check_convention(argv: list[str]) -> int:
    """``depthlm build check-convention FILE_OR_FOLDER...``: which depth each jsonl file holds,
    measured by plane fits (depthlm.conventions), next to the dataset table's entry."""
    from depthlm.conventions import main as conventions_main
    from depthlm.errors import DepthLMError
    from depthlm.records import record_files

    files, rest = [], []
    for a in argv:
        if a.startswith("-") or (rest and rest[-1] in ("--max-images", "--tolerance")):
            rest.append(a)
        else:
            try:
                files += [str(f) for f in record_files(a)]
            except DepthLMError as err:
                raise DepthLMError(f"check-convention: {err}") from None
    if not files:
        raise DepthLMError("check-convention needs a DepthLMBench .jsonl file or folder")
    return conventions_main(files + rest)


def _top(counts: dict, n: int = 3) -> str:
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k}: {v}" for k, v in items[:n])
    return text + (f", +{len(items) - n} more reasons" if len(items) > n else "")
