"""Training data through `datasets`: mixing by interleave_datasets, per-epoch randomness, slot keys,
per-line rejects, parquet sets, streaming (about 10 s)."""

from __future__ import annotations

import collections
import json
import os
import shutil

import numpy as np
import pytest
from training_helpers import synthetic_records

from depthlm.errors import DepthLMError
from depthlm.settings import RenderSettings
from depthlm.training.callbacks import EpochCallback
from depthlm.training.config import DataArguments, render_settings
from depthlm.training.data import build_dataset

SMALL = dict(f_uni=150, crop_width=[1.0, 1.3], crop_height=[0.7, 1.0], max_pixels=12 * 28 * 28)


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    return (
        str(synthetic_records(folder, 12, name="indoor", seed=0)),
        str(synthetic_records(folder, 4, name="outdoor", seed=1)),
    )


def test_mixing_weights_are_interleave_probabilities_and_small_sets_cycle(two_sets):
    """A weight is the probability of drawing a sample from a set (datasets.interleave_datasets);
    a set drawn more often than its size is cycled evenly, a larger one sub-sampled without repeats."""
    args = DataArguments(
        record_sets=list(two_sets), mixing_weights=[1.0, 3.0], samples_per_epoch=400, **SMALL
    )
    _, renderer = build_dataset(args, render_settings(args, grid=28), seed=0)
    rows = renderer.source
    assert len(rows) == 400 and rows["slot"] == list(range(400))
    names = collections.Counter(rows["dataset"])
    assert abs(names["outdoor"] - 300) < 40  # binomial(400, 0.75): sd 8.7
    for name, size in (("indoor", 12), ("outdoor", 4)):
        ids = collections.Counter(i for i, d in zip(rows["id"], rows["dataset"]) if d == name)
        assert len(ids) == size and max(ids.values()) - min(ids.values()) <= 1
    _, r_again = build_dataset(args, render_settings(args, grid=28), seed=0)
    _, r_other = build_dataset(args, render_settings(args, grid=28), seed=1)
    assert r_again.source["id"] == rows["id"] and r_other.source["id"] != rows["id"]
    # no weights: one pass over every record
    default = DataArguments(record_sets=list(two_sets), **SMALL)
    _, renderer = build_dataset(default, render_settings(default, grid=28))
    assert len(renderer.source) == 16 and len(set(renderer.source["id"])) == 16


def test_epochs_redraw_crops_and_points_and_slots_are_reproducible(two_sets):
    args = DataArguments(record_sets=list(two_sets), **SMALL)
    settings = render_settings(args, grid=28)
    ds, renderer = build_dataset(args, settings, seed=7)
    first = [ds[i] for i in range(len(ds))]
    again = [ds[i] for i in range(len(ds))]
    renderer.epoch = 1
    second = [ds[i] for i in range(len(ds))]

    def key(row):
        return (row["images"][0].tobytes(), row["messages"][-1]["content"][0]["text"])

    assert [key(r) for r in first] == [key(r) for r in again]  # a slot renders the same in the same epoch
    changed = sum(key(a) != key(b) for a, b in zip(first, second))
    assert changed >= len(first) - 2  # a new epoch draws new records/points/crops
    for row in first:
        w, h = row["images"][0].size
        assert w % 28 == 0 and h % 28 == 0 and w * h <= SMALL["max_pixels"]
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]


def test_epoch_callback_sets_the_renderer_epoch(two_sets):
    from transformers import TrainingArguments

    args = DataArguments(record_sets=list(two_sets), **SMALL)
    _, renderer = build_dataset(args, render_settings(args, grid=28))
    cb = EpochCallback(renderer)

    class State:
        epoch = 2.5000000001  # resumed in the middle of epoch 2

    targs = TrainingArguments(output_dir="unused", use_cpu=True)
    cb.on_train_begin(targs, State(), None)
    cb.on_epoch_begin(targs, State(), None)
    assert renderer.epoch == 2
    State.epoch = 2.7  # streaming: the trainer's epoch counts steps, the callback counts passes
    cb.on_epoch_begin(targs, State(), None)
    assert renderer.epoch == 3


