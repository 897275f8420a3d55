"""depthlm ask against a running OpenAI-compatible server (vLLM's, on the tiny model, loopback only).

The marker is drawn on the client: the server receives the finished, focal-normalised view, so the
saved view, the request and a direct OpenAIBackend call on the same rendering all agree.
One server start (~40 s on 2 cores) for the whole area.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from depthlm import cli
from depthlm.ask import load_photo, render_points
from depthlm.inference import make_backend
from depthlm.intrinsics_guess import from_fov
from depthlm.settings import resolve_settings

pytestmark = pytest.mark.slow


def test_ask_through_vllm_serve_with_the_marker_drawn_client_side(tiny_model_dir, tmp_path, capsys):
    from servers import vllm_server

    photo = tmp_path / "room.png"
    Image.fromarray((np.random.default_rng(5).random((480, 640, 3)) * 255).astype("uint8")).save(photo)
    settings = resolve_settings(tiny_model_dir)
    points = [(120.0, 200.0), (560.0, 90.0)]
    args = ["ask", "--backend", "openai", "--model", "tiny", "--render-settings", str(tiny_model_dir)]
    args += ["--image", str(photo), "--fov", "70", "--save", str(tmp_path / "q")]
    args += [x for p in points for x in ("--point", f"{p[0]:g},{p[1]:g}")]
    with vllm_server(
        tiny_model_dir, name="tiny", max_pixels=settings.max_pixels, min_pixels=settings.min_pixels
    ) as url:
        code = cli.main([*args[:1], "--base-url", url, *args[1:]])
        out = capsys.readouterr().out
        queries = render_points(load_photo(photo).image, from_fov((640, 480), 70), points, settings)
        direct = make_backend("openai", "tiny", settings, base_url=url).generate(queries)
        missing_model = cli.main([*args[:1], "--base-url", url, *args[1:3], "--model", "nope", *args[5:]])
        err = capsys.readouterr().err
    assert code == 0
    for q, label, text in zip(queries, "AB", direct):
        saved = np.asarray(Image.open(tmp_path / f"q-{label}.png"))
        assert np.array_equal(saved, np.asarray(q.image))  # what was sent: the rendered view with its marker
        assert repr(text.strip()) in out
    assert missing_model == 2 and "request for model 'nope' failed" in err
