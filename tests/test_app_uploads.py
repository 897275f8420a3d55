"""``depthlm app`` keeps no photo after it stops, and its focal field cannot exhaust memory
(no browser needed: uploads go straight to gradio's HTTP endpoint)."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import numpy as np
import pytest
from PIL import Image


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _upload(port: int, data: bytes, name: str) -> str:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/gradio_api/upload",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def test_uploaded_photos_are_deleted_when_the_app_stops(tmp_path):
    port = _free_port()
    env = {**__import__("os").environ, "TMPDIR": str(tmp_path), "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "depthlm.cli", "app", "--model", "constant:2.0", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        buf = io.BytesIO()
        Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(buf, format="PNG")
        stored = _upload(port, buf.getvalue(), "holiday.png")
        folders = list(tmp_path.glob("depthlm-app-*"))
        assert len(folders) == 1 and "holiday.png" in stored
        assert [p.name for p in folders[0].rglob("*.png")] == ["holiday.png"]  # it is on disk while serving
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:]
    assert not list(tmp_path.glob("depthlm-app-*")), "uploads left on disk after the app stopped"


@pytest.mark.parametrize("fx, ok", [(40.0, True), (5.0, False), (float("nan"), False)])
def test_the_focal_field_is_checked_by_the_one_plausibility_range(fx, ok):
    """fx=40 on a 640x480 photo is a 166-degree lens: rendered at bounded memory; fx=5 (178
    degrees) and NaN are one clear error on the page."""
    from depthlm.app import PageState, intrinsics_from_fields
    from depthlm.ask import Photo
    from depthlm.errors import DepthLMError

    state = PageState(photo=Photo(Image.new("RGB", (640, 480)), {}))
    if ok:
        assert intrinsics_from_fields(state, fx, fx, 319.5, 239.5).fx == fx
    else:
        with pytest.raises(DepthLMError, match="field of view|finite"):
            intrinsics_from_fields(state, fx, fx, 319.5, 239.5)
