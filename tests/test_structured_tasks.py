"""Structured (regex) decoding for every task on vLLM: ``depthlm eval --tasks all --structured``.

An untrained random tiny model writes junk when free; held to each query's regex it must give,
for every task, an answer that parses (parse-failure rate 0) and fully matches the task's
``answer_regex`` as the registry states it -- a ``points`` answer with exactly the labels the
question asked, a ``closer`` choice, ``time`` in seconds, ``motion`` with both images sent to the
engine. The same run without ``--structured`` fails to parse, so the test can fail.

The model folder records no tasks (depth only), as a base model's would: evaluation asks the
others anyway, and vLLM must be started for the two images a ``motion`` query shows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from depthlm import tasks
from depthlm.settings import RenderSettings

F_UNI, MAX_PIXELS = 150, 18816  # the scenes' own focal length: 160x120 views, 24 patches of 28 px
SETTINGS = RenderSettings(f_uni=F_UNI, max_pixels=MAX_PIXELS)


@pytest.fixture(scope="module")
def task_data(tmp_path_factory) -> Path:
    """Six synthetic scenes as ``depthlm build synthetic --points-per-image 16 --depth-map
    --second-view`` writes them: every task can be asked of them."""
    from training_helpers import task_scenes

    return task_scenes(tmp_path_factory.mktemp("structured-data") / "synth", "val")


def _eval(model: Path, data: Path, out: Path, *extra: str) -> tuple[dict, list[dict]]:
    cmd = [sys.executable, "-m", "depthlm.cli", "eval", "--model", str(model), "--data", f"s={data}"]
    cmd += ["--out", str(out), "--tasks", "all", "--f-uni", str(F_UNI), "--max-pixels", str(MAX_PIXELS)]
    cmd += ["--dtype", "float32", "--no-plots", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "TQDM_DISABLE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=500)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return json.loads((out / "metrics.json").read_text()), rows


def _asked_labels(question: str) -> list[str]:
    """The labels a points question names ("... marked A, B, C and D?"), read from its words."""
    return re.findall(r"\b([A-Z])\b(?=,| and|\?)", question.split("marked", 1)[1])


@pytest.mark.slow
def test_structured_decoding_makes_every_tasks_answer_parse_on_an_untrained_model(
    tiny_model_dir, task_data, tmp_path
):
    metrics, rows = _eval(tiny_model_dir, task_data, tmp_path / "structured", "--structured")
    assert metrics["generation"]["structured"] is True
    assert list(metrics["tasks"]) == tasks.names()
    answered = [r for r in rows if "skipped" not in r]
    for name in tasks.names():
        mine = [r for r in answered if r.get("task", "depth") == name]
        assert mine, f"{name}: no query answered"
        assert metrics["tasks"][name]["average"]["parse_failure_rate"] == 0.0, name
        regex = tasks.get(name).answer_regex(SETTINGS)
        for r in mine:
            assert re.fullmatch(regex, r["text"]), (name, r["text"])
            assert r["pred"] is not None, (name, r["text"])
    for r in (r for r in answered if r.get("task") == "points"):
        asked = _asked_labels(r["question"])
        assert len(asked) >= 2 and list(r["pred"]) == asked, (r["question"], r["text"])
        assert re.findall(r"^([A-Z]):", r["text"], re.M) == asked  # one line per asked label, in order
    assert {r["pred"] for r in answered if r.get("task") == "closer"} <= {"A", "B"}
    assert all(r["text"].endswith(" seconds.") for r in answered if r.get("task") == "time")
    skipped = [r for r in rows if "skipped" in r]
    assert all(r["skipped"] for r in skipped)  # a record a task cannot use is listed with its reason
    assert sum(1 for r in answered if r.get("task") == "motion") == 6  # two images each, every scene

    # The same queries without --structured: the untrained model's free text does not parse.
    free, free_rows = _eval(tiny_model_dir, task_data, tmp_path / "free")
    assert [r["id"] for r in free_rows] == [r["id"] for r in rows]  # same plan
    free_answered = [r for r in free_rows if "skipped" not in r]
    failures = {name: t["average"]["parse_failure_rate"] for name, t in free["tasks"].items()}
    assert sum(failures.values()) > 0, failures
    misses = [
        r
        for r in free_answered
        if not re.fullmatch(tasks.get(r.get("task", "depth")).answer_regex(SETTINGS), r["text"])
    ]
    assert len(misses) > len(free_answered) // 2


def test_a_points_query_is_held_to_its_own_labels_one_line_each(task_data):
    """The points task's regex admits any letters and lines; a query's regex only its own labels."""
    import numpy as np

    from depthlm.inference import answer_regex
    from depthlm.records import read_records

    record = read_records(task_data)[0]
    query = tasks.get("points").query(record, SETTINGS, np.random.default_rng(0))
    regex = answer_regex(SETTINGS, query)
    labels = list(query.points)
    assert labels == ["A", "B", "C", "D"]
    number = r"\d{1,4}\.\d{2}"  # docs/tasks.md: answers with 2 decimals, one "A: 2.07 m" line per label
    assert regex == r"\n".join(f"{label}: {number} m" for label in labels)  # plain text: no escaped spaces
    assert re.fullmatch(regex, query.answer)  # the training answer (the truth in words)
    assert re.fullmatch(tasks.get("points").answer_regex(SETTINGS), query.answer)
    for wrong in (
        "A: 1.00 m",  # labels missing
        "A: 1.00 m\nB: 1.00 m\nC: 1.00 m\nD: 1.00 m\nE: 1.00 m",  # one added
        "O: 1.00 m\nB: 1.00 m\nC: 1.00 m\nD: 1.00 m",  # another letter
    ):
        assert re.fullmatch(tasks.get("points").answer_regex(SETTINGS), wrong)  # the task's admits it
        assert not re.fullmatch(regex, wrong), wrong
    depth = tasks.get("depth").query(record, SETTINGS, np.random.default_rng(0))
    assert answer_regex(SETTINGS, depth) == tasks.get("depth").answer_regex(SETTINGS)
