"""The task registry through the whole kit: builder extras, the SFT recipe on a task mix, GRPO rows,
evaluation per task (sharded and merged), the leaderboard's task columns, and asking every task.

Fast tests check the wiring against independently computed outcomes (the synthetic builder's
depth map and second-view pose against the scene's own geometry; default rows against
depthlm.render; shards against one run); the slow test trains the tiny model through the real
recipe (``sft.build_trainer``) and evaluates and asks it with the transformers backend.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlm import tasks
from depthlm.errors import DepthLMError
from depthlm.records import read_records
from depthlm.settings import RenderSettings

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "recipes" / "configs" / "tiny_cpu.yaml"
SETTINGS = RenderSettings(f_uni=150, max_pixels=18816, train_crop=False)


@pytest.fixture(scope="module")
def task_data(tmp_path_factory) -> Path:
    """Six synthetic scenes as ``depthlm build synthetic`` writes them with every task's extras."""
    from training_helpers import task_scenes

    return task_scenes(tmp_path_factory.mktemp("task-data") / "synth", "train")


# --- builder ------------------------------------------------------------------------------


def test_synthetic_extras_hold_the_scenes_exact_depth_and_second_camera_pose(task_data):
    """depth_map is the scene's z-depth in mm; pair.translation_m moves a 3D point of the first view
    to where the second view sees it at the depth the second view's own ray-cast gives."""
    from depthlm.geometry import unproject
    from depthlm.tasks.extras import read_depth_map, read_pair

    recs = read_records(task_data)
    assert len(recs) == 6
    for rec in recs:
        assert set(rec.extras) >= {"objects", "masks", "depth_map", "pair"}
        dense = read_depth_map(rec)
        ix = np.round(rec.points).astype(int)
        np.testing.assert_allclose(dense[ix[:, 1], ix[:, 0]], rec.depths, atol=6e-4)  # mm rounding
        pair = read_pair(rec)
        second = np.asarray(Image.open(pair.image).convert("RGB"))
        assert second.shape[:2] == (rec.intrinsics.height, rec.intrinsics.width)
        assert 0.2 <= np.linalg.norm(pair.translation) <= 1.5
        # a labelled point, seen from the moved camera (rotation identity): X2 = X1 - t
        xyz = unproject(rec.points, rec.depths, rec.intrinsics, "z") - np.asarray(pair.translation)
        k = pair.intrinsics
        u, v = k.fx * xyz[:, 0] / xyz[:, 2] + k.cx, k.fy * xyz[:, 1] / xyz[:, 2] + k.cy
        ok = (xyz[:, 2] > 0.3) & (u > 2) & (u < k.width - 3) & (v > 2) & (v < k.height - 3)
        assert ok.sum() >= 3
        # the second view's ray-cast depth there is that point's z unless something hides it
        second_depth = _second_depth(rec)
        seen = second_depth[np.round(v[ok]).astype(int), np.round(u[ok]).astype(int)]
        close = np.abs(seen - xyz[ok, 2]) < 0.05 * xyz[ok, 2]
        assert close.mean() >= 0.5, (seen, xyz[ok, 2])


def _second_depth(rec) -> np.ndarray:
    """The second view's z-depth, ray-cast again from the scene the builder drew (same seeds)."""
    from data_builders.scenes import moved_view, sample_scene

    key = int(Path(rec.image).stem)
    seed = int(np.random.SeedSequence([3, 0, key]).generate_state(1)[0])
    spec = sample_scene(np.random.default_rng(seed), (160, 120), (150.0, 150.0), "default")
    second, _ = moved_view(spec, np.random.default_rng([seed, 2]))
    return second.depth


