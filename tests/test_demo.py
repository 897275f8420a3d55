"""`depthlm demo` end to end on a small setting: synthetic build, tiny model, the SFT recipe in
its own process, vLLM evaluation, table and pictures; a rerun reuses everything (about 70 s)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

ARGS = ["--train-images", "16", "--heldout-images", "8", "--max-steps", "80", "--image-size", "224x168"]


def demo(out, *extra):
    """Run from the run folder's parent, not the checkout: the demo needs only the installed package."""
    cmd = [sys.executable, "-m", "depthlm.cli", "demo", "--out", str(out), *ARGS, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=out.parent)


@pytest.mark.slow
def test_demo_trains_evaluates_reports_and_reruns_without_redoing_work(tmp_path):
    out = tmp_path / "demo"
    done = demo(out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| tiny model after SFT |" in done.stdout and "| constant (training median) |" in done.stdout
    assert "not depth" in done.stdout  # says plainly that held-out queries are not learned

    results = json.loads((out / "results.json").read_text())
    model, median = results["metrics"]["model"], results["metrics"]["median"]
    assert model["trained"]["n"] == 16 and model["held-out"]["n"] == 8
    # 80 epochs over 16 fixed queries: the supervision path (render, labels, generation, parsing) works.
    assert model["trained"]["delta1"] >= 0.9 > median["trained"]["delta1"]
    assert model["trained"]["parse_failure_rate"] == 0
    assert (out / "sft" / "depthlm_render.json").is_file()  # the settings travel with the model
    for name in ("samples.png", "pred_vs_true.png", "delta1_by_depth.png", "datasets.png"):
        assert (out / "pictures" / name).stat().st_size > 5000, name

    start = time.perf_counter()
    again = demo(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert time.perf_counter() - start < 30  # no training, no vLLM start
    assert json.loads((out / "results.json").read_text())["metrics"] == results["metrics"]

    changed = demo(out, "--max-steps", "81")
    assert changed.returncode == 2 and "max_steps" in changed.stderr


def test_the_demo_trains_with_the_tiny_cpu_recipe_config():
    """The demo carries recipes/configs/tiny_cpu.yaml as data (it runs outside a checkout): equal, key by key."""
    from pathlib import Path

    import yaml

    from depthlm.demo import TINY_RECIPE

    config = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "tiny_cpu.yaml"
    assert TINY_RECIPE == yaml.safe_load(config.read_text())


def test_the_demo_runs_the_packaged_recipe_with_no_checkout_paths(tmp_path):
    from depthlm.demo import DemoConfig, recipe_arguments, recipe_flags, train_command

    cfg = DemoConfig(out=str(tmp_path / "demo"))
    cmd = train_command(cfg, tmp_path / "model", tmp_path / "data")
    assert cmd[1:4] == ["-m", "depthlm.cli", "sft"] and "--resume_from_checkpoint" not in cmd
    script_args, training_args, _ = recipe_arguments(recipe_flags(cfg, tmp_path / "model", tmp_path / "data"))
    assert training_args.assistant_only_loss and script_args.f_uni == 150
    assert training_args.resume_from_checkpoint is None  # a rerun resumes from the last checkpoint


def test_the_readme_quotes_a_table_the_demo_prints():
    """The README's demo table has the demo's own layout (header and row labels from depthlm.demo.table),
    so a change of the report's columns cannot leave a stale table behind."""
    import re
    from pathlib import Path

    from depthlm.demo import SPLITS, table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    quoted = re.search(r"```text\n(\|.*?)\n```", readme, re.S).group(1).splitlines()
    per = {n: {"delta1": 0.5, "abs_rel": 0.5, "parse_failure_rate": 0.0, "n": 1} for n in SPLITS}
    ours = table({"model": {"datasets": per}, "median": {"datasets": per}}).splitlines()
    assert quoted[:2] == ours[:2]
    assert [row.split(" | ")[0] for row in quoted[2:]] == [row.split(" | ")[0] for row in ours[2:]]
    numbers = [float(x) for row in quoted[2:] for x in row.strip("| ").split(" | ")[1:]]
    assert len(numbers) == 2 * (2 * len(SPLITS) + 1) and all(x >= 0 for x in numbers)


@pytest.mark.slow
def test_demo_tasks_trains_one_model_on_several_tasks_and_scores_each(tmp_path):
    """`depthlm demo --tasks`: one model, a balanced set per task, each task scored by its own metric
    on exactly the queries it trained on, next to its constant answer, with a picture per task."""
    out = tmp_path / "tasks"
    cmd = [sys.executable, "-m", "depthlm.cli", "demo", "--out", str(out), "--tasks", "depth,closer,motion"]
    cmd += ["--queries-per-task", "6", "--max-steps", "120", "--image-size", "224x168"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith(("| task", "| ---"))
    }
    assert list(rows) == ["depth", "closer", "motion"]
    assert rows["closer"][0] == "accuracy" and rows["depth"][0] == rows["motion"][0] == "delta1"
    for name, (_, model, const, n, fails) in rows.items():
        assert n == "6" and float(fails) == 0, name
        assert float(model) >= 0.9, (name, model, const)  # memorised, every task
    assert "every task at >= 0.9" in done.stdout
    assert (out / "pictures" / "tasks.png").stat().st_size > 5000
    assert "| depth | delta1 |" in (out / "report.md").read_text()
