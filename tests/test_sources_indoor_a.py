"""NYUv2, iBims-1, SUN RGB-D and ETH3D sources on tiny files written in their release formats.

Depth in every fixture is a known formula of the pixel, so each test checks the value at
named pixels after loading and after a full build (axis order, unit, decoding, z vs ray).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import fixtures_indoor_a as fx
import numpy as np
import pytest
import scipy.io
from PIL import Image

from data_builders.base import SkipFrame
from data_builders.framework import build
from data_builders.sources._checks import check_intrinsics
from data_builders.sources.eth3d import ETH3D, read_images
from data_builders.sources.ibims1 import IBims1
from data_builders.sources.nyuv2 import NYUv2
from data_builders.sources.sunrgbd import SUNRGBD, decode_depth, encode_depth
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics
from depthlm.records import read_records


def built(out: Path) -> tuple[list, dict, list[dict]]:
    """Records, summary and reject lines of a finished build."""
    records = read_records(out)
    summary = json.loads((out / "summary.json").read_text())
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines() if line]
    return records, summary, rejects


def frame_reasons(rejects: list[dict]) -> dict[str, str]:
    return {r["key"]: r["reason"] for r in rejects if r.get("frame")}


# ---------------------------------------------------------------------------------- NYUv2


def test_nyuv2_reads_hdf5_axes_metres_official_split_and_intrinsics(tmp_path):
    fx.write_nyu(tmp_path, n=3, train=(1,), test=(2, 3))
    assert NYUv2(tmp_path, "train").list_frames() == ["0001"]
    src = NYUv2(tmp_path, "test")
    assert src.list_frames() == ["0002", "0003"]
    frame = src.load("0002")  # 1-based key -> 0-based array index 1
    assert frame.image.size == (640, 480)
    assert frame.image.getpixel((100, 200)) == (100, 200, 40)  # x=100 -> R, y=200 -> G, image 1 -> B
    assert frame.depth.shape == (480, 640)
    assert frame.depth[200, 100] == pytest.approx(1.0 + 0.1 + 2.0 + 0.5)  # nyu_depth(1) at x=100, y=200
    assert frame.depth[479, 639] == pytest.approx(fx.nyu_depth(1)[479, 639])
    assert frame.depth_type == "z"
    intr = frame.intrinsics
    # camera_params.m gives cx 325.5824, cy 253.7362 for MATLAB's 1-based pixels: rgb_plane2rgb_world.m
    # back-projects pixel (xx, yy) of meshgrid(1:W, 1:H) as X = (xx - cx) * z / fx. Our pixel
    # x = xx - 1 must reach the same point, so the 0-based principal point is one pixel less.
    xx, yy, z = 101, 201, 2.5  # MATLAB pixel, depth
    toolbox_xyz = ((xx - 325.5824) * z / 518.8579, (yy - 253.7362) * z / 519.4696)
    ours = ((xx - 1 - intr.cx) * z / intr.fx, (yy - 1 - intr.cy) * z / intr.fy)
    assert ours == pytest.approx(toolbox_xyz, abs=1e-9)
    assert (intr.fx, intr.fy, intr.width, intr.height) == (518.8579, 519.4696, 640, 480)
    valid = frame.valid  # Eigen crop rows 45:471, cols 41:601, minus pixels the sensor did not measure
    assert not valid[44, 300] and valid[45, 300] and valid[470, 300] and not valid[471, 300]
    assert not valid[240, 40] and valid[240, 41] and valid[240, 600] and not valid[240, 601]
    assert not valid[fx.NYU_HOLE].any() and valid[215, 305]
    assert frame.split == "test"


def test_nyuv2_options_keep_filled_pixels_and_drop_the_crop(tmp_path):
    fx.write_nyu(tmp_path)
    opts = argparse.Namespace(nyu_include_filled=True, nyu_no_crop=True)
    frame = NYUv2(tmp_path, "test", opts).load("0002")
    assert frame.valid.all()


def test_nyuv2_rejects_empty_depth_and_bad_files(tmp_path):
    zero = np.zeros((480, 640), np.float32)
    nan = np.full((480, 640), np.nan, np.float32)
    fx.write_nyu(tmp_path, n=3, test=(1, 2, 3), depths=[zero, nan, fx.nyu_depth(2)])
    src = NYUv2(tmp_path, "test")
    for key in ("0001", "0002"):
        with pytest.raises(SkipFrame, match="no valid depth"):
            src.load(key)
    assert src.load("0003").depth[0, 0] == pytest.approx(2.0)
    with pytest.raises(DepthLMError, match="val"):
        NYUv2(tmp_path, "val").list_frames()
    scipy.io.savemat(tmp_path / "splits.mat", {"trainNdxs": [[1]], "testNdxs": [[7]]})
    with pytest.raises(DepthLMError, match="outside 1..3"):
        NYUv2(tmp_path, "test").list_frames()
    (tmp_path / "splits.mat").unlink()
    with pytest.raises(DepthLMError, match="splits.mat"):
        NYUv2(tmp_path, "test").list_frames()
    other = tmp_path / "other"  # (a fresh folder: HDF5 keeps the first file open in this process)
    other.mkdir()
    (other / "nyu_depth_v2_labeled.mat").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(DepthLMError, match="HDF5"):
        NYUv2(other, "test").list_frames()


def test_nyuv2_build_writes_z_depth_at_the_right_pixels(tmp_path):
    zero = np.zeros((480, 640), np.float32)
    fx.write_nyu(tmp_path / "raw", n=3, test=(1, 2, 3), depths=[fx.nyu_depth(0), zero, fx.nyu_depth(2)])
    out = tmp_path / "out"
    build("nyuv2", tmp_path / "raw", out, split="test", points_per_image=40, progress=False)
    records, summary, rejects = built(out)
    assert [r.id.rsplit("/", 1)[1] for r in records] == ["0001", "0003"]
    assert "no valid depth" in frame_reasons(rejects)["0002"]
    assert summary["frames"] == {"input": 3, "kept": 2, "rejected": 1}
    for rec, i in zip(records, (0, 2)):
        assert rec.depth_type == "z" and len(rec) == 40
        x, y = rec.points[:, 0].astype(int), rec.points[:, 1].astype(int)
        np.testing.assert_allclose(rec.depths, fx.nyu_depth(i)[y, x], atol=1e-5)
        assert (y >= 45).all() and (y < 471).all() and (x >= 41).all() and (x < 601).all()
        assert Image.open(rec.image).getpixel((int(x[0]), int(y[0])))[:2] == (x[0] % 256, y[0] % 256)


def test_nyuv2_build_with_worker_processes_matches_one_process(tmp_path):
    fx.write_nyu(tmp_path / "raw", n=3, test=(1, 2, 3))
    for n in (1, 2):  # each worker opens the HDF5 file itself
        build(
            "nyuv2",
            tmp_path / "raw",
            tmp_path / f"out{n}",
            split="test",
            num_proc=n,
            chunk_size=1,
            progress=False,
        )
    one, two = (read_records(tmp_path / f"out{n}") for n in (1, 2))
    assert [r.id for r in one] == [r.id for r in two] and len(one) == 3
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.points, b.points)
        np.testing.assert_array_equal(a.depths, b.depths)


# ---------------------------------------------------------------------------------- iBims-1


def test_ibims1_reads_struct_calib_and_masks(tmp_path):
    fx.write_ibims(tmp_path, names=("kitchen_02", "corridor_01"))
    src = IBims1(tmp_path, "test")
    assert src.list_frames() == ["corridor_01", "kitchen_02"]
    frame = src.load("kitchen_02")  # written first -> fixture index 0 (corridor_01 would read 3.55)
    intr = frame.intrinsics  # MATLAB layout, 1-based principal point -> 0-based
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == pytest.approx((559.62, 558.14, 361.87, 241.99))
    assert frame.depth[300, 200] == pytest.approx(2.0 + 0.4 + 0.9)
    assert frame.image.getpixel((200, 300)) == (200, 300 % 256, 0)
    assert frame.depth_type == "z"
    assert not frame.valid[fx.IBIMS_INVALID].any() and not frame.valid[fx.IBIMS_TRANSP].any()
    assert frame.valid[300, 200] and frame.valid.sum() == 640 * 480 - 6400 - 1000


def test_ibims1_accepts_calib_in_opencv_layout(tmp_path):
    folder = fx.write_ibims(tmp_path, names=("office_01",))
    data = fx.ibims_struct(0)
    data["calib"] = np.array([[559.62, 0, 362.87], [0, 558.14, 242.99], [0, 0, 1]])
    scipy.io.savemat(folder / "office_01.mat", {"data": data})
    intr = IBims1(tmp_path, "test").load("office_01").intrinsics
    assert (intr.cx, intr.cy) == pytest.approx((361.87, 241.99))


@pytest.mark.parametrize(
    "change, reason",
    [
        ("garbage", "unreadable .mat"),
        ("no_field", "fields"),
        ("fx_zero", "focal length must be positive"),
        ("fx_huge", "absurd focal length"),
        ("depth_zero", "no valid depth"),
        ("all_masked", "no valid depth"),
        ("depth_small", "size mismatch"),
        ("missing", "file missing"),
    ],
)
def test_ibims1_bad_inputs_are_skipped_with_reason(tmp_path, change, reason):
    folder = fx.write_ibims(tmp_path, names=("bad_01",))
    path = folder / "bad_01.mat"
    data = fx.ibims_struct(0)
    if change == "garbage":
        path.write_bytes(b"\x00garbage" * 20)
    elif change == "missing":
        path.unlink()
    else:
        if change == "no_field":
            del data["mask_transp"]
        elif change == "fx_zero":
            data = fx.ibims_struct(0, calib=(0.0, 558.14, 362.87, 242.99))
        elif change == "fx_huge":
            data = fx.ibims_struct(0, calib=(1e7, 1e7, 362.87, 242.99))
        elif change == "depth_zero":
            data["depth"] = np.zeros((480, 640), np.float32)
        elif change == "all_masked":
            data["mask_transp"] = np.zeros((480, 640), np.uint8)
        elif change == "depth_small":
            data["depth"] = np.ones((240, 320), np.float32)
        scipy.io.savemat(path, {"data": data})
    with pytest.raises(SkipFrame, match=reason):
        IBims1(tmp_path, "test").load("bad_01")


def test_ibims1_build_skips_bad_files_and_labels_only_trusted_pixels(tmp_path):
    folder = fx.write_ibims(tmp_path / "raw", names=("corridor_01", "kitchen_02", "lab_03"))
    (folder / "lab_03.mat").write_bytes(b"not a mat file")
    out = tmp_path / "out"
    build("ibims1", tmp_path / "raw", out, split="test", points_per_image=200, progress=False)
    records, summary, rejects = built(out)
    assert summary["frames"] == {"input": 3, "kept": 2, "rejected": 1}
    assert "unreadable .mat" in frame_reasons(rejects)["lab_03"]
    assert summary["frame_rejects"] == {"unreadable .mat file": 1}  # grouped without key or path
    labels = summary["labels"]
    assert labels["input"] == labels["sampled"] + labels["unsampled"] + labels["rejected"]
    assert summary["label_rejects"]["invalid mask"] == 2 * (6400 + 1000)
    for rec, i in zip(records, (0, 1)):
        x, y = rec.points[:, 0].astype(int), rec.points[:, 1].astype(int)
        assert len(rec) == 200
        np.testing.assert_allclose(rec.depths, fx.ibims_depth(i)[y, x], atol=1e-5)
        assert y.min() >= 10  # never in the invalid top rows ...
        assert not ((y >= 100) & (y < 120) & (x >= 400) & (x < 450)).any()  # ... nor on the window
        assert rec.depth_type == "z"


def test_plausibility_checks_accept_every_real_ibims1_camera(ibims1):
    records = read_records(ibims1 / "ibims1_val.jsonl")
    cameras = {tuple(r.intrinsics.to_list()) for r in records}
    assert len(records) == 100 and len(cameras) >= 2
    for values in cameras:
        check_intrinsics(Intrinsics.from_list(values), "real iBims-1 camera")
    fx_, fy_, cx, cy, w, h = next(iter(cameras))  # and a clearly broken one is refused
    with pytest.raises(SkipFrame, match="absurd focal length"):
        check_intrinsics(Intrinsics(fx_ * 100, fy_ * 100, cx, cy, int(w), int(h)), "scaled by 100")


# ---------------------------------------------------------------------------------- SUN RGB-D


def test_sunrgbd_decodes_depth_by_bit_rotation_not_raw_over_10000():
    stored = np.array(
        [[9872, 6465, 0]], dtype=np.uint16
    )  # what the release stores for 1.234 m, 9.000 m, none
    np.testing.assert_allclose(decode_depth(stored), [[1.234, 9.0, 0.0]], atol=1e-6)
    assert abs(9872 / 10000 - 1.234) > 0.2  # the reference code's reading is wrong by 25 cm here
    metres = np.array([[0.001, 0.5, 3.999, 7.999, 8.191, 8.192, 12.345]])
    np.testing.assert_allclose(decode_depth(encode_depth(metres)), metres, atol=1e-6)


def test_sunrgbd_finds_sensor_folders_reads_split_intrinsics_and_depth(tmp_path):
    fx.write_sunrgbd(tmp_path)
    assert SUNRGBD(tmp_path, "train").list_frames() == ["kv1/NYUdata/NYU0001"]
    assert SUNRGBD(tmp_path, "val").list_frames() == [
        "kv2/kinect2data/000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize"
    ]
    src = SUNRGBD(tmp_path, "test")
    keys = src.list_frames()
    assert keys == [
        "realsense/lg/2014_10_24-13_49_47-1311000073",
        "xtion/sun3ddata/mit_32_d507/d507_2/d507_2_1",
    ]
    frame = src.load(keys[1])  # fixture index 3 (sorted scene order)
    intr = frame.intrinsics  # intrinsics.txt principal point is 1-based (toolbox meshgrid from 1)
    assert (intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height) == pytest.approx(
        (51.9, 52.0, 32.5, 24.0, 64, 48)
    )
    assert frame.image_path.name == "0000200.jpg"
    assert frame.depth[10, 20] == pytest.approx(fx.sun_depth(3)[10, 20], abs=1e-6)
    assert frame.depth_type == "z"
    fxp, fyp = fx.SUN_FAR_PIXEL
    assert frame.depth[fyp, fxp] == pytest.approx(9.5) and not frame.valid[fyp, fxp]
    assert frame.valid.sum() == 64 * 48 - 1
    assert frame.extras == {"sensor": "xtion"}

    bfx = SUNRGBD(tmp_path, "test", argparse.Namespace(sunrgbd_depth="bfx")).load(keys[1])
    assert bfx.depth[10, 20] == pytest.approx(frame.depth[10, 20] + 1.0, abs=1e-6)


@pytest.mark.parametrize(
    "change, reason",
    [
        ("corrupt_image", "unreadable image"),
        ("no_depth", "depth file missing"),
        ("zero_depth", "no valid depth"),
        ("fx_tiny", "absurd focal length"),
        ("not_a_matrix", "3x3"),
        ("depth_size", "size mismatch"),
        ("depth_8bit", "not a 16-bit depth PNG"),
    ],
)
def test_sunrgbd_bad_inputs_are_skipped_with_reason(tmp_path, change, reason):
    data = fx.write_sunrgbd(tmp_path)
    key = "kv1/NYUdata/NYU0001"
    scene = data / key
    depth = scene / "depth" / "NYU0001.png"
    if change == "corrupt_image":
        (scene / "image" / "NYU0001.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    elif change == "no_depth":
        depth.unlink()
    elif change == "zero_depth":
        Image.fromarray(np.zeros((48, 64), np.uint16)).save(depth)
    elif change == "fx_tiny":
        (scene / "intrinsics.txt").write_text("0.5 0 33.5\n0 0.5 25\n0 0 1\n")
    elif change == "not_a_matrix":
        (scene / "intrinsics.txt").write_text("51.9 52.0 33.5 25.0\n")
    elif change == "depth_size":
        Image.fromarray(encode_depth(np.ones((24, 32)))).save(depth)
    elif change == "depth_8bit":
        Image.fromarray(np.ones((48, 64), np.uint8)).save(depth)
    with pytest.raises(SkipFrame, match=reason):
        SUNRGBD(tmp_path, "train").load(key)


def test_sunrgbd_build_keeps_good_frames_and_lists_the_bad(tmp_path):
    data = fx.write_sunrgbd(tmp_path / "raw")
    broken = "xtion/sun3ddata/mit_32_d507/d507_2/d507_2_1"
    (data / broken / "depth" / "0000200.png").unlink()
    (tmp_path / "raw" / "SUNRGBDtoolbox").rename(tmp_path / "toolbox")  # split file passed explicitly
    out = tmp_path / "out"
    split_file = tmp_path / "toolbox" / "traintestSUNRGBD" / "allsplit.mat"
    build(
        "sunrgbd", tmp_path / "raw", out, split="test", points_per_image=30, sunrgbd_split_file=split_file,
        progress=False,
    )  # fmt: skip
    records, summary, rejects = built(out)
    assert summary["frames"] == {"input": 2, "kept": 1, "rejected": 1}
    assert "depth file missing" in frame_reasons(rejects)[broken]
    (rec,) = records
    x, y = rec.points[:, 0].astype(int), rec.points[:, 1].astype(int)
    np.testing.assert_allclose(rec.depths, fx.sun_depth(2)[y, x], atol=1e-6)  # realsense scene, index 2
    assert rec.depth_type == "z" and rec.depths.max() <= 8.0
    assert rec.extras["sensor"] == "realsense"


def test_sunrgbd_labels_lie_on_the_scene_plane(tmp_path):
    """Every built label, back-projected with the record's own intrinsics, lies on the plane the
    fixture's scene shows (n . X = c, the test's own geometry): a wrong depth decoding or unit, a
    0- vs 1-based principal point, swapped axes or z read as ray each move points off it."""
    fx.write_sunrgbd(tmp_path / "raw")
    build("sunrgbd", tmp_path / "raw", tmp_path / "out", split="test", points_per_image=200, progress=False)
    records, _, _ = built(tmp_path / "out")
    scenes = sorted(fx.SUN_SCENES)
    assert len(records) == 2
    for rec in records:
        i = next(j for j, key in enumerate(scenes) if key in Path(rec.image).as_posix())
        n, c = fx.sun_plane(i)
        k = rec.intrinsics
        x, y, z = rec.points[:, 0], rec.points[:, 1], rec.depths_as("z")
        xyz = np.stack([(x - k.cx) / k.fx * z, (y - k.cy) / k.fy * z, z], 1)
        assert len(z) == 200
        np.testing.assert_allclose(xyz @ n, c, atol=2e-3)


def test_sunrgbd_split_entries_without_a_folder_are_rejected_not_dropped(tmp_path):
    data = fx.write_sunrgbd(tmp_path)
    gone = "realsense/lg/2014_10_24-13_49_47-1311000073"
    shutil.rmtree(data / gone)
    src = SUNRGBD(tmp_path, "test")
    assert gone in src.list_frames()
    with pytest.raises(SkipFrame, match="scene folder missing"):
        src.load(gone)


def test_sunrgbd_without_split_file_says_where_to_get_it(tmp_path):
    fx.write_sunrgbd(tmp_path)
    (tmp_path / "SUNRGBDtoolbox" / "traintestSUNRGBD" / "allsplit.mat").unlink()
    with pytest.raises(DepthLMError, match="SUNRGBDtoolbox"):
        SUNRGBD(tmp_path, "test").list_frames()


# ---------------------------------------------------------------------------------- ETH3D


def _eth_original_pixel(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Original-image (col, row) that undistorted pixels (x, y) see, by the test's own forward
    model: the undistorted PINHOLE ray (COLMAP centres at +0.5), then COLMAP's THIN_PRISM_FISHEYE
    with only k1: r -> theta = atan(r) -> f * x/r * theta * (1 + k1 theta^2) + c."""
    _, _, ufx, ufy, ucx, ucy = fx.ETH_UND
    xn, yn = (x + 0.5 - ucx) / ufx, (y + 0.5 - ucy) / ufy
    r = np.hypot(xn, yn)
    theta = np.arctan(r)
    s = np.where(r > 1e-12, theta * (1 + fx.ETH_K1 * theta**2) / np.where(r > 1e-12, r, 1), 1.0)
    f, _, c, cy = fx.ETH_PINHOLE
    return np.floor(f * xn * s + c).astype(int), np.floor(fx.ETH_PINHOLE[1] * yn * s + cy).astype(int)