def test_without_the_new_flags_the_synthetic_build_writes_what_it_wrote_before(tmp_path):
    from data_builders import build

    build("synthetic", out=tmp_path / "s", split="train", progress=False, num_images=2, image_size=(64, 48))
    rec = read_records(tmp_path / "s")[0]
    assert set(rec.extras) == {"masks", "objects"}
    assert sorted(p.name for p in (tmp_path / "s" / "images").iterdir()) == [
        "000000-masks.png",
        "000000.png",
        "000001-masks.png",
        "000001.png",
    ]


# --- training rows --------------------------------------------------------------------------


def test_default_training_rows_are_the_depth_rows_of_before(task_data):
    """tasks unset (or depth alone): the same rng draws the same point and view as depthlm.render."""
    from depthlm.render import render_record
    from depthlm.training.data import SampleRenderer

    rec = read_records(task_data)[1]
    for settings in (SETTINGS, SETTINGS.with_(tasks={"depth": 1.0})):
        assert settings.tasks is None and "tasks" not in settings.to_dict()
        renderer = SampleRenderer(settings, seed=5)
        query, out = renderer.render(rec, (7,))
        rng = np.random.default_rng([5, 0, 7])
        want = render_record(rec, int(rng.integers(len(rec))), settings, rng=rng)
        assert out["row"]["messages"] == want.sft_example()["messages"]
        assert query.image.tobytes() == want.image.tobytes()
        assert "task" not in out["log"]


def test_a_task_mix_draws_tasks_by_the_samples_key_and_renders_every_task(task_data):
    from depthlm.training.data import SampleRenderer

    recs = read_records(task_data)
    settings = SETTINGS.with_(tasks="all")
    renderer = SampleRenderer(settings, seed=0)
    seen = {}
    for slot in range(64):
        query, out = renderer.render(recs[slot % len(recs)], (slot,))
        again, _ = SampleRenderer(settings, seed=0).render(recs[slot % len(recs)], (slot,))
        assert again.question == query.question and again.answer == query.answer  # resume, ranks
        assert out["log"]["task"] == query.task
        assert out["row"]["messages"][-1]["content"][0]["text"] == query.answer
        assert sum(p["type"] == "image" for p in out["row"]["messages"][0]["content"]) == len(query.images)
        seen[query.task] = seen.get(query.task, 0) + 1
    assert set(seen) == set(tasks.names())
    assert RenderSettings.from_dict(settings.to_dict()) == settings
    assert settings.to_dict()["tasks"] == dict.fromkeys(tasks.names(), 1.0)


def test_grpo_rows_of_a_mix_carry_task_and_truth_for_the_task_reward(task_data):
    from depthlm.rewards import REWARDS
    from depthlm.training.data import SampleRenderer

    recs = read_records(task_data)
    renderer = SampleRenderer(SETTINGS.with_(tasks="all"), kind="grpo", seed=0)
    rows, answers = [], []
    for slot in range(24):
        query, out = renderer.render(recs[slot % len(recs)], (slot,))
        rows.append(out["row"])
        answers.append(query.answer)
    reward = REWARDS["task"]
    scores = reward(
        [[{"role": "assistant", "content": a}] for a in answers],
        task=[r["task"] for r in rows],
        truth=[r["truth"] for r in rows],
    )
    assert scores == pytest.approx([1.0] * len(rows), abs=0.01)  # the right answer earns the full reward
    for r in rows:
        t = json.loads(r["truth"])
        assert (r["depth"] == pytest.approx(t)) if isinstance(t, float) else math.isnan(r["depth"])


def test_the_recipe_config_takes_a_task_mix_from_yaml_or_flags(tiny_model_dir, tmp_path):
    from depthlm.recipes import sft
    from depthlm.training.config import render_settings

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(CONFIG.read_text() + "\ntasks:\n  depth: 1.0\n  distance: 0.3\n")
    base = ["--model_name_or_path", str(tiny_model_dir), "--record_sets", "x", "--output_dir", str(tmp_path)]
    data, _, _ = sft.make_parser().parse_args_and_config(["--config", str(yaml_file), *base])
    assert render_settings(data).tasks == {"depth": 1.0, "distance": 0.3}
    data, _, _ = sft.make_parser().parse_args_and_config(
        ["--config", str(CONFIG), *base, "--tasks", "closer"]
    )
    assert render_settings(data).tasks == {"closer": 1.0}
    data, _, _ = sft.make_parser().parse_args_and_config(["--config", str(CONFIG), *base])
    assert render_settings(data).tasks is None
    with pytest.raises(DepthLMError, match="unknown task 'nope'"):
        RenderSettings(tasks="nope")


