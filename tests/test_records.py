import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlm.errors import RecordError
from depthlm.records import read_records, write_records


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "rgb").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "rgb" / "a.png")
    return tmp_path


def good(**kw):
    row = {
        "image": "rgb/a.png",
        "intrinsics": [50, 50, 31.5, 23.5, 64, 48],
        "pixel_coords": [[1, 2], [60, 40]],
        "depth": [1.5, 2.5],
    }
    row.update(kw)
    return row


def test_reads_reference_format_relative_to_the_file(folder):
    recs = read_records(write_jsonl(folder / "x.jsonl", [good()]))
    assert len(recs) == 1 and recs[0].image == str(folder / "rgb" / "a.png")
    assert recs[0].points.tolist() == [[1, 2], [60, 40]] and recs[0].depth_type == "ray"


def test_bad_points_are_dropped_and_listed_with_file_line_and_field(folder):
    rejects = []
    row = good(pixel_coords=[[1, 2], [64, 10], [5, 5], [6, 6]], depth=[1.0, 2.0, float("nan"), -1])
    recs = read_records(write_jsonl(folder / "x.jsonl", [good(), row]), rejects=rejects)
    assert [len(r) for r in recs] == [2, 1]
    assert [(r.line, r.field, r.point) for r in rejects] == [
        (2, "pixel_coords", 1),
        (2, "depth", 2),
        (2, "depth", 3),
    ]
    assert "outside the 64x48 image" in str(rejects[0]) and str(folder / "x.jsonl") in str(rejects[0])


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        (good(image="rgb/missing.png"), "image", "not found"),
        (good(intrinsics=[0, 50, 1, 1, 64, 48]), "intrinsics", "positive"),
        (good(intrinsics=[50, 50, 1, 1]), "intrinsics", "6 finite numbers"),
        (good(depth=[1.0]), "depth", "2 pixel_coords but 1 depths"),
        ({"image": "rgb/a.png"}, "intrinsics", "missing key"),
        (good(depth_type="disparity"), "depth_type", "'z' or 'ray'"),
        ("{not json", None, "invalid JSON"),
    ],
)
def test_unusable_records_are_rejected_with_reasons_or_raise_in_strict_mode(folder, row, field, message):
    path = write_jsonl(folder / "x.jsonl", [good(), row])
    rejects = []
    assert len(read_records(path, rejects=rejects)) == 1
    assert (
        len(rejects) == 1
        and rejects[0].line == 2
        and rejects[0].field == field
        and message in rejects[0].reason
    )
    with pytest.raises(RecordError, match=message):
        read_records(path, strict=True)


def test_roundtrip_is_lossless_including_extras(folder, tmp_path):
    src = write_jsonl(
        folder / "x.jsonl",
        [good(depth_type="z", dataset="toy", split="val", extras={"boxes": [[1, 2, 3, 4]]}, sensor="kv2")],
    )
    first = read_records(src)
    out = folder / "sub" / "y.jsonl"
    write_records(out, first)
    second = read_records(out)
    assert len(second) == 1
    a, b = first[0], second[0]
    assert (
        os.path.samefile(a.image, b.image)
        and a.intrinsics == b.intrinsics
        and a.depth_type == b.depth_type == "z"
    )
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.depths, b.depths)
    assert b.extras == {"boxes": [[1, 2, 3, 4]], "sensor": "kv2"} and (b.dataset, b.split, b.id) == (
        "toy",
        "val",
        a.id,
    )
    assert json.loads(out.read_text())["image"] == "../rgb/a.png"


def test_depths_as_converts_through_the_intrinsics(folder):
    rec = read_records(
        write_jsonl(
            folder / "x.jsonl",
            [
                good(
                    pixel_coords=[[31.5, 23.5], [81.5, 23.5]],
                    intrinsics=[50, 50, 31.5, 23.5, 100, 48],
                    depth=[2.0, 2.0],
                    depth_type="z",
                )
            ],
        )
    )
    np.testing.assert_allclose(rec[0].depths_as("ray"), [2.0, 2.0 * np.sqrt(2)])


def test_real_ibims_sample_reads_completely_and_roundtrips(ibims1, tmp_path):
    src = ibims1 / "ibims1_val.jsonl"
    rejects = []
    recs = read_records(src, rejects=rejects)
    assert len(recs) == 100 and sum(len(r) for r in recs) == 10_000 and rejects == []
    depths = np.concatenate([r.depths for r in recs])
    assert depths.min() == pytest.approx(0.631, abs=1e-3) and depths.max() == pytest.approx(22.345, abs=1e-3)
    write_records(tmp_path / "copy.jsonl", recs)
    again = read_records(tmp_path / "copy.jsonl")
    assert [r.image for r in again] == [r.image for r in recs]
    assert all(
        np.array_equal(a.depths, b.depths) and a.intrinsics == b.intrinsics for a, b in zip(recs, again)
    )