def test_sample_log_records_what_was_rendered(two_sets, tmp_path):
    args = DataArguments(record_sets=list(two_sets), samples_per_epoch=6, **SMALL)
    ds, _ = build_dataset(args, render_settings(args, grid=28), sample_log_dir=tmp_path)
    ds[0:3]
    lines = [json.loads(x) for x in (tmp_path / "rank0.jsonl").read_text().splitlines()]
    assert [e["key"] for e in lines] == [[0], [1], [2]] and all(e["record_id"] for e in lines)


def test_renderer_pickles_without_its_records(two_sets):
    """datasets fingerprints the transform by pickling it: the records stay in arrow, not in the transform."""
    import pickle

    args = DataArguments(record_sets=list(two_sets), **SMALL)
    ds, renderer = build_dataset(args, render_settings(args, grid=28))
    blob = pickle.dumps(renderer)
    assert len(blob) < 4000
    clone = pickle.loads(blob)
    a, b = clone.row(renderer.source[3], (3,)), ds[3]
    assert a["images"][0].tobytes() == b["images"][0].tobytes() and a["messages"] == b["messages"]


def test_pre_rendered_mode_is_fixed_and_saved(two_sets, tmp_path):
    args = DataArguments(
        record_sets=list(two_sets),
        samples_per_epoch=5,
        pre_rendered=True,
        pre_rendered_dir=str(tmp_path / "pre"),
        **SMALL,
    )
    ds, renderer = build_dataset(args, render_settings(args, grid=28))
    assert len(ds) == 5 and (tmp_path / "pre" / "dataset_info.json").is_file()
    row = ds[0]
    assert row["images"][0].size[0] % 28 == 0
    assert row["messages"][-1]["role"] == "assistant"
    renderer.epoch = 3  # fixed: later epochs read the same rows
    assert ds[0]["messages"] == row["messages"]


def test_prompt_rows_carry_depth_and_template(two_sets):
    args = DataArguments(record_sets=list(two_sets), **SMALL)
    ds, _ = build_dataset(args, render_settings(args, grid=28), kind="grpo")
    row = ds[0]
    assert set(row) == {"images", "prompt", "depth", "template"}
    assert row["depth"] > 0 and row["template"] == "plain" and row["prompt"][-1]["role"] == "user"


def test_streaming_mixes_sets_and_splits_files_between_ranks(two_sets, tmp_path):
    """A streamed set is one shard per jsonl file: two ranks read disjoint files (what accelerate
    does with a datasets.IterableDataset of enough shards); each set is drawn by its weight."""
    from datasets.distributed import split_dataset_by_node

    folder = tmp_path / "two_files"
    synthetic_records(folder, 6, name="part0", seed=3)
    synthetic_records(folder, 6, name="part1", seed=4)
    args = DataArguments(
        record_sets=[str(folder), two_sets[1]],
        mixing_weights=[3.0, 1.0],
        samples_per_epoch=32,
        streaming=True,
        **SMALL,
    )
    ds, renderer = build_dataset(
        args, render_settings(args, grid=28), seed=3, sample_log_dir=tmp_path / "log"
    )
    assert ds.n_shards == 1  # the interleaved stream has as many shards as its smallest set
    rows = list(ds)
    assert len(rows) == 32
    answers = collections.Counter(r["messages"][-1]["content"][0]["text"] for r in rows)
    assert len(answers) > 8
    log = [json.loads(x) for x in (tmp_path / "log" / "rank0.jsonl").read_text().splitlines()]
    sets = collections.Counter(e["record_id"].split("/")[0] for e in log)
    assert sets["outdoor"] > 0 and sets["part0"] + sets["part1"] > sets["outdoor"]

    one = DataArguments(record_sets=[str(folder)], samples_per_epoch=8, streaming=True, **SMALL)
    ds, renderer = build_dataset(one, render_settings(one, grid=28), seed=3, sample_log_dir=tmp_path / "one")
    assert ds.n_shards == 2
    rank0 = [r["images"][0].tobytes() for r in split_dataset_by_node(ds, rank=0, world_size=2)]
    rank1 = [r["images"][0].tobytes() for r in split_dataset_by_node(ds, rank=1, world_size=2)]
    assert len(rank0) == len(rank1) == 4 and not set(rank0) & set(rank1)  # the epoch's 8, split
    ids = [json.loads(x)["record_id"] for x in (tmp_path / "one" / "rank0.jsonl").read_text().splitlines()]
    files = [{i.split("/")[0] for i in half} for half in (ids[:4], ids[4:])]
    assert len(files[0]) == len(files[1]) == 1 and files[0] | files[1] == {
        "part0",
        "part1",
    }  # a file per rank
    first = list(ds)
    renderer.epoch = 1  # the epoch reaches the transform: new crops and points
    again = list(ds)
    assert sum(a["images"][0].tobytes() != b["images"][0].tobytes() for a, b in zip(first, again)) >= 6