# --- evaluation -----------------------------------------------------------------------------


def _constant_eval(data, out, **kw):
    from depthlm.evaluation import evaluate, load_datasets
    from depthlm.inference import ConstantBackend

    backend = ConstantBackend(2.0, SETTINGS)
    return evaluate(
        backend, load_datasets([f"s={data}"]), out, plots=False, progress=False, chunk_size=5, **kw
    )


def test_eval_scores_every_task_per_dataset_and_shards_merge_to_the_same_run(task_data, tmp_path):
    from depthlm.evaluation import merge_shards

    names = tasks.names()
    whole = _constant_eval(task_data, tmp_path / "whole", tasks=names, points_per_image=2)
    assert list(whole["tasks"]) == names
    for name, t in whole["tasks"].items():
        assert t["metric"] == tasks.get(name).metric_names[0]
        assert t["datasets"]["s"]["n"] >= 1
    # the constant 2 m for closer answers "A": its accuracy is the share of A truths, counted here
    rows = [json.loads(x) for x in (tmp_path / "whole" / "predictions.jsonl").read_text().splitlines()]
    closer = [r for r in rows if r.get("task") == "closer" and "skipped" not in r]
    assert whole["tasks"]["closer"]["average"]["accuracy"] == pytest.approx(
        sum(r["gt"] == "A" for r in closer) / len(closer)
    )
    for i in range(2):
        _constant_eval(task_data, tmp_path / "split", tasks=names, points_per_image=2, shard=(i, 2))
    merged = merge_shards(tmp_path / "split", plots=False)
    assert json.dumps(merged["tasks"], sort_keys=True) == json.dumps(whole["tasks"], sort_keys=True)


def test_eval_task_queries_come_from_content_not_order_or_names(task_data, tmp_path):
    from depthlm.records import write_records

    recs = read_records(task_data)
    write_records(tmp_path / "reversed.jsonl", list(reversed(recs)))
    a = _constant_eval(task_data, tmp_path / "a", tasks=["distance", "time"], max_queries=3)
    b = _constant_eval(tmp_path / "reversed.jsonl", tmp_path / "b", tasks=["distance", "time"], max_queries=3)
    assert json.dumps(a["tasks"], sort_keys=True) == json.dumps(b["tasks"], sort_keys=True)
    assert a["tasks"]["time"]["average"]["n"] == 3


def test_default_eval_writes_no_task_keys(task_data, tmp_path):
    m = _constant_eval(task_data, tmp_path / "d")
    assert "tasks" not in m
    assert "tasks" not in json.loads((tmp_path / "d" / "run.json").read_text())


def test_leaderboard_shows_a_column_per_task(task_data, tmp_path):
    from depthlm.leaderboard import build, to_markdown

    _constant_eval(task_data, tmp_path / "r", tasks=["depth", "closer", "distance"])
    columns, rows = build([str(tmp_path / "r")], references=False)
    assert columns == ["s", "task:distance", "task:closer"]
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert rows[0].tasks["closer"] == m["tasks"]["closer"]["average"]["accuracy"]
    assert "task:closer" in to_markdown(columns, rows).splitlines()[0]