def test_eth3d_images_txt_parser_keeps_images_with_no_points(tmp_path):
    base = fx.write_eth3d_scene(tmp_path, "courtyard")
    images = read_images(base / "dslr_calibration_undistorted" / "images.txt")
    assert {k: v.camera_id for k, v in images.items()} == {"DSC_0001.JPG": 1, "DSC_0002.JPG": 2}
    assert images["DSC_0002.JPG"].qvec == (1, 0, 0, 0)  # the first has an empty POINTS2D line


def test_eth3d_resamples_raw_float32_depth_into_the_undistorted_image(tmp_path):
    """The depth map belongs to the ORIGINAL (fisheye, 96x64) image; the undistorted image is
    another camera (90x60, fx != fy). Every undistorted pixel takes the depth of the original
    pixel its ray lands in (the test's own forward model), inf becoming no label."""
    fx.write_eth3d_scene(tmp_path, "courtyard")
    fx.write_eth3d_scene(tmp_path, "office", names=("DSC_0100.JPG",))
    src = ETH3D(tmp_path, "test")
    assert src.list_frames() == ["courtyard/DSC_0001.JPG", "courtyard/DSC_0002.JPG", "office/DSC_0100.JPG"]
    frame = src.load("courtyard/DSC_0002.JPG")
    intr = frame.intrinsics  # COLMAP (45.2, 30.1) -> our centre convention (44.7, 29.6)
    w, h, ufx, ufy, ucx, ucy = fx.ETH_UND
    assert (intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height) == (
        ufx,
        ufy,
        ucx - 0.5,
        ucy - 0.5,
        w,
        h,
    )
    assert frame.depth_type == "z" and frame.depth.shape == (h, w)
    original = fx.eth_depth_original(1)
    y, x = np.mgrid[0:h, 0:w]
    col, row = _eth_original_pixel(x, y)
    inside = (col >= 0) & (col < fx.ETH_W) & (row >= 0) & (row < fx.ETH_H)
    expected = np.zeros((h, w), np.float32)
    expected[inside] = original[row[inside], col[inside]]
    expected[~np.isfinite(expected)] = 0  # the scan's hole: no label
    np.testing.assert_array_equal(frame.depth, expected)
    assert (col == fx.ETH_HOLE_COL).any() and not frame.depth[col == fx.ETH_HOLE_COL].any()
    assert frame.image_path == tmp_path / "courtyard/images/dslr_images_undistorted/DSC_0002.JPG"


