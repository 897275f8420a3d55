"""`depthlm leaderboard`: real runs of two baselines on iBims-1, tabulated with the paper's quoted rows."""

from __future__ import annotations

import subprocess
import sys

import pytest

from depthlm.errors import DepthLMError
from depthlm.evaluation import evaluate, load_datasets
from depthlm.inference import make_backend
from depthlm.leaderboard import REFERENCE_ROWS, build, load_run, to_html, to_markdown
from depthlm.settings import RenderSettings


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ibims1):
    root = tmp_path_factory.mktemp("runs")
    data = load_datasets([f"ibims1={ibims1}"])
    settings = RenderSettings()
    out = {}
    for metres in (2.0, 4.0):
        folder = root / f"c{metres:g}"
        evaluate(
            make_backend(None, f"constant:{metres}", settings),
            data,
            folder,
            max_queries=40,
            plots=False,
            progress=False,
        )
        out[metres] = folder
    return out


def test_rows_are_sorted_best_first_and_paper_rows_are_labelled_quotes(runs):
    columns, rows = build([str(runs[4.0]), str(runs[2.0])])
    assert columns == ["ibims1"]
    measured = [r for r in rows if not r.reference]
    assert {r.name for r in measured} == {"constant:2", "constant:4"}
    assert measured[0].average > measured[1].average  # best first, whatever the order given
    md = to_markdown(columns, rows)
    lines = md.splitlines()
    assert lines[0] == "| model | backend | ibims1 | avg | n | parse fail | source |"
    assert {line.split(" | ")[1] for line in lines[2:4]} == {"constant"}  # the backend, shown
    paper = [line for line in lines if line.startswith("|") and "[paper]" in line]
    assert len(paper) == len(REFERENCE_ROWS) and all("quoted from the paper" in line for line in paper)
    assert (
        "| DepthLM 7B (Qwen2.5-VL) [paper] | - | 0.920 | 0.838 (8 sets) |" in md
    )  # iBims1 column, 8-set average
    assert "not here" in md
    html = to_html(columns, rows)
    assert html.count('<tr class="reference">') == len(REFERENCE_ROWS) and "<table>" in html


def test_named_runs_other_metrics_and_no_references(runs):
    columns, rows = build([f"two <m>={runs[2.0]}"], metric="abs_rel", references=False)
    assert [r.name for r in rows] == ["two <m>"] and not any(r.reference for r in rows)
    assert rows[0].values["ibims1"] == pytest.approx(load_run(runs[2.0], "abs_rel").average)
    assert "two &lt;m&gt;" in to_html(columns, rows, "abs_rel")  # names are escaped
    with pytest.raises(DepthLMError, match="no metrics.json"):
        build([str(runs[2.0].parent)])


def test_cli_writes_markdown_and_html(runs, tmp_path):
    md, page = tmp_path / "board.md", tmp_path / "board.html"
    cmd = [
        sys.executable,
        "-m",
        "depthlm.cli",
        "leaderboard",
        str(runs[2.0]),
        str(runs[4.0]),
        "--out",
        str(md),
        "--html",
        str(page),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "constant:2" in md.read_text() and "constant:4" in md.read_text() and "[paper]" in md.read_text()
    assert page.read_text().startswith("<!doctype html>")
    res = subprocess.run(
        [sys.executable, "-m", "depthlm.cli", "leaderboard", str(tmp_path)], capture_output=True, text=True
    )
    assert res.returncode == 2 and "no metrics.json" in res.stderr