def test_eval_command_takes_tasks_from_flag_and_config(task_data, tmp_path, capsys):
    from depthlm.cli import main

    cfg = tmp_path / "bench.yaml"
    cfg.write_text(f"name: t\ndatasets:\n  - name: s\n    path: {task_data}\ntasks: [depth, closer]\n")
    assert (
        main(
            [
                "eval",
                "--model",
                "constant:2",
                "--config",
                str(cfg),
                "--out",
                str(tmp_path / "c"),
                "--no-plots",
            ]
        )
        == 0
    )
    assert list(json.loads((tmp_path / "c" / "metrics.json").read_text())["tasks"]) == ["depth", "closer"]
    bad = [
        "eval",
        "--model",
        "constant:2",
        "--data",
        str(task_data),
        "--tasks",
        "nope",
        "--out",
        str(tmp_path / "x"),
    ]
    assert main(bad) != 0
    assert "unknown task 'nope'; known: depth, points" in capsys.readouterr().err


# --- asking ---------------------------------------------------------------------------------


def test_ask_builds_every_task_from_the_users_picks(task_data):
    from depthlm.ask import task_query

    rec = read_records(task_data)[0]
    image, k = Image.open(rec.image).convert("RGB"), rec.intrinsics
    picks = {
        "depth": {"points": [(80, 60)]},
        "points": {"points": [(30, 30), (120, 90), (80, 60)]},
        "distance": {"points": [(30, 30), (120, 90)]},
        "closer": {"points": [(30, 30), (120, 90)]},
        "region": {"box": (40, 30, 100, 80), "name": "chair"},
        "hinted": {"known": [((30, 30), 2.0)], "points": [(120, 90)]},
        "time": {"points": [(80, 60)], "speed": 1.5},
        "motion": {"second": rec.extras["pair"]["image"]},
    }
    for name in tasks.names():
        pick = dict(picks[name])
        if name == "motion":
            pick["second"] = str(task_data / pick["second"])
        q = task_query(name, image, k, SETTINGS, **pick)
        assert q.task == name and q.truth is None and q.answer is None
        assert len(q.images) == (2 if name == "motion" else 1)
    with pytest.raises(DepthLMError, match="two|2 point"):
        task_query("distance", image, k, SETTINGS, points=[(1, 1)])
    with pytest.raises(DepthLMError, match="--box"):
        task_query("region", image, k, SETTINGS)


def test_ask_refuses_a_task_the_model_was_not_trained_on():
    from depthlm.ask import check_task

    check_task("depth", RenderSettings())
    with pytest.raises(DepthLMError, match="trained on depth, not distance"):
        check_task("distance", RenderSettings())
    check_task("distance", RenderSettings(tasks="depth,distance"))


# --- end to end on the tiny model -----------------------------------------------------------


@pytest.mark.slow
def test_tiny_model_trains_on_a_task_mix_then_evaluates_and_answers_every_task(
    tiny_model_dir, task_data, tmp_path
):
    """The real SFT recipe on all eight tasks (a few steps), the folder records the mix, the
    transformers backend evaluates every task (per-task metrics, answers parsed or counted as
    failures) and answers one chat question per task."""
    from depthlm.ask import ask_task, offered_tasks
    from depthlm.evaluation import evaluate, load_datasets
    from depthlm.inference import make_backend
    from depthlm.recipes import sft

    out = tmp_path / "run"
    args = sft.make_parser().parse_args_and_config(
        [
            "--config",
            str(CONFIG),
            "--model_name_or_path",
            str(tiny_model_dir),
            "--record_sets",
            str(task_data),
            "--output_dir",
            str(out),
            "--report_to",
            "none",
            "--tasks",
            "all",
            "--max_steps",
            "3",
            "--per_device_train_batch_size",
            "4",
            "--samples_per_epoch",
            "12",
            "--save_steps",
            "100",
            "--log_samples",
            "0",
        ]
    )
    trainer = sft.build_trainer(*args)
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] != -100).any()
    sft.train(trainer)
    settings = RenderSettings.load(out)
    assert offered_tasks(settings) == tasks.names()
    backend = make_backend("transformers", str(out), settings)
    try:
        m = evaluate(
            backend,
            load_datasets([f"s={task_data}"]),
            tmp_path / "eval",
            tasks=tasks.names(),
            max_queries=2,
            plots=False,
            progress=False,
            max_tokens=12,
        )
        for name in tasks.names():
            assert m["tasks"][name]["average"]["n"] >= 1
        rec = read_records(task_data)[0]
        image = Image.open(rec.image).convert("RGB")
        for name, pick in {
            "distance": {"points": [(30, 30), (120, 90)]},
            "motion": {"second": str(task_data / rec.extras["pair"]["image"])},
            "closer": {"points": [(30, 30), (120, 90)]},
        }.items():
            answer = ask_task(backend, name, image, rec.intrinsics, settings, max_tokens=12, **pick)
            assert isinstance(answer.text, str) and answer.lines()
    finally:
        backend.close()