@pytest.mark.parametrize(
    "change, reason",
    [
        ("no_depth", "depth file missing"),
        ("short_depth", "size mismatch"),
        ("all_inf", "no valid depth"),
        ("no_original_calibration", "calibration missing"),
        ("corrupt_image", "unreadable image"),
        ("fx_huge", "absurd focal length"),
        ("image_size", "size mismatch"),
        ("moved_pose", "poses differ"),
    ],
)
def test_eth3d_bad_inputs_are_skipped_with_reason(tmp_path, change, reason):
    base = fx.write_eth3d_scene(tmp_path, "pipes", names=("DSC_0001.JPG",))
    depth = base / "ground_truth_depth/dslr_images/DSC_0001.JPG"
    image = base / "images/dslr_images_undistorted/DSC_0001.JPG"
    cameras = base / "dslr_calibration_undistorted/cameras.txt"
    if change == "no_depth":
        depth.unlink()
    elif change == "short_depth":
        np.ones(100, "<f4").tofile(depth)
    elif change == "all_inf":
        np.full((fx.ETH_H, fx.ETH_W), np.inf, "<f4").tofile(depth)
    elif change == "no_original_calibration":
        (base / "dslr_calibration_jpg/cameras.txt").unlink()
    elif change == "corrupt_image":
        image.write_bytes(b"\xff\xd8 not really a jpeg")
    elif change == "fx_huge":
        cameras.write_text(f"1 PINHOLE {fx.ETH_W} {fx.ETH_H} 1e9 1e9 48.5 32.5\n")
    elif change == "image_size":
        Image.new("RGB", (48, 32)).save(image)
    elif change == "moved_pose":
        images_txt = base / "dslr_calibration_jpg/images.txt"
        images_txt.write_text(images_txt.read_text().replace("1 1 0 0 0 0 0 0 1", "1 1 0 0 0 0.5 0 0 1"))
    with pytest.raises(SkipFrame, match=reason):
        ETH3D(tmp_path, "test").load("pipes/DSC_0001.JPG")


