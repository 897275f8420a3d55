"""``depthlm tasks``: the questions depthlm can ask, and which records can feed each.

depthlm tasks                       # name, answer kind, metrics, what it needs, sources
depthlm tasks --json                # the same, machine-readable
depthlm tasks --data data/synth     # how many records of a set each task can use, and why not
"""

from __future__ import annotations

import argparse
import collections
import json

import numpy as np

from depthlm import tasks
from depthlm.records import read_records
from depthlm.settings import PRESETS, resolve_settings
from depthlm.tables import markdown_table
from depthlm.tasks.base import ANY_SOURCE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--data", help="records jsonl file or folder: count the records each task can use")
    p.add_argument("--model", help="model folder whose render settings to use with --data")
    p.add_argument("--preset", choices=sorted(PRESETS), help="settings preset when the model records none")
    p.add_argument("--seed", type=int, default=0, help="seed of the queries tried with --data")


def source_names() -> list[str]:
    from data_builders.framework import discover_sources

    return sorted(discover_sources())


def describe(task: tasks.Task, all_sources: list[str]) -> dict:
    sources = all_sources if ANY_SOURCE in task.sources else list(task.sources)
    return {
        "name": task.name,
        "answer": task.answer_kind,
        "metrics": list(task.metric_names),
        "images": task.images_per_query,
        "needs": [f"{task.min_points}+ labelled points"] * (task.min_points > 0)
        + [f"extras.{key}" for key in task.needs],
        "sources": sources,
        "description": task.description,
    }


def usable_counts(path: str, settings, seed: int) -> dict[str, dict]:
    """Per task: records it can build a query from, and the reasons for the others (counted)."""
    records = read_records(path)
    out = {}
    for name in tasks.names():
        task, ok, why = tasks.get(name), 0, collections.Counter()
        for i, record in enumerate(records):
            reason = task.check(record)
            if reason is None:
                try:
                    task.sample(record, np.random.default_rng([seed, i]), settings)
                    ok += 1
                    continue
                except tasks.TaskError as err:
                    reason = str(err).split(f"{name}: ", 1)[-1]
            why[reason] += 1
        out[name] = {"usable": ok, "records": len(records), "not_usable": dict(why.most_common())}
    return out


def run(args: argparse.Namespace) -> int:
    everything = source_names()
    rows = [describe(tasks.get(name), everything) for name in tasks.names()]
    counts = None
    if args.data:
        counts = usable_counts(args.data, resolve_settings(args.model, args.preset), args.seed)
    if args.json:
        if counts:
            for row in rows:
                row["data"] = counts[row["name"]]
        print(json.dumps(rows, indent=1))
        return 0
    table = []
    for row in rows:
        sources = "all" if row["sources"] == everything else ", ".join(row["sources"]) or "none yet"
        answer = row["answer"] + (f", {row['images']} images" if row["images"] > 1 else "")
        table.append(
            [
                row["name"],
                answer,
                ", ".join(row["metrics"]),
                "; ".join(row["needs"]),
                sources,
                row["description"],
            ]
        )
    print(markdown_table(["task", "answer", "metrics", "needs", "sources", "asks"], table))
    if counts:
        print(f"\n{args.data}:")
        for name, c in counts.items():
            reasons = "; ".join(f"{n} {why}" for why, n in c["not_usable"].items())
            print(
                f"  {name:9s} {c['usable']}/{c['records']} records"
                + (f" (not: {reasons})" if reasons else "")
            )
    return 0
