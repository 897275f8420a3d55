"""Task mixes per record set (issue 13): ``datasets: [{path, weight, tasks}]`` / ``record_set_tasks``.

Ground truth is taken independently of the per-set machinery: a row's set from its record's
image path (each set is its own folder), its task from the question's documented wording
(docs/tasks.md), the default and global-mix rows from the documented rule (rng
``[seed, epoch, slot]`` -> depthlm.render / TaskMix), and the saved model folder from
``depthlm_render.json`` after a real SFT run.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from training_helpers import synthetic_records

from depthlm import tasks
from depthlm.errors import DepthLMError
from depthlm.records import read_records, write_records
from depthlm.settings import RenderSettings
from depthlm.training.config import DataArguments, render_settings
from depthlm.training.data import build_dataset
from depthlm.training.rows import row_record

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "recipes" / "configs" / "tiny_cpu.yaml"
SMALL = dict(f_uni=150, max_pixels=18816, train_crop=False)

# The question of each task, as docs/tasks.md quotes it (the most specific wording first).
QUESTIONS = (
    ("motion", r"How far did the camera move between the first image and the second\?"),
    ("hinted", r"^Points A and B are .* in that order\. How far is the point marked by the red arrow"),
    ("time", r"how many seconds would the camera take to reach the point marked by the red arrow\?"),
    ("closer", r"^Which point is closer to the camera, the one marked A or the one marked B\?"),
    ("distance", r"^How far apart are the points marked A and B, in metres, in the 3D scene\?"),
    ("points", r"^How far from the camera is each of the points marked A, B, C and D\?"),
    ("region", r"^How far from the camera is the \w+ inside the green box\?"),
    ("depth", r"^How far is the point marked by the red arrow from the camera\?$"),
)


def task_of(row: dict) -> str:
    """The task a rendered SFT row asks, read from its question's words (and its image count)."""
    user = row["messages"][0]["content"]
    text = " ".join(p["text"] for p in user if p["type"] == "text" and p.get("text"))
    images = sum(p["type"] == "image" for p in user)
    for name, pattern in QUESTIONS:
        if re.search(pattern, text):
            assert images == (2 if name == "motion" else 1), (name, images)
            return name
    raise AssertionError(f"no task asks {text!r}")


def set_of(source_row: dict, folders: dict[str, Path]) -> str:
    """The set a mixed row came from, by the folder its image lies in."""
    path = Path(source_row["image_path"]).resolve()
    (name,) = [n for n, f in folders.items() if f.resolve() in path.parents]
    return name


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    """Two record sets as ``depthlm build synthetic --depth-map --second-view`` writes them
    (different scenes), and one of plain labelled points with no extras."""
    from data_builders import build

    root = tmp_path_factory.mktemp("task-sets")
    out = {}
    for k, name in enumerate(("indoor", "outdoor")):
        out[name] = root / name
        build(
            "synthetic",
            out=out[name],
            split="train",
            points_per_image=16,
            seed=k,
            progress=False,
            num_images=6,
            image_size=(160, 120),
            focal_range=(150.0, 150.0),
            scene_seed=10 + k,
            depth_map=True,
            second_view=True,
        )
    out["plain"] = synthetic_records(root / "plain", 6, name="plain", size=(160, 120), points=4).parent
    return out


def rows_and_sources(args: DataArguments, *, seed: int = 0, kind: str = "sft"):
    """The rendered training rows of epoch 0 and the mixed record rows they came from, in order."""
    settings = render_settings(args)
    dataset, renderer = build_dataset(args, settings, seed=seed, kind=kind)
    if args.streaming:
        sources = list(renderer.source)
        return list(dataset), sources
    return [dataset[i] for i in range(len(dataset))], [renderer.source[i] for i in range(len(dataset))]


