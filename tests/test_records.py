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


# --- extras files: read relative to the records file's folder, under the image rule ---------

INTR = [559.62, 558.14, 361.87, 241.99, 640, 480]  # iBims-1's corridor_01 camera
PAIR_INTR = [520.0, 520.0, 319.5, 239.5, 640, 480]


def write_extras_set(root: Path, n: int = 3) -> Path:
    """A records file as the extras format documents it (depthlm/tasks/extras.py): each line's
    image, label-map PNG, depth map (.npy metres) and second view in images/ beside the file,
    named by paths relative to the file's folder. 640x480, one object per image."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(
            root / "images" / f"{i}.png"
        )
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(
            root / "images" / f"{i}-b.png"
        )
        box = BOXES[i]
        labels = np.zeros((480, 640), np.uint8)
        labels[box[1] : box[3] + 1, box[0] : box[2] + 1] = 1
        Image.fromarray(labels).save(root / "images" / f"{i}-masks.png")
        np.save(root / "images" / f"{i}-depth.npy", np.where(labels == 1, 1.5 + i, 4.0))
        lines.append(
            {
                "image": f"images/{i}.png",
                "intrinsics": INTR,
                "pixel_coords": [[50, 60], [400, 420]],
                "depth": [4.0, 4.0],
                "depth_type": "z",
                "id": f"set/{i}",
                "extras": {
                    "objects": [{"id": 1, "kind": "box", "box": list(box)}],
                    "masks": f"images/{i}-masks.png",
                    "depth_map": f"images/{i}-depth.npy",
                    "pair": {
                        "image": f"images/{i}-b.png",
                        "intrinsics": PAIR_INTR,
                        "translation_m": [0.3, 0, 0.4],
                    },
                },
            }
        )
    return write_jsonl(root / "records.jsonl", lines)


BOXES = [(100 + 40 * i, 120, 260 + 40 * i, 300) for i in range(3)]  # object 1 of image i


def median_ray(z: float, box) -> float:
    """The region truth by hand: median ray distance over the box's pixels, all at depth z."""
    fx, fy, cx, cy = INTR[:4]
    xs, ys = np.meshgrid(np.arange(box[0], box[2] + 1), np.arange(box[1], box[3] + 1))
    return float(np.median(z * np.sqrt(1 + ((xs - cx) / fx) ** 2 + ((ys - cy) / fy) ** 2)))


def region_and_motion(rec, image=None):
    """The truths the region and motion tasks build from the record's extras files."""
    from depthlm import tasks
    from depthlm.settings import RenderSettings

    s = RenderSettings(f_uni=400.0)
    region = tasks.get("region").query(rec, s, np.random.default_rng(0), image=image)
    motion = tasks.get("motion").query(rec, s, np.random.default_rng(0), image=image)
    return region.truth, motion.truth, motion.images[1].size


def test_extras_files_are_found_relative_to_the_records_folder_from_any_working_directory(
    tmp_path, monkeypatch
):
    src = write_extras_set(tmp_path / "set")
    elsewhere = tmp_path / "work" / "deep"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)  # neither the records folder nor a parent of its images
    recs = read_records(os.path.relpath(src), strict=True)
    assert len(recs) == 3
    for i, rec in enumerate(recs):
        images = tmp_path / "set" / "images"
        assert rec.extras["masks"] == str(images / f"{i}-masks.png")
        assert rec.extras["depth_map"] == str(images / f"{i}-depth.npy")
        assert rec.extras["pair"]["image"] == str(images / f"{i}-b.png")
        region, moved, second = region_and_motion(rec)
        assert region == pytest.approx(median_ray(1.5 + i, BOXES[i]), rel=1e-9)
        # the second view at f_uni 400: 640 x 400 / 520 = 492 and 480 x 400 / 520 = 369 px, padded to 28
        assert moved == pytest.approx(0.5) and second == (18 * 28, 14 * 28)


@pytest.mark.parametrize(
    ("extras", "field", "file"),
    [
        ({"masks": "../outside/m.png"}, "extras.masks", "m.png"),
        ({"depth_map": "images/../../outside/d.npy"}, "extras.depth_map", "d.npy"),
        ({"pair": {"image": "../outside/b.png", "intrinsics": PAIR_INTR}}, "extras.pair.image", "b.png"),
    ],
)
def test_an_extras_path_leaving_the_folder_is_one_reject_line_unless_allowed(
    tmp_path, monkeypatch, extras, field, file
):
    src = write_extras_set(tmp_path / "set", n=2)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("m.png", "d.npy", "b.png"):
        (outside / name).write_bytes(b"x")
    lines = src.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["extras"].update(extras)
    src.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    rejects = []
    recs = read_records(src, rejects=rejects)
    assert [r.id for r in recs] == ["set/0"]  # the good line still reads
    (reject,) = rejects
    assert (reject.file, reject.line, reject.field) == (str(src), 2, field)
    assert str(reject).startswith(f"{src}:2 [{field}]: {field} path ") and "leaves the records folder" in str(
        reject
    )
    with pytest.raises(RecordError, match=rf"{src}:2.*{field}.*leaves the records folder"):
        read_records(src, strict=True)
    assert len(read_records(src, allow_outside_images=True)) == 2
    monkeypatch.setenv("DEPTHLM_IMAGE_ROOTS", str(outside))
    allowed = read_records(src)
    value = allowed[1].extras
    for key in field.split(".")[1:]:
        value = value[key]
    assert value == str(outside / file)