def test_eth3d_build_stores_z_depth_not_ray_distance(tmp_path):
    fx.write_eth3d_scene(tmp_path / "raw", "courtyard")
    (tmp_path / "raw/courtyard/ground_truth_depth/dslr_images/DSC_0001.JPG").unlink()
    out = tmp_path / "out"
    build("eth3d", tmp_path / "raw", out, split="test", points_per_image=0, edge_threshold=0, progress=False)
    records, summary, rejects = built(out)
    assert summary["frames"] == {"input": 2, "kept": 1, "rejected": 1}
    assert "depth file missing" in frame_reasons(rejects)["courtyard/DSC_0001.JPG"]
    (rec,) = records
    assert rec.depth_type == "z" and len(rec) > 4000
    # every label, back-projected with the record's intrinsics, lies on the plane the scene shows
    # (up to half an original pixel: the label takes its nearest original pixel's depth)
    n, c = fx.eth_plane(1)
    k = rec.intrinsics
    x, y, z = rec.points[:, 0], rec.points[:, 1], rec.depths_as("z")
    xyz = np.stack([(x - k.cx) / k.fx * z, (y - k.cy) / k.fy * z, z], 1)
    np.testing.assert_allclose(xyz @ n, c, atol=0.02)
    # exactly: each label is the depth of the original pixel its ray lands in (test's own model)
    col, row = _eth_original_pixel(x, y)
    np.testing.assert_allclose(rec.depths, fx.eth_depth_original(1)[row, col], rtol=1e-6)
    off_axis = np.argmax(np.hypot(x - k.cx, y - k.cy))  # ray distance is larger there by ~1.4x
    assert rec.depths_as("ray")[off_axis] > rec.depths[off_axis] * 1.3