# --- rows follow their own set's mix -----------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
def test_every_row_of_a_set_is_of_that_sets_tasks(sets, streaming):
    folders = {n: sets[n] for n in ("indoor", "outdoor")}
    args = DataArguments(
        datasets=[
            {"path": str(sets["indoor"]), "weight": 1, "tasks": {"depth": 1, "region": 0.5, "time": 1}},
            {"path": str(sets["outdoor"]), "weight": 1, "tasks": "distance=1,closer=1,motion=1"},
        ],
        samples_per_epoch=60,
        streaming=streaming,
        **SMALL,
    )
    rows, sources = rows_and_sources(args)
    assert len(rows) == len(sources) == 60
    seen = collections.Counter((set_of(src, folders), task_of(row)) for row, src in zip(rows, sources))
    indoor = {t for (s, t) in seen if s == "indoor"}
    outdoor = {t for (s, t) in seen if s == "outdoor"}
    assert indoor == {"depth", "region", "time"}, seen
    assert outdoor == {"distance", "closer", "motion"}, seen


def test_proportions_within_a_set_follow_its_weights(sets):
    """About 240 rows per set: the counts fit the set's weights (chi-square p > 1e-3) and are
    far from what equal weights or the other set's mix would give (p < 1e-9), so the test
    cannot pass by chance when the weights are ignored."""
    mixes = {
        "indoor": {"depth": 1.0, "time": 3.0},
        "outdoor": {"distance": 1.0, "motion": 4.0},
    }
    args = DataArguments(
        record_sets=[str(sets["indoor"]), str(sets["outdoor"])],
        mixing_weights=[1.0, 1.0],
        record_set_tasks=["depth=1,time=3", "distance=1,motion=4"],
        samples_per_epoch=480,
        **SMALL,
    )
    rows, sources = rows_and_sources(args, seed=3)
    folders = {n: sets[n] for n in mixes}
    counts = {n: collections.Counter() for n in mixes}
    for row, src in zip(rows, sources):
        counts[set_of(src, folders)][task_of(row)] += 1
    for name, weights in mixes.items():
        got = np.array([counts[name][t] for t in weights])
        assert sum(counts[name].values()) == got.sum() > 150, counts  # no task outside the mix
        expected = np.array(list(weights.values())) / sum(weights.values()) * got.sum()
        assert stats.chisquare(got, expected).pvalue > 1e-3, (name, got, expected)
        equal = np.full(len(got), got.sum() / len(got))
        assert stats.chisquare(got, equal).pvalue < 1e-9, (name, got)


# --- default and global-mix rows are those of before ---------------------------------------------


def _same_rows(rows, wants) -> None:
    for row, want in zip(rows, wants, strict=True):
        assert row["messages"] == want["messages"]
        assert [i.tobytes() for i in row["images"]] == [i.tobytes() for i in want["images"]]


def test_default_rows_follow_the_slot_rule_and_sets_without_own_mixes_change_nothing(sets):
    """No tasks anywhere (or every set '-' / depth alone): the point and view of slot i come from
    rng [seed, 0, i] through depthlm.render, as before per-set mixes existed."""
    from depthlm.render import render_record

    base = dict(record_sets=[str(sets["indoor"]), str(sets["outdoor"])], mixing_weights=[1.0, 2.0])
    args = DataArguments(**base, samples_per_epoch=16, **SMALL)
    rows, sources = rows_and_sources(args, seed=7)
    settings = render_settings(args)
    assert settings.tasks is None
    wants = []
    for slot, src in enumerate(sources):
        record, _ = row_record(src)
        rng = np.random.default_rng([7, 0, slot])
        wants.append(render_record(record, int(rng.integers(len(record))), settings, rng=rng).sft_example())
    _same_rows(rows, wants)
    for set_tasks in (["-", "-"], ["depth=1", None]):
        same = DataArguments(**base, record_set_tasks=set_tasks, samples_per_epoch=16, **SMALL)
        assert same.set_task_mixes() is None and render_settings(same).tasks is None
        again, again_sources = rows_and_sources(same, seed=7)
        assert [s["id"] for s in again_sources] == [s["id"] for s in sources]
        _same_rows(again, wants)