def test_an_extras_symlink_out_of_the_folder_is_rejected_like_an_image(tmp_path):
    src = write_extras_set(tmp_path / "set", n=1)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "m.png").write_bytes(b"x")
    (tmp_path / "set" / "images" / "link.png").symlink_to(tmp_path / "secret" / "m.png")
    line = json.loads(src.read_text())
    line["extras"]["masks"] = "images/link.png"
    src.write_text(json.dumps(line) + "\n")
    rejects = []
    assert read_records(src, rejects=rejects) == [] and rejects[0].field == "extras.masks"


def test_writing_records_elsewhere_keeps_the_extras_files_reachable(tmp_path):
    first = read_records(write_extras_set(tmp_path / "set"))
    out = tmp_path / "derived" / "subset.jsonl"
    write_records(out, first[:2])
    line = json.loads(out.read_text().splitlines()[0])
    assert line["extras"]["masks"] == "../set/images/0-masks.png"  # relative, as image is written
    assert line["extras"]["pair"]["image"] == "../set/images/0-b.png"
    again = read_records(out)  # the folder's image_roots.json lets them out of derived/
    assert [r.extras for r in again] == [r.extras for r in first[:2]]
    assert region_and_motion(again[1]) == region_and_motion(first[1])


def test_a_missing_extras_file_names_the_record_the_key_and_the_path(tmp_path):
    from depthlm import tasks
    from depthlm.settings import RenderSettings
    from depthlm.tasks import TaskError

    src = write_extras_set(tmp_path / "set", n=1)
    (tmp_path / "set" / "images" / "0-b.png").unlink()
    (rec,) = read_records(src)
    missing = str(tmp_path / "set" / "images" / "0-b.png")
    with pytest.raises(TaskError, match=rf"^set/0: motion: extras pair.image file not found: {missing}$"):
        tasks.get("motion").query(rec, RenderSettings(f_uni=400.0), np.random.default_rng(0))
    sample = tasks.Sample(info={"moved_m": 0.5})  # built by hand (chat): the reader names it too
    with pytest.raises(TaskError, match=rf"^set/0: extras\['pair.image'\]: file not found: {missing}$"):
        tasks.get("motion").build(rec, sample, RenderSettings(f_uni=400.0))


# --- the other readers of records: training rows and the parquet export -----------------------


def test_training_rows_of_a_jsonl_set_keep_the_extras_files(tmp_path, monkeypatch):
    from depthlm.training.rows import record_row, row_record

    recs = read_records(write_extras_set(tmp_path / "set", n=1))
    monkeypatch.chdir(tmp_path)
    back, image = row_record(json.loads(json.dumps(record_row(recs[0]))))
    assert image is None and back.extras == recs[0].extras
    assert region_and_motion(back) == region_and_motion(recs[0])


def test_parquet_export_embeds_extras_files_so_region_and_motion_need_no_folder(tmp_path, monkeypatch):
    """The rows embed the extras files (masks, the .npy depth map, the second view): with the
    records folder moved away, the parquet alone gives the region and motion truths the jsonl
    gave, from cached copies named by their sha256 (tests/test_export_extras.py has the rest)."""
    import hashlib
    import shutil

    from data_builders.export import read_hf_records, to_hf_dataset
    from depthlm.records import extras_files

    monkeypatch.setenv("DEPTHLM_CACHE", str(tmp_path / "cache"))
    src = write_extras_set(tmp_path / "set")
    original = read_records(src)
    want = [region_and_motion(r) for r in original]
    info = to_hf_dataset(src.parent, tmp_path / "hf")
    assert info["rows"] == 3 and info["extras_embedded"] == 9 and info["extras_not_embedded"] == 0
    shutil.move(tmp_path / "set", tmp_path / "moved")  # the parquet alone, as on another machine
    exported = list(read_hf_records(tmp_path / "hf", streaming=False))  # (record, embedded image)
    assert [region_and_motion(*e) for e in exported] == want
    for (rec, _), orig in zip(exported, original):
        assert rec.extras["objects"] == orig.extras["objects"] and rec.extras["depth_map"].endswith(".npy")
        for (_, cached), (_, path) in zip(extras_files(rec.extras), extras_files(orig.extras), strict=True):
            data = Path(cached).read_bytes()
            moved = Path(path.replace(str(tmp_path / "set"), str(tmp_path / "moved")))
            assert data == moved.read_bytes() and Path(cached).stem == hashlib.sha256(data).hexdigest()
