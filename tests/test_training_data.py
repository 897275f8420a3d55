"""On-the-fly rendered training data: mixing, per-epoch randomness, slot keys, streaming (about 5 s)."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
from training_helpers import synthetic_records

from depthlm.errors import DepthLMError
from depthlm.settings import RenderSettings
from depthlm.training.callbacks import EpochCallback
from depthlm.training.config import DataArguments, render_settings
from depthlm.training.data import RecordMixture, apportion, build_dataset, read_record_sets

SMALL = dict(f_uni=150, crop_width=[1.0, 1.3], crop_height=[0.7, 1.0], max_pixels=12 * 28 * 28)


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    return (
        str(synthetic_records(folder, 12, name="indoor", seed=0)),
        str(synthetic_records(folder, 4, name="outdoor", seed=1)),
    )


def test_apportion_sums_to_total_and_follows_weights():
    assert apportion(10, [1, 1, 2]) == [3, 2, 5] or apportion(10, [1, 1, 2]) == [2, 3, 5]
    assert sum(apportion(1001, [0.3, 0.7, 1e-9])) == 1001
    assert apportion(8, [0.0, 1.0]) == [0, 8]


def test_mixing_weights_set_each_sets_share_and_cycle_small_sets(two_sets):
    sets = read_record_sets(two_sets)
    mixture = RecordMixture(sets, [1.0, 3.0], samples_per_epoch=40, seed=0)
    names = collections.Counter(mixture.record(0, i).dataset for i in range(40))
    assert names == {"indoor": 10, "outdoor": 30}
    # the small set (4 records) is cycled: every record appears, none more than ceil(30/4) times
    outdoor = collections.Counter(
        mixture.record(0, i).id for i in range(40) if mixture.record(0, i).dataset == "outdoor"
    )
    assert len(outdoor) == 4 and max(outdoor.values()) <= 8
    # the large set is sub-sampled without repeats within an epoch
    indoor = [mixture.record(0, i).id for i in range(40) if mixture.record(0, i).dataset == "indoor"]
    assert len(set(indoor)) == 10
    # default weights: proportional to sizes, one pass over every record
    default = RecordMixture(sets, seed=0)
    assert len(default) == 16 and len({default.record(0, i).id for i in range(16)}) == 16


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
    """datasets fingerprints the transform by pickling it: only the record paths may travel."""
    import pickle

    args = DataArguments(record_sets=list(two_sets), **SMALL)
    ds, renderer = build_dataset(args, render_settings(args, grid=28))
    blob = pickle.dumps(renderer)
    assert len(blob) < 4000
    clone = pickle.loads(blob)
    a, b = clone.row(3), renderer.row(3)
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
    ds, _ = build_dataset(args, render_settings(args, grid=28), kind="prompt")
    row = ds[0]
    assert set(row) == {"images", "prompt", "depth", "template"}
    assert row["depth"] > 0 and row["template"] == "plain" and row["prompt"][-1]["role"] == "user"


def test_streaming_shards_cover_sets_by_weight_and_split_between_ranks(two_sets):
    from datasets.distributed import split_dataset_by_node

    args = DataArguments(
        record_sets=list(two_sets),
        mixing_weights=[1.0, 1.0],
        samples_per_epoch=32,
        streaming=True,
        num_shards=4,
        **SMALL,
    )
    ds, renderer = build_dataset(args, render_settings(args, grid=28), seed=3)
    rows = list(ds)
    assert len(rows) == 32
    answers = collections.Counter(r["messages"][-1]["content"][0]["text"] for r in rows)
    assert len(answers) > 8
    rank0 = [r["images"][0].tobytes() for r in split_dataset_by_node(ds, rank=0, world_size=2)]
    rank1 = [r["images"][0].tobytes() for r in split_dataset_by_node(ds, rank=1, world_size=2)]
    assert len(rank0) == len(rank1) == 16 and not set(rank0) & set(rank1)
    # what accelerate does with a datasets.IterableDataset of enough shards: one slice of shards per rank
    shard0 = [r["images"][0].tobytes() for r in ds.shard(num_shards=2, index=0)]
    shard1 = [r["images"][0].tobytes() for r in ds.shard(num_shards=2, index=1)]
    assert len(shard0) == len(shard1) == 16 and not set(shard0) & set(shard1)
    assert ds.n_shards == 4
    renderer.epoch = 1  # the epoch reaches the generator: new crops and points
    again = list(ds)
    assert sum(a["images"][0].tobytes() != b["images"][0].tobytes() for a, b in zip(rows, again)) > 16


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