def test_global_mix_rows_follow_the_slot_rule_and_an_equal_per_set_mix_changes_nothing(sets):
    from depthlm.tasks.mix import TaskMix

    base = dict(record_sets=[str(sets["indoor"]), str(sets["outdoor"])], samples_per_epoch=16, **SMALL)
    args = DataArguments(**base, tasks="all")
    rows, sources = rows_and_sources(args, seed=2)
    settings = render_settings(args)
    wants = []
    for slot, src in enumerate(sources):
        record, _ = row_record(src)
        query = TaskMix("all").query(record, settings, np.random.default_rng([2, 0, slot]), train=True)
        wants.append(query.sft_example())
    _same_rows(rows, wants)
    assert len({task_of(r) for r in rows}) >= 4
    same = DataArguments(**base, tasks="all", record_set_tasks=["all", "-"])
    assert same.set_task_mixes() is None and render_settings(same) == settings
    again, _ = rows_and_sources(same, seed=2)
    _same_rows(again, wants)


# --- GRPO rows, validation, skipped records --------------------------------------------------------


def test_grpo_rows_of_per_set_mixes_all_carry_task_and_truth(sets):
    """A set on the default (depth) next to a set with its own mix: every GRPO row has the task
    reward's columns, and the depth rows' truth is their depth."""
    args = DataArguments(
        record_sets=[str(sets["indoor"]), str(sets["outdoor"])],
        record_set_tasks=["-", "distance=1"],
        samples_per_epoch=12,
        **SMALL,
    )
    rows, sources = rows_and_sources(args, kind="grpo")
    folders = {n: sets[n] for n in ("indoor", "outdoor")}
    for row, src in zip(rows, sources):
        assert row["task"] == {"indoor": "depth", "outdoor": "distance"}[set_of(src, folders)]
        assert row["depth"] == pytest.approx(json.loads(row["truth"]))


def test_bad_per_set_mixes_are_one_clear_line_naming_the_set():
    two = ["a.jsonl", "b.jsonl"]
    with pytest.raises(DepthLMError, match=r"record set 1 \(b.jsonl\): unknown task 'nope'; known: depth"):
        DataArguments(record_sets=two, record_set_tasks=["-", "depth=1,nope=1"])
    with pytest.raises(DepthLMError, match=r"record set 0 \(a.jsonl\): task 'time': weight must be >= 0"):
        DataArguments(datasets=[{"path": "a.jsonl", "tasks": {"time": -1, "depth": 1}}, {"path": "b.jsonl"}])
    with pytest.raises(DepthLMError, match="1 record_set_tasks for 2 record_sets"):
        DataArguments(record_sets=two, record_set_tasks=["depth"])
    with pytest.raises(DepthLMError, match=r"record set 0 \(a.jsonl\): tasks must be a mapping"):
        DataArguments(record_sets=two, record_set_tasks=[5, "-"])
    with pytest.raises(DepthLMError, match=r"record set 1 \(b.jsonl\): the task mix has no task"):
        DataArguments(record_sets=two, record_set_tasks=["-", {"depth": 0}])
    with pytest.raises(DepthLMError, match=r"^tasks: unknown task 'nope'"):
        DataArguments(record_sets=two, record_set_tasks=["-", "depth"], tasks="nope")


def test_a_set_no_record_of_which_can_serve_its_mix_is_an_error_with_the_reasons(sets):
    args = DataArguments(
        record_sets=[str(sets["indoor"]), str(sets["plain"])],
        record_set_tasks=["-", "motion=1,region=1"],
        **SMALL,
    )
    with pytest.raises(DepthLMError) as err:
        build_dataset(args, render_settings(args))
    msg = str(err.value)
    assert msg.startswith(f"{sets['plain']}: no record can serve its task mix motion, region (6 records; ")
    assert "motion: needs extras pair (6)" in msg and "region: needs extras objects, masks (6)" in msg