def test_bad_lines_are_counted_and_listed_not_fatal(two_sets, tmp_path, caplog):
    """One bad line is one reject with file:line and reason (pyarrow's json reader fails the whole
    file on it), in memory and streaming alike."""
    lines = open(two_sets[1]).read().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], "{not json", lines[1], '{"image": "x.png"}', lines[2]]) + "\n")
    for name in ("outdoor_0000.png", "outdoor_0001.png", "outdoor_0002.png"):
        shutil.copy(os.path.join(os.path.dirname(two_sets[1]), name), tmp_path / name)
    for streaming in (False, True):
        caplog.clear()
        args = DataArguments(
            record_sets=[str(bad)], samples_per_epoch=3 if streaming else None, streaming=streaming, **SMALL
        )
        with caplog.at_level("INFO", logger="depthlm.training.data"):
            ds, _ = build_dataset(args, render_settings(args, grid=28))
            rows = list(ds) if streaming else [ds[i] for i in range(len(ds))]
        assert len(rows) == 3
        text = caplog.text
        assert f"{bad}:2" in text and "invalid JSON" in text
        assert f"{bad}:4" in text and "missing key" in text
        assert "3 records (2 problems skipped)" in text


def test_training_reads_the_parquet_export_as_it_reads_jsonl(two_sets, tmp_path):
    """data_builders/export.py's parquet (images embedded) trains like the jsonl it came from:
    the same rows render to the same pixels and answers, in memory, mixed with jsonl, and streaming."""
    from data_builders.export import to_hf_dataset

    folder = os.path.dirname(two_sets[0])
    only = tmp_path / "indoor"
    only.mkdir()
    shutil.copy(two_sets[0], only / "indoor.jsonl")
    for i in range(12):
        shutil.copy(os.path.join(folder, f"indoor_{i:04d}.png"), only)
    to_hf_dataset(only, tmp_path / "hf", rows_per_shard=5)
    shutil.rmtree(only)  # the parquet files embed the images: nothing else is read

    def rendered(record_sets, **kw):
        args = DataArguments(record_sets=record_sets, **SMALL, **kw)
        ds, _ = build_dataset(args, render_settings(args, grid=28), seed=5)
        rows = list(ds) if kw.get("streaming") else [ds[i] for i in range(len(ds))]
        return [(r["images"][0].tobytes(), r["messages"][-1]["content"][0]["text"]) for r in rows]

    from_jsonl = rendered([two_sets[0]])
    assert rendered([str(tmp_path / "hf")]) == from_jsonl
    mixed = rendered([str(tmp_path / "hf"), two_sets[1]], mixing_weights=[1.0, 1.0], samples_per_epoch=20)
    assert len(mixed) == 20 and set(mixed) & set(from_jsonl)
    streamed = rendered([str(tmp_path / "hf" / "data")], streaming=True, samples_per_epoch=6)
    assert len(streamed) == 6


def test_the_sft_recipe_trains_on_a_parquet_set(two_sets, tiny_model_dir, tmp_path):
    from data_builders.export import to_hf_dataset
    from depthlm.recipes import sft

    to_hf_dataset(os.path.dirname(two_sets[1]), tmp_path / "hf")
    config = os.path.join(os.path.dirname(__file__), "..", "recipes", "configs", "tiny_cpu.yaml")
    args = sft.make_parser().parse_args_and_config(
        ["--config", config, "--model_name_or_path", str(tiny_model_dir), "--record_sets", str(tmp_path / "hf"),
         "--output_dir", str(tmp_path / "out"), "--report_to", "none", "--max_steps", "2",
         "--per_device_train_batch_size", "2", "--save_strategy", "no", "--log_samples", "1"]
    )  # fmt: skip
    trainer = sft.main(*args)
    assert trainer.state.global_step == 2 and (tmp_path / "out" / "samples" / "sample_0.png").is_file()