def test_chat_asks_the_tasks_the_model_was_trained_on_and_refuses_others(task_data):
    from depthlm.ask import load_photo
    from depthlm.commands.chat import Session
    from depthlm.inference import ConstantBackend
    from depthlm.intrinsics_guess import guess_camera

    rec = read_records(task_data)[0]
    photo = load_photo(rec.image)
    camera = guess_camera(photo.size, fov=60)
    for settings, want in (
        (SETTINGS.with_(tasks="depth,distance,closer,time"), "distance: 2.00 m"),
        (SETTINGS, "error: this model was trained on depth, not distance"),
    ):
        lines: list[str] = []
        session = Session(ConstantBackend(2.0, settings), settings, photo, camera, out=lines.append)
        for line in ("point 30,30", "point 120,90", "tasks", "task distance A B"):
            session.handle(line)
        assert any(want in line for line in lines), lines
    session.handle("task closer A B")
    session.handle("task time A 2.0")
    assert lines[-1].startswith("error")  # the depth-only model refuses these too
    lines.clear()
    session = Session(
        ConstantBackend(2.0, settings := SETTINGS.with_(tasks="all")),
        settings,
        photo,
        camera,
        out=lines.append,
    )
    for line in ("point 30,30", "point 120,90", "task closer A B", "task time A 2.0", "task hinted A=1.5 B"):
        session.handle(line)
    assert "closer: point A" in "\n".join(lines) and "time: 2.00 s" in "\n".join(lines)
    assert not any(line.startswith("error") for line in lines), lines


def test_the_apps_clicks_become_each_tasks_picks(task_data):
    from depthlm.app import task_picks
    from depthlm.ask import ask_task
    from depthlm.inference import ConstantBackend

    clicks = [(30.0, 30.0), (120.0, 90.0), (80.0, 60.0)]
    assert task_picks("region", clicks[:2], "chair") == {"box": [30.0, 30.0, 120.0, 90.0], "name": "chair"}
    assert task_picks("hinted", clicks, "A=2.0 B=3") == {
        "known": [((30.0, 30.0), 2.0), ((120.0, 90.0), 3.0)],
        "points": [(80.0, 60.0)],
    }
    assert task_picks("time", clicks, "1.4") == {"points": [(80.0, 60.0)], "speed": 1.4}
    assert task_picks("distance", clicks, "") == {"points": clicks[1:]}
    with pytest.raises(DepthLMError, match="speed"):
        task_picks("time", clicks, "fast")
    rec = read_records(task_data)[0]
    image = Image.open(rec.image).convert("RGB")
    settings = SETTINGS.with_(tasks="all")
    backend = ConstantBackend(2.0, settings)
    for name in ("points", "distance", "closer", "region", "hinted", "time", "depth"):
        picks = task_picks(name, clicks, {"region": "chair", "hinted": "A=2.0", "time": "1.0"}.get(name, ""))
        answer = ask_task(backend, name, image, rec.intrinsics, settings, **picks)
        assert answer.value is not None, (name, answer.text)