def test_records_a_sets_mix_cannot_use_are_counted_listed_and_left_out(sets, tmp_path, caplog):
    """Half the records lose their second view: a motion-only set keeps the other half, says how
    many it left out and why, and never renders one of them."""
    folder = tmp_path / "half"
    shutil.copytree(sets["indoor"], folder)
    records = read_records(folder)
    for rec in records[::2]:
        del rec.extras["pair"]
    for f in folder.glob("*.jsonl"):
        f.unlink()
    write_records(folder / "records.jsonl", records)
    kept = {r.id for r in records[1::2]}
    args = DataArguments(
        record_sets=[str(sets["outdoor"]), str(folder)],
        record_set_tasks=["depth", "motion"],
        mixing_weights=[1, 1],
        samples_per_epoch=24,
        **SMALL,
    )
    with caplog.at_level(logging.WARNING, logger="depthlm.training.data"):
        rows, sources = rows_and_sources(args)
    assert f"{folder}: 3 of 6 records left out: no task of its mix (motion) can use them" in caplog.text
    assert "motion: needs extras pair (3)" in caplog.text
    from_half = [
        (row, src) for row, src in zip(rows, sources) if Path(src["image_path"]).is_relative_to(folder)
    ]
    assert from_half and {src["id"] for _, src in from_half} <= kept
    assert {task_of(row) for row, _ in from_half} == {"motion"}


# --- the recipe: YAML, flags, the saved model folder -------------------------------------------------


def test_the_cli_flags_pair_one_mix_with_each_record_set(tiny_model_dir, tmp_path):
    from depthlm.recipes import sft

    data, _, _ = sft.make_parser().parse_args_and_config(
        ["--config", str(CONFIG), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path),
         "--record_sets", "a", "b", "c", "--record_set_tasks", "depth=1,region=0.5", "-", "all",
         "--tasks", "time"]
    )  # fmt: skip
    assert data.set_task_mixes() == [
        {"depth": 1.0, "region": 0.5},
        {"time": 1.0},
        dict.fromkeys(tasks.names(), 1.0),
    ]
    assert render_settings(data).tasks == dict.fromkeys(tasks.names(), 1.0)


def test_the_example_config_parses_to_per_set_mixes():
    from depthlm.recipes import sft

    data, _, _ = sft.make_parser().parse_args_and_config(
        ["--config", str(REPO / "recipes" / "configs" / "tiny_cpu_task_sets.yaml")]
    )
    mixes = data.set_task_mixes()
    assert mixes is not None and len(mixes) == len(data.record_sets) == len(data.mixing_weights) >= 2
    assert render_settings(data).task_names == [
        n for n in tasks.names() if any(n in (m or {}) for m in mixes)
    ]


@pytest.mark.slow
def test_an_sft_run_with_per_set_mixes_in_yaml_records_their_union(sets, tiny_model_dir, tmp_path):
    """The real recipe from a YAML ``datasets:`` list with a mix per set trains, and its model folder
    records the union of the sets' tasks, which is what ask/chat offer (and refuse beyond)."""
    from depthlm.ask import check_task, offered_tasks
    from depthlm.recipes import sft

    text = CONFIG.read_text().replace("record_sets:\n  - runs/synthetic/train.jsonl\n", "")
    text += (
        "datasets:\n"
        f"  - path: {sets['indoor']}\n    weight: 1.0\n    tasks: {{depth: 1.0, region: 0.5}}\n"
        f"  - path: {sets['outdoor']}\n    weight: 2.0\n    tasks: {{distance: 1.0, motion: 0.3}}\n"
    )
    config = tmp_path / "sets.yaml"
    config.write_text(text)
    out = tmp_path / "run"
    args = sft.make_parser().parse_args_and_config(
        ["--config", str(config), "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out),
         "--report_to", "none", "--max_steps", "2", "--per_device_train_batch_size", "4",
         "--samples_per_epoch", "8", "--save_strategy", "no", "--log_samples", "0"]
    )  # fmt: skip
    assert args[0].record_sets == [str(sets["indoor"]), str(sets["outdoor"])]
    assert args[0].mixing_weights == [1.0, 2.0]
    trainer = sft.build_trainer(*args)
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] != -100).any()
    sft.train(trainer)
    assert trainer.state.global_step == 2
    saved = json.loads((out / "depthlm_render.json").read_text())
    assert saved["tasks"] == {"depth": 1.0, "distance": 1.0, "region": 0.5, "motion": 0.3}
    settings = RenderSettings.load(out)
    assert offered_tasks(settings) == ["depth", "distance", "region", "motion"]
    check_task("motion", settings)
    with pytest.raises(DepthLMError, match="points"):
        check_task("points", settings)