def test_the_trl_and_open_r1_datasets_list_sets_record_sets_and_weights(tmp_path):
    """YAML ``datasets: [{path, weight}]`` (open-r1's weight; TRL's fraction) = record_sets + mixing_weights."""
    from depthlm.recipes import sft

    config = tmp_path / "mix.yaml"
    config.write_text("datasets:\n  - path: a.jsonl\n    weight: 2\n  - path: b_hf\n    fraction: 0.5\n")
    script_args, _, _ = sft.make_parser().parse_args_and_config(
        ["--config", str(config), "--output_dir", str(tmp_path), "--use_cpu", "true"]
    )
    assert script_args.record_sets == ["a.jsonl", "b_hf"] and script_args.mixing_weights == [2.0, 0.5]
    plain = DataArguments(datasets=[{"path": "a.jsonl"}, {"path": "b.jsonl"}])
    assert plain.record_sets == ["a.jsonl", "b.jsonl"] and plain.mixing_weights == []
    with pytest.raises(DepthLMError, match=r"datasets\[0\] \(a.jsonl\): unknown keys \['wieght'\]"):
        DataArguments(datasets=[{"path": "a.jsonl", "wieght": 2}])


def test_bad_arguments_are_clear_errors(two_sets, tmp_path):
    with pytest.raises(DepthLMError, match="mixing_weights"):
        DataArguments(record_sets=list(two_sets), mixing_weights=[1.0])
    with pytest.raises(DepthLMError, match="no usable records"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text("")
        build_dataset(DataArguments(record_sets=[str(empty)]), RenderSettings())


def test_render_settings_take_the_grid_from_the_processor(tiny_qwen3_dir):
    from depthlm.models import load_processor

    args = DataArguments(record_sets=["x"], **SMALL)
    processor = load_processor(tiny_qwen3_dir, min_pixels=args.min_pixels, max_pixels=args.max_pixels)
    assert render_settings(args, processor).grid == 32
    assert np.isclose(render_settings(args, processor).f_uni, 150)


def test_dataloader_workers_render_different_samples(two_sets, tmp_path):
    from torch.utils.data import DataLoader

    args = DataArguments(record_sets=list(two_sets), samples_per_epoch=16, **SMALL)
    ds, _ = build_dataset(args, render_settings(args, grid=28), sample_log_dir=tmp_path)
    batches = list(DataLoader(ds, batch_size=2, num_workers=2, collate_fn=list))
    assert sum(len(b) for b in batches) == 16
    entries = [json.loads(x) for x in (tmp_path / "rank0.jsonl").read_text().splitlines()]
    assert {e["worker"] for e in entries} == {0, 1}
    assert sorted(e["key"][0] for e in entries) == list(range(16))  # each slot once, whichever worker
    images = [row["images"][0].tobytes() + str(row["messages"]).encode() for b in batches for row in b]
    assert len(set(images)) == 16


def test_a_killed_streaming_run_resumes_to_the_same_weights(two_sets, tiny_model_dir, tmp_path):
    """Streaming: the trainer re-reads and skips the batches it had seen; the stream (seeded shuffle
    and interleave) and each sample's rendering (keyed by stream position and record id) repeat
    exactly, so a run killed after checkpoint 2 of 4 ends with the uninterrupted run's weights."""
    import torch
    from training_helpers import interrupted_and_uninterrupted, trained_weights

    from depthlm.recipes import sft

    config = os.path.join(os.path.dirname(__file__), "..", "recipes", "configs", "tiny_cpu.yaml")

    def parse_run(out):
        return sft.make_parser().parse_args_and_config(
            ["--config", config, "--model_name_or_path", str(tiny_model_dir), "--record_sets", *two_sets,
             "--mixing_weights", "1", "1", "--streaming", "true", "--samples_per_epoch", "64",
             "--output_dir", str(out), "--report_to", "none", "--max_steps", "4", "--save_steps", "2",
             "--per_device_train_batch_size", "2", "--log_samples", "0", "--learning_rate", "5e-3"]
        )  # fmt: skip

    straight, resumed = interrupted_and_uninterrupted(sft, parse_run, tmp_path, kill_at=2)
    assert resumed.state.global_step == straight.state.global_step == 4
    before, after = trained_weights(straight), trained_weights(resumed)
    assert all(torch.equal(before[k], after[k]) for k in before)