@pytest.mark.slow
def test_grpo_recipe_trains_a_task_mix_with_the_task_reward(tiny_model_dir, task_data, tmp_path, monkeypatch):
    """GRPO on all tasks: the task reward sees each row's own task and truth (a group shares both)."""
    from depthlm.recipes import grpo
    from depthlm.rewards import REWARDS

    seen = []

    def recording(completions, **columns):
        seen.append((columns["task"], columns["truth"]))
        return REWARDS["task"](completions, **columns)

    monkeypatch.setitem(REWARDS, "recording", recording)
    args = grpo.make_parser().parse_args_and_config(
        ["--config", str(REPO / "recipes" / "configs" / "tiny_cpu_grpo.yaml"), "--report_to", "none",
         "--model_name_or_path", str(tiny_model_dir), "--record_sets", str(task_data),
         "--output_dir", str(tmp_path / "grpo"), "--max_steps", "2", "--per_device_train_batch_size", "8",
         "--num_generations", "4", "--max_completion_length", "12", "--save_strategy", "no",
         "--use_vllm", "false", "--tasks", "all", "--reward_funcs", "recording", "--reward_weights", "1.0"]
    )  # fmt: skip
    trainer = grpo.main(*args)
    assert trainer.state.global_step == 2 and len(seen) == 2
    for task, truth in seen:
        assert set(task) <= set(tasks.names()) and len(task) == 8
        for g in range(0, 8, 4):
            assert len(set(task[g : g + 4])) == 1 and len(set(truth[g : g + 4])) == 1


def test_the_ask_and_eval_task_commands_in_the_docs_parse():
    """Every `depthlm ask --task` / `depthlm eval ... --tasks` line of docs/tasks.md and ask's help
    parses, and names a known task."""
    import argparse
    import re
    import shlex

    from depthlm.commands import ask as ask_cmd
    from depthlm.commands import eval as eval_cmd

    text = (REPO / "docs" / "tasks.md").read_text() + ask_cmd.__doc__
    lines = [re.sub(r"\s+#.*$", "", line.strip()) for line in re.sub(r"\\\n\s*", " ", text).splitlines()]
    asks = [shlex.split(line)[2:] for line in lines if line.startswith("depthlm ask ") and "--task " in line]
    evals = [
        shlex.split(line)[2:] for line in lines if line.startswith("depthlm eval ") and "--tasks" in line
    ]
    assert len(asks) >= 8 and evals
    for argv in asks:
        parser = argparse.ArgumentParser(prog="depthlm ask", exit_on_error=False)
        ask_cmd.add_arguments(parser)
        assert parser.parse_args(argv).task in tasks.names(), argv
    for argv in evals:
        parser = argparse.ArgumentParser(prog="depthlm eval", exit_on_error=False)
        eval_cmd.add_arguments(parser)
        assert eval_cmd.eval_tasks(parser.parse_args(argv).tasks), argv


def test_generation_length_covers_the_longest_task_answer_in_tokens(task_data, tiny_model_dir):
    """A 4-label points answer is shorter in characters than the depth sentence but longer in the
    tiny tokenizer's tokens: the bound must be taken in tokens (it cut the fourth line before)."""
    from depthlm.inference import default_max_tokens
    from depthlm.models import load_processor

    tokenizer = load_processor(tiny_model_dir).tokenizer
    rec = read_records(task_data)[0]
    q = tasks.get("points").query(rec, SETTINGS, np.random.default_rng(0))
    longest = tasks.get("points").answer_text(q, 9999.99)
    need = len(tokenizer(longest, add_special_tokens=False)["input_ids"])
    assert default_max_tokens(SETTINGS, tokenizer, queries=[q]) >= need + 1
    assert default_max_tokens(SETTINGS, tokenizer) == default_max_tokens(SETTINGS, tokenizer, queries=[])
