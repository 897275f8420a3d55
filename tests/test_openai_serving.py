"""depthlm ask against a running OpenAI-compatible server (vLLM's, on the tiny model, loopback only).

The marker is drawn on the client: the server receives the finished, focal-normalised view, so the
saved view, the request and a direct OpenAIBackend call on the same rendering all agree. Task
questions go the same way: ``distance`` with its A/B markers drawn here, ``motion`` with its two
views in one request (the server started with ``--limit-mm-per-prompt '{"image": 2}'``, and the
prompt tokens it counts are those of both images). One server start (~40 s on 2 cores) for the
whole module.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
from PIL import Image

from depthlm import cli
from depthlm.ask import load_photo, render_points, task_query
from depthlm.errors import DepthLMError
from depthlm.inference import make_backend, prompt_texts
from depthlm.intrinsics_guess import from_fov
from depthlm.settings import RenderSettings, resolve_settings

pytestmark = pytest.mark.slow

TASKS = "depth,distance,motion"  # what the served model's folder records


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    """(base URL, model folder, settings): the tiny model served once, its folder recording a task
    mix with ``motion``, so the server takes two images per prompt."""
    from servers import vllm_server

    folder = tmp_path_factory.mktemp("served") / "tiny-tasks"
    shutil.copytree(tiny_model_dir, folder)
    settings = resolve_settings(tiny_model_dir).with_(tasks=TASKS)
    settings.save(folder)
    assert RenderSettings.load(folder).task_names == TASKS.split(",")
    with vllm_server(
        folder,
        name="tiny",
        max_pixels=settings.max_pixels,
        min_pixels=settings.min_pixels,
        images_per_prompt=2,
    ) as url:
        yield url, folder, settings


def _photo(path, seed: int):
    Image.fromarray((np.random.default_rng(seed).random((480, 640, 3)) * 255).astype("uint8")).save(path)
    return path


def _ask_args(url: str, folder, photo, *rest: str) -> list[str]:
    return [
        "ask",
        "--base-url",
        url,
        "--backend",
        "openai",
        "--model",
        "tiny",
        "--render-settings",
        str(folder),
        "--image",
        str(photo),
        "--fov",
        "70",
        *rest,
    ]


def _local_prompt_tokens(folder, settings, query) -> int:
    """Prompt tokens of `query` by the model's own processor here, every image included."""
    from depthlm.models import load_processor

    processor = load_processor(folder, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
    inputs = processor(text=prompt_texts(processor, [query]), images=list(query.images), return_tensors="np")
    return int(inputs["input_ids"].shape[1])


def test_ask_through_vllm_serve_with_the_marker_drawn_client_side(served, tmp_path, capsys):
    url, folder, settings = served
    photo = _photo(tmp_path / "room.png", 5)
    points = [(120.0, 200.0), (560.0, 90.0)]
    args = _ask_args(url, folder, photo, "--save", str(tmp_path / "q"))
    args += [x for p in points for x in ("--point", f"{p[0]:g},{p[1]:g}")]
    code = cli.main(args)
    out = capsys.readouterr().out
    queries = render_points(load_photo(photo).image, from_fov((640, 480), 70), points, settings)
    direct = make_backend("openai", "tiny", settings, base_url=url).generate(queries)
    missing_model = cli.main([*args[:5], "--model", "nope", *args[7:]])
    err = capsys.readouterr().err
    assert code == 0
    for q, label, text in zip(queries, "AB", direct):
        saved = np.asarray(Image.open(tmp_path / f"q-{label}.png"))
        assert np.array_equal(saved, np.asarray(q.image))  # what was sent: the rendered view with its marker
        assert repr(text.strip()) in out
    assert missing_model == 2 and "request for model 'nope' failed" in err


def test_ask_motion_sends_both_photos_in_one_request(served, tmp_path, capsys):
    """``depthlm ask --task motion``: two views in one chat request; the server counts the prompt
    tokens of both images (the local processor's count with both, not with one) and answers."""
    url, folder, settings = served
    first, second = _photo(tmp_path / "a.png", 1), _photo(tmp_path / "b.png", 2)
    prefix = tmp_path / "m"
    code = cli.main(
        _ask_args(
            url, folder, first, "--task", "motion", "--second-image", str(second), "--save", str(prefix)
        )
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    query = task_query(
        "motion", load_photo(first).image, from_fov((640, 480), 70), settings, second=second, image_path=first
    )
    assert len(query.images) == 2
    for i, view in enumerate(query.images, 1):  # what ask sent (and saved): both focal-normalised views
        assert np.array_equal(np.asarray(Image.open(f"{prefix}-motion-{i}.png")), np.asarray(view))
    backend = make_backend("openai", "tiny", settings, base_url=url)
    text = backend.generate([query])[0]
    assert f"question: {query.question}" in out
    assert "motion: " in out and repr(text.strip()) in out  # the served model's answer, printed
    parts = [p["type"] for m in backend._messages(query) for p in m["content"]]
    assert parts.count("image_url") == 2
    both = _local_prompt_tokens(folder, settings, query)
    one = _local_prompt_tokens(folder, settings, dataclasses.replace(query, images=query.images[:1]))
    assert backend.last_prompt_token_counts == [both] and both > one + 100


def test_a_server_limited_to_fewer_images_is_named_with_the_flag_to_start_it_with(served, tmp_path):
    url, folder, settings = served
    first, second = _photo(tmp_path / "a.png", 1), _photo(tmp_path / "b.png", 2)
    query = task_query("motion", load_photo(first).image, from_fov((640, 480), 70), settings, second=second)
    three = dataclasses.replace(query, images=[*query.images, query.images[0]])  # over the server's 2
    with pytest.raises(DepthLMError, match=r"""--limit-mm-per-prompt '\{"image": 3\}'"""):
        make_backend("openai", "tiny", settings, base_url=url, max_retries=0).generate([three])


def test_ask_distance_with_both_markers_drawn_client_side(served, tmp_path, capsys):
    """A uniform grey photo: every pixel of the view sent that is not grey is a marker, and the
    markers sit where the two photo pixels land in the view (by the view's own intrinsics)."""
    url, folder, settings = served
    photo = tmp_path / "grey.png"
    Image.new("RGB", (640, 480), (128, 128, 128)).save(photo)
    prefix = tmp_path / "d"
    points = [(120.0, 200.0), (560.0, 90.0)]
    picks = [x for p in points for x in ("--point", f"{p[0]:g},{p[1]:g}")]
    code = cli.main(_ask_args(url, folder, photo, "--task", "distance", *picks, "--save", str(prefix)))
    out, err = capsys.readouterr()
    assert code == 0, err
    camera = from_fov((640, 480), 70)
    query = task_query("distance", load_photo(photo).image, camera, settings, points=points)
    view = np.asarray(query.images[0]).astype(int)
    assert np.array_equal(np.asarray(Image.open(f"{prefix}-distance-1.png")), view)  # sent = saved
    k = query.intrinsics[0]
    expected = [
        ((x - camera.cx) * k.fx / camera.fx + k.cx, (y - camera.cy) * k.fy / camera.fy + k.cy)
        for x, y in points
    ]
    ys, xs = np.nonzero(np.abs(view - 128).max(axis=2) > 40)
    assert len(xs) > 50
    near = [np.hypot(xs - ex, ys - ey) < 40 for ex, ey in expected]
    assert near[0].any() and near[1].any() and (near[0] | near[1]).all()  # drawn at A and B, nowhere else
    text = make_backend("openai", "tiny", settings, base_url=url).generate([query])[0]
    assert "question: How far apart are the points marked A and B" in out
    assert "distance: " in out and repr(text.strip()) in out


def test_structured_answers_through_the_server_follow_each_tasks_regex(served, tmp_path):
    """vLLM's structured_outputs extension, per query: motion (two images), distance, and a points
    question held to its own four labels, one line each."""
    import re

    from depthlm import tasks

    url, folder, settings = served
    first, second = _photo(tmp_path / "a.png", 1), _photo(tmp_path / "b.png", 2)
    image, camera = load_photo(first).image, from_fov((640, 480), 70)
    queries = [
        task_query("motion", image, camera, settings, second=second),
        task_query("distance", image, camera, settings, points=[(120, 200), (560, 90)]),
        task_query("points", image, camera, settings, points=[(100, 100), (300, 200), (500, 300), (600, 50)]),
    ]
    texts = make_backend("openai", "tiny", settings, base_url=url).generate(queries, structured=True)
    for q, text in zip(queries, texts):
        assert re.fullmatch(tasks.get(q.task).answer_regex(settings), text), (q.task, text)
    assert re.findall(r"^([A-Z]):", texts[2], re.M) == ["A", "B", "C", "D"]
    assert list(tasks.get("points").parse(texts[2])) == ["A", "B", "C", "D"]