@pytest.mark.slow
def test_the_grpo_recipe_trains_per_set_mixes_with_the_task_reward(
    sets, tiny_model_dir, tmp_path, monkeypatch
):
    """GRPO takes the same per-set mixes: the task reward sees only the sets' tasks, one per group."""
    from depthlm.recipes import grpo
    from depthlm.rewards import REWARDS

    seen = []

    def recording(completions, **columns):
        seen.extend(columns["task"])
        return REWARDS["task"](completions, **columns)

    monkeypatch.setitem(REWARDS, "recording", recording)
    args = grpo.make_parser().parse_args_and_config(
        ["--config", str(REPO / "recipes" / "configs" / "tiny_cpu_grpo.yaml"), "--report_to", "none",
         "--model_name_or_path", str(tiny_model_dir), "--record_sets", str(sets["indoor"]), str(sets["outdoor"]),
         "--record_set_tasks", "time", "closer=1,motion=1", "--samples_per_epoch", "16",
         "--output_dir", str(tmp_path / "grpo"), "--max_steps", "2", "--per_device_train_batch_size", "8",
         "--num_generations", "4", "--max_completion_length", "12", "--save_strategy", "no",
         "--use_vllm", "false", "--reward_funcs", "recording", "--reward_weights", "1.0", "--log_samples", "0"]
    )  # fmt: skip
    trainer = grpo.main(*args)
    assert trainer.state.global_step == 2 and len(seen) == 16
    assert set(seen) <= {"time", "closer", "motion"}
    assert all(len(set(seen[g : g + 4])) == 1 for g in range(0, 16, 4))  # a group shares its prompt
    assert RenderSettings.load(tmp_path / "grpo").task_names == ["closer", "time", "motion"]


def test_a_drawn_task_that_finds_nothing_to_ask_falls_back_and_says_so(tmp_path, caplog):
    """distance needs two points far enough apart; a record whose points sit side by side cannot
    give one, so the mix draws depth instead -- logged once per reason, and each time in the log."""
    from PIL import Image

    from depthlm.geometry import Intrinsics
    from depthlm.records import Record
    from depthlm.training.data import SampleRenderer

    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "a.png")
    k = Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48)
    rec = Record(
        str(tmp_path / "a.png"),
        k,
        np.array([[30.0, 20.0], [31.0, 20.0]]),
        np.array([2.0, 2.1]),
        depth_type="z",
        id="tight",
    )
    settings = RenderSettings(f_uni=60, marker_size=9, tasks={"distance": 1.0, "depth": 1e-6})
    renderer = SampleRenderer(settings, seed=0, sample_log_dir=tmp_path / "log")
    with caplog.at_level(logging.WARNING, logger="depthlm.training.data"):
        entries = [renderer.render(rec, (i,))[1]["log"] for i in range(5)]
    assert [e["task"] for e in entries] == ["depth"] * 5
    assert all(list(e["skipped"]) == ["distance"] for e in entries)
    warned = [r for r in caplog.records if "task distance found nothing to ask" in r.getMessage()]
    assert len(warned) == 1
