"""depthlm ask: intrinsics from flags / EXIF / default, safe photo loading, answers and 3D distances."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from PIL import Image

from depthlm import cli
from depthlm.ask import ask, check_points, load_photo, parse_point, render_points, save_images
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics
from depthlm.inference import make_backend
from depthlm.intrinsics_guess import (
    DEFAULT_FOCAL_35MM,
    from_35mm,
    from_exif,
    from_fov,
    guess_camera,
    parse_intrinsics,
)
from depthlm.render import render
from depthlm.settings import RenderSettings, resolve_settings

EXIF_IFD = 0x8769


def _pixels(w: int = 640, h: int = 480, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype("uint8")


def _jpeg(path, pixels, exif_tags: dict | None = None, orientation: int | None = None):
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    for tag, value in (exif_tags or {}).items():
        exif.get_ifd(EXIF_IFD)[tag] = value
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


# ---------------------------------------------------------------------------- intrinsics


def test_35mm_equivalent_uses_the_full_frame_diagonal():
    # A full-frame sensor imaged at 100 px/mm (3600x2400) with a 50 mm lens: fx = 5000 px exactly.
    k = from_35mm((3600, 2400), 50)
    assert (k.fx, k.fy, k.cx, k.cy) == pytest.approx((5000, 5000, 1799.5, 1199.5))
    # A 4:3 crop of the same diagonal angle: same diagonal field of view whatever the aspect.
    k43 = from_35mm((4000, 3000), 26)
    diag_fov = 2 * math.degrees(math.atan(5000 / 2 / k43.fx))
    assert diag_fov == pytest.approx(2 * math.degrees(math.atan(43.2666 / 2 / 26)), abs=0.01)


def test_fov_and_stated_intrinsics():
    assert from_fov((640, 480), 90).fx == pytest.approx(320)
    k = parse_intrinsics("518.9,519.5,325.6,253.7", (640, 480))
    assert k == Intrinsics(518.9, 519.5, 325.6, 253.7, 640, 480)
    half = parse_intrinsics("1000,1000,639.5,479.5,1280,960", (640, 480))  # another resolution: rescaled
    assert (half.fx, half.cx, half.cy) == pytest.approx((500, 319.5, 239.5))
    with pytest.raises(DepthLMError, match="different aspect ratio"):
        parse_intrinsics("500,500,320,240,480,640", (640, 480))
    with pytest.raises(DepthLMError, match="expected fx,fy,cx,cy"):
        parse_intrinsics("500,500,320", (640, 480))
    with pytest.raises(DepthLMError, match="between 1 and 170"):
        from_fov((640, 480), 200)
    with pytest.raises(DepthLMError, match="not both"):
        guess_camera((640, 480), intrinsics="1,1,1,1", fov=60)


def test_default_camera_is_stated_with_a_warning():
    cam = guess_camera((640, 480), {})
    assert cam.source == "default"
    assert cam.intrinsics.fx == pytest.approx(from_35mm((640, 480), DEFAULT_FOCAL_35MM).fx)
    assert "metric answers scale with this focal length" in cam.warning.lower()
    assert guess_camera((640, 480), fov=60).warning is None


def test_exif_35mm_from_a_real_jpeg(tmp_path):
    photo = load_photo(_jpeg(tmp_path / "a.jpg", _pixels(), {0xA405: 28}))
    cam = guess_camera(photo.size, photo.exif)
    assert cam.source == "exif-35mm" and "28 mm" in cam.detail
    assert cam.intrinsics.fx == pytest.approx(28 * 800 / math.hypot(36, 24))
    # An explicit field of view beats EXIF (the user said so).
    assert guess_camera(photo.size, photo.exif, fov=70).source == "fov"


def test_exif_focal_length_with_sensor_resolution_and_a_resized_photo(tmp_path):
    # 4.25 mm lens, 800 px/mm on the sensor, captured at 4000x3000, stored downscaled to 800x600.
    tags = {0x920A: 4.25, 0xA20E: 800.0, 0xA20F: 800.0, 0xA210: 4, 0xA002: 4000, 0xA003: 3000}
    photo = load_photo(_jpeg(tmp_path / "s.jpg", _pixels(800, 600), tags))
    cam = guess_camera(photo.size, photo.exif)
    assert cam.source == "exif-sensor"
    assert cam.intrinsics.fx == pytest.approx(4.25 * 800 / 5)
    # Nonsense sensor tags (a 0.2 degree field of view) are not trusted: the stated default instead.
    bad = from_exif({0x920A: 4.25, 0xA20E: 1e6, 0xA210: 4}, (800, 600))
    assert bad is None


def test_exif_orientation_applies_to_pixels_clicks_and_intrinsics(tmp_path):
    raw = _pixels(640, 480)
    raw[10:30, 590:630] = (0, 0, 255)  # a blue patch near the raw top-right corner
    # Orientation 6: "rotate 90 degrees clockwise to display"; different x/y sensor densities.
    tags = {0x920A: 4.0, 0xA20E: 100.0, 0xA20F: 110.0, 0xA210: 4}
    photo = load_photo(_jpeg(tmp_path / "r.jpg", raw, tags, orientation=6))
    assert photo.size == (480, 640)
    # Clockwise: raw (x, y) -> displayed (H - 1 - y, x); raw (610, 20) -> (459, 610).
    assert photo.image.getpixel((459, 610))[2] > 200
    assert photo.image.getpixel((459, 610))[0] < 60
    cam = guess_camera(photo.size, photo.exif)
    # The raw y axis is the displayed x axis: fx comes from the y density, fy from the x density.
    assert (cam.intrinsics.fx, cam.intrinsics.fy) == pytest.approx((440, 400))
    assert cam.intrinsics.size == (480, 640)
    # A click on the patch renders a query whose marker points at the blue patch.
    q = render(photo.image, cam.intrinsics, (459, 610), RenderSettings(f_uni=400, marker="circle"))
    x, y = q.point
    assert q.image.getpixel((x, y))[2] > 200


# ---------------------------------------------------------------------------- untrusted photos


def test_untrusted_files_get_clear_messages(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture at all")
    with pytest.raises(DepthLMError, match="notes.jpg: not an image this tool reads"):
        load_photo(text)
    with pytest.raises(DepthLMError, match="no such file"):
        load_photo(tmp_path / "missing.jpg")
    # A decompression bomb: 100 megapixels that compress to a few kB. Refused from the header alone.
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(bomb)
    assert bomb.stat().st_size < 200_000
    start = time.perf_counter()
    with pytest.raises(DepthLMError, match=r"10000x10000 \(100 MP\), over the 50 MP limit"):
        load_photo(bomb)
    assert time.perf_counter() - start < 1.0
    # A truncated JPEG: the header reads, the pixels do not.
    good = _jpeg(tmp_path / "t.jpg", _pixels())
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(DepthLMError, match="cut.jpg: cannot decode the image"):
        load_photo(cut)


def test_points_outside_the_photo_and_bad_coordinates_are_refused():
    with pytest.raises(
        DepthLMError, match=r"B \(640, 10\) is outside the 640x480 photo \(x must be in 0..639"
    ):
        check_points([(10, 10), (640, 10)], (640, 480))
    with pytest.raises(DepthLMError, match="A \\(-1, 5\\), B \\(3, 480\\) are outside"):
        check_points([(-1, 5), (3, 480)], (640, 480))
    with pytest.raises(DepthLMError, match="expected X,Y"):
        parse_point("left")
    with pytest.raises(DepthLMError, match="finite"):
        parse_point("nan,3")
    assert parse_point("12.5, 7") == (12.5, 7.0)
    assert parse_point("12 7") == (12.0, 7.0)


# ---------------------------------------------------------------------------- asking


def _ray(point, k: Intrinsics) -> np.ndarray:
    v = np.array([(point[0] - k.cx) / k.fx, (point[1] - k.cy) / k.fy, 1.0])
    return v / np.linalg.norm(v)


def test_two_points_give_answers_and_their_3d_distance():
    image = Image.fromarray(_pixels())
    k = from_fov(image.size, 90)
    points = [(100.0, 100.0), (500.0, 300.0)]
    settings = RenderSettings(f_uni=300)
    backend = make_backend(None, "constant:2.5", settings)
    result = ask(backend, image, k, points, settings)
    assert [a.metres for a in result.answers] == [2.5, 2.5]
    assert [a.label for a in result.answers] == ["A", "B"]
    # "How far from the camera" is a ray distance: both points lie 2.5 m along their own rays.
    expected = np.linalg.norm(2.5 * _ray(points[0], k) - 2.5 * _ray(points[1], k))
    ((a, b, d),) = result.distances()
    assert (a, b) == ("A", "B") and d == pytest.approx(expected)
    # With z-depth answers the two points lie on the plane z = 2.5.
    z_result = ask(backend, image, k, points, settings.with_(depth_target="z"))
    dz = np.hypot((points[0][0] - points[1][0]) / k.fx, (points[0][1] - points[1][1]) / k.fy) * 2.5
    assert z_result.distances()[0][2] == pytest.approx(dz)
    assert "A-B: " in "\n".join(result.lines())


def test_unparseable_answers_give_no_distance_and_say_so():
    image = Image.fromarray(_pixels())
    settings = RenderSettings(f_uni=300)

    class Silent:  # a backend whose model says nothing useful (the Backend protocol, not a mock of ask)
        def generate(self, queries, max_tokens=None, structured=False):
            return ["I cannot tell."] * len(queries)

    result = ask(Silent(), image, from_fov(image.size, 60), [(10, 10), (20, 20)], settings)
    assert [a.metres for a in result.answers] == [None, None] and result.distances() == []
    assert "no 3D distance for A, B" in "\n".join(result.lines())


def test_a_users_question_replaces_the_template_words_only():
    image = Image.fromarray(_pixels())
    settings = RenderSettings(f_uni=300)
    k = from_fov(image.size, 60)
    (own,) = render_points(image, k, [(50, 60)], settings, "How far is the mug?")
    (plain,) = render_points(image, k, [(50, 60)], settings)
    assert own.messages(with_answer=False)[-1]["content"][1]["text"] == "How far is the mug?"
    assert np.array_equal(np.asarray(own.image), np.asarray(plain.image))


def test_ask_cli_on_the_tiny_model_prints_and_saves_what_it_sent(tiny_model_dir, tmp_path, capsys):
    photo = _jpeg(tmp_path / "room.jpg", _pixels(), {0xA405: 26})
    code = cli.main(
        [
            "ask",
            "--model",
            str(tiny_model_dir),
            "--backend",
            "transformers",
            "--dtype",
            "float32",
            "--image",
            str(photo),
            "--point",
            "100,120",
            "--point",
            "520,300",
            "--save",
            str(tmp_path / "out" / "q"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "camera: " in out and "exif-35mm" in out
    settings = resolve_settings(tiny_model_dir)
    k = from_35mm((640, 480), 26)
    image = load_photo(photo).image
    sent = render(image, k, (100, 120), settings)
    saved = Image.open(tmp_path / "out" / "q-A.png")
    assert np.array_equal(np.asarray(saved), np.asarray(sent.image))  # the saved view is what was sent
    assert (tmp_path / "out" / "q-B.png").is_file() and (tmp_path / "out" / "q-points.png").is_file()
    # The printed answer is the model's own answer to that view.
    backend = make_backend("transformers", str(tiny_model_dir), settings, dtype="float32")
    texts = backend.generate([sent, render(image, k, (520, 300), settings)])  # the same batch as the CLI's
    assert "A (100, 120): " in out and "B (520, 300): " in out
    assert all(repr(t.strip()) in out for t in texts)


def test_ask_cli_refuses_bad_input_before_loading_a_model(tmp_path, capsys):
    photo = _jpeg(tmp_path / "p.jpg", _pixels())
    code = cli.main(["ask", "--model", "/no/such/model", "--image", str(photo), "--point", "700,10"])
    assert code == 2
    assert "A (700, 10) is outside the 640x480 photo" in capsys.readouterr().err


def test_ask_writes_no_files_unless_asked(tmp_path, monkeypatch, capsys):
    photo = _jpeg(tmp_path / "p.jpg", _pixels())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = ["ask", "--model", "constant:2.0", "--image", str(photo), "--point", "100,120"]
    assert cli.main(args) == 0
    assert list(work.iterdir()) == [] and "saved:" not in capsys.readouterr().out
    assert cli.main([*args, "--save", "out/q"]) == 0
    assert sorted(p.name for p in (work / "out").iterdir()) == ["q-A.png", "q-points.png"]


def test_save_images_writes_one_view_per_point_and_the_labelled_photo(tmp_path):
    image = Image.fromarray(_pixels())
    settings = RenderSettings(f_uni=300)
    result = ask(
        make_backend(None, "constant:2", settings), image, from_fov(image.size, 60), [(5, 5)], settings
    )
    paths = save_images(result, image, tmp_path / "x")
    assert [p.name for p in paths] == ["x-A.png", "x-points.png"]
    assert Image.open(paths[1]).size == image.size


def test_app_maps_clicks_on_a_downscaled_display_back_to_photo_pixels(tmp_path):
    from depthlm.app import on_click, on_upload

    big = _jpeg(tmp_path / "big.jpg", _pixels(2560, 1920), {0xA405: 26})
    state, shown, fx, fy, cx, cy, _, _, note = on_upload(str(big))
    assert shown.size == (1280, 960)  # displayed at half size
    assert (fx, cx, cy) == pytest.approx((round(from_35mm((2560, 1920), 26).fx, 2), 1279.5, 959.5))
    assert "exif-35mm" in note
    state, _, points, status = on_click(state, 100, 50)
    assert state.points == [(200.5, 100.5)] and points == "A: (200.5, 100.5)"
    state, _, points, status = on_click(state, 1280, 5)  # just past the right edge
    assert "B (2560.5, 10.5) is outside the 2560x1920 photo" in status and len(state.points) == 1
    state, *_, note = on_upload(str(tmp_path / "nothing.jpg"))
    assert state.photo is None and "no such file" in note
