"""depthlm chat as a user runs it: a real process, commands typed on its standard input."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from depthlm.geometry import Intrinsics
from depthlm.intrinsics_guess import from_fov, guess_camera


def _photo(path):
    pixels = (np.random.default_rng(3).random((480, 640, 3)) * 255).astype("uint8")
    Image.fromarray(pixels).save(path)
    return path


def _chat(args: list[str], lines: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "depthlm.cli", "chat", *args],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _ray(point, k: Intrinsics) -> np.ndarray:
    v = np.array([(point[0] - k.cx) / k.fx, (point[1] - k.cy) / k.fy, 1.0])
    return v / np.linalg.norm(v)


def test_a_conversation_places_points_asks_follow_ups_and_recovers_from_mistakes(tmp_path):
    photo = _photo(tmp_path / "room.png")
    prefix = tmp_path / "saved" / "c"
    proc = _chat(
        ["--model", "constant:3.0", "--image", str(photo), "--fov", "90"],
        [
            "help",
            "point 100,100",
            "point 700,10",  # outside: refused, the conversation goes on
            "point here",  # not coordinates
            "how far is it?",
            "point 500 300",
            "distance a b",
            "distance A C",
            "remove B",
            "points",
            "fov 60",
            "camera",
            f"save {prefix}",
            "quit",
            "point 1,1",  # after quit: never read
        ],
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "point X,Y" in out and "distance A B" in out  # the help text
    assert "A placed at (100, 100)" in out
    assert "error: B (700, 10) is outside the 640x480 photo" in out
    assert "error: point 'here': expected X,Y" in out
    assert "A (100, 100): 3.00 m" in out
    assert "B placed at (500, 300)" in out  # the refused point did not use up a name
    k = from_fov((640, 480), 90)
    expected = np.linalg.norm(3.0 * _ray((100, 100), k) - 3.0 * _ray((500, 300), k))
    assert f"A-B: {expected:.2f} m apart" in out
    assert "error: no point C; placed: A, B" in out
    assert "B removed" in out
    assert "horizontal field of view 60 degrees" in out
    assert (prefix.parent / "c-A.png").is_file() and (prefix.parent / "c-points.png").is_file()
    assert "C placed" not in out


def test_chat_with_the_tiny_model_answers_what_the_model_says(tiny_model_dir, tmp_path):
    from depthlm.ask import load_photo
    from depthlm.inference import make_backend
    from depthlm.render import render
    from depthlm.settings import resolve_settings

    photo = _photo(tmp_path / "room.png")
    proc = _chat(
        [
            "--model",
            str(tiny_model_dir),
            "--backend",
            "transformers",
            "--dtype",
            "float32",
            "--image",
            str(photo),
        ],
        ["point 320,240", "ask", ""],
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: no intrinsics given" in proc.stdout  # a plain PNG has no EXIF: the stated default
    settings = resolve_settings(tiny_model_dir)
    cam = guess_camera((640, 480), {})
    query = render(load_photo(photo).image, cam.intrinsics, (320, 240), settings)
    (text,) = make_backend("transformers", str(tiny_model_dir), settings, dtype="float32").generate([query])
    assert "A (320, 240): " in proc.stdout and repr(text.strip()) in proc.stdout


@pytest.mark.parametrize("bad", ["--fov 500", "--intrinsics 1,2"])
def test_bad_camera_flags_stop_before_the_conversation(tmp_path, bad):
    photo = _photo(tmp_path / "room.png")
    proc = _chat(["--model", "constant:2", "--image", str(photo), *bad.split()], [])
    assert proc.returncode == 2
    assert proc.stderr.startswith("depthlm chat: error:") and "Traceback" not in proc.stderr
