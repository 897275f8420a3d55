"""``depthlm app``'s depth-map view over HTTP (the gradio client, no browser): upload, compute,
and the PNG/NPY/PLY/JSON downloads come back; the PLY reads with a real PLY reader (plyfile)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlm.errors import DepthLMError


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def constant_app(tmp_path_factory):
    """``depthlm app --model constant:2.0`` in its own process, its temp folder under our control,
    with render settings that record the ``points`` task (so K > 1 is offered)."""
    from depthlm.settings import RenderSettings

    tmp = tmp_path_factory.mktemp("app")
    trained = (
        RenderSettings(tasks={"depth": 1.0, "points": 1.0}).save(tmp_path_factory.mktemp("model")).parent
    )
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "depthlm.cli", "app", "--model", "constant:2.0", "--port", str(port)]
    cmd += ["--render-settings", str(trained)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
                time.sleep(0.5)
        yield url, tmp, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


def test_depth_map_view_returns_map_cloud_and_downloads_over_http(constant_app, tmp_path):
    from gradio_client import Client, handle_file
    from plyfile import PlyData

    url, tmp, proc = constant_app
    photo = tmp_path / "room.png"
    Image.fromarray((np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)).save(photo)
    client = Client(url, verbose=False, download_files=str(tmp_path / "got"))
    loaded = client.predict(handle_file(str(photo)), api_name="/load_dense")
    fx, fy, cx, cy, fov = loaded[:5]
    assert (cx, cy) == (39.5, 29.5) and fov > 0, loaded  # no EXIF: the stated default camera
    fx, fy, cx, cy, note = client.predict(60, fx, fy, cx, cy, api_name="/on_fov")  # the user's 60 degrees
    assert fx == fy == round(40 / np.tan(np.radians(30)), 2), note
    preview, cloud, files, note = client.predict(fx, fy, cx, cy, 8, 6, 1, api_name="/depth_map")
    assert "48 pixels asked in 48 queries" in note and "0 without an answer" in note, note
    by_suffix = {Path(f).suffix: Path(f) for f in files}
    assert set(by_suffix) == {".png", ".npy", ".ply", ".json"}

    depth = np.load(by_suffix[".npy"])
    assert depth.shape == (60, 80) and np.isfinite(depth).all()
    mm = np.asarray(Image.open(by_suffix[".png"]))
    assert mm.dtype == np.uint16 and np.array_equal(mm, np.rint(depth.astype(np.float64) * 1000))
    vertex = PlyData.read(str(by_suffix[".ply"]))["vertex"]
    assert vertex.count == 80 * 60  # one point per pixel with a depth
    v, u = np.mgrid[0:60, 0:80]  # row-major, as the cloud is written: each point reprojects to its pixel
    assert np.allclose(vertex["x"] / vertex["z"] * fx + cx, u.ravel(), atol=1e-3)
    assert np.allclose(vertex["y"] / vertex["z"] * fy + cy, v.ravel(), atol=1e-3)
    assert np.allclose(vertex["z"], depth.ravel())
    # constant:2.0 answers 2 m along the ray at every asked pixel (an 8x6 grid of cell centres); the
    # edge-aware upsampling guided by this noise photo moves them a little, not the ray/z conversion
    ray = np.sqrt(vertex["x"] ** 2 + vertex["y"] ** 2 + vertex["z"] ** 2).reshape(60, 80)
    asked = ray[5::10, 5::10]
    assert asked.shape == (6, 8) and abs(np.median(asked) - 2.0) < 5e-3 and np.allclose(asked, 2.0, atol=0.05)
    assert json.loads(by_suffix[".json"].read_text())["stats"]["cloud_points"] == 80 * 60

    # K = 4 points per query (the points task): the same pixels in a quarter of the queries
    *_, files4, note4 = client.predict(fx, fy, cx, cy, 8, 6, 4, api_name="/depth_map")
    assert "48 pixels asked in 12 queries" in note4 and "0 without an answer" in note4, note4
    ply4 = next(Path(f) for f in files4 if f.endswith(".ply"))
    assert PlyData.read(str(ply4))["vertex"].count == 80 * 60

    shown = PlyData.read(str(cloud))["vertex"]  # the 3D view's copy: same points, y up
    assert shown.count == 80 * 60 and np.allclose(shown["y"], -vertex["y"])
    assert Image.open(preview).size[0] > 0

    folders = list(tmp.glob("depthlm-app-*"))
    written = list(tmp.rglob("*.ply")) + list(tmp.rglob("*.npy"))
    assert len(folders) == 1 and written and all(folders[0] in p.parents for p in written), written

    # the maps and clouds go with the app's folder when it stops
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:]
    assert not list(tmp.glob("depthlm-app-*")), "depth maps left on disk after the app stopped"


@pytest.mark.parametrize(
    "cols, rows, k, tasks, error",
    [
        (32, 24, 1, ["depth"], None),
        (8, 6, 16, ["depth", "points"], None),
        (8, 6, 16, ["depth"], "points task"),
        (4096, 4096, 1, ["depth"], "at most"),
        (0, 6, 1, ["depth"], "at most"),
    ],
)
def test_dense_options_check_grid_and_k(cols, rows, k, tasks, error):
    from depthlm.app import dense_options

    if error is None:
        options = dense_options(cols, rows, k, tasks)
        assert options.grid == (cols, rows) and options.k == k
    else:
        with pytest.raises(DepthLMError, match=error):
            dense_options(cols, rows, k, tasks)


@pytest.mark.parametrize("fov, ok", [(60.0, True), (179.5, False), (float("nan"), False), (None, False)])
def test_the_fov_field_goes_through_the_one_plausibility_check(fov, ok):
    from depthlm.app import PageState, fov_of, on_fov
    from depthlm.ask import Photo

    state = PageState(photo=Photo(Image.new("RGB", (640, 480)), {}))
    fx, fy, cx, cy, note = on_fov(state, fov, 500.0, 500.0, 319.5, 239.5)
    if ok:
        assert fx == fy == round(320 / np.tan(np.radians(30)), 2) and (cx, cy) == (319.5, 239.5)
        assert fov_of(state, fx) == pytest.approx(fov, abs=0.01)
    else:
        assert (fx, fy, cx, cy) == (500.0, 500.0, 319.5, 239.5) and note.startswith("**Error:**"), note
