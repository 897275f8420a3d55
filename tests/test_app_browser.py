"""``depthlm app`` end to end in a real headless browser (Playwright driving Debian's chromium).

The app runs as its own process on loopback with the transformers backend on the tiny model;
the browser uploads a photo with EXIF, clicks two points, asks, and the test checks what a
person would see: prefilled intrinsics, the clicked coordinates, the answers (identical to
asking the same backend directly) and the views the model was sent.
Needs `apt-get install chromium` (.ci/run installs it in CI; skipped without it) and the playwright package (dev extra);
never runs `playwright install`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian chromium not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None, reason="playwright (dev extra) missing"
    ),
]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _photo(path: Path) -> Path:
    """A 640x480 JPEG with a 28 mm-equivalent focal length in EXIF, as a phone writes it."""
    rng = np.random.default_rng(1)
    pixels = (rng.random((480, 640, 3)) * 255).astype("uint8")
    pixels[:, :320] //= 2  # a left/right difference so the two views differ
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 28
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


@pytest.fixture(scope="module")
def app_url(tiny_model_dir, tmp_path_factory):
    model = ["--model", str(tiny_model_dir), "--backend", "transformers", "--dtype", "float32"]
    yield from _serve(model, tmp_path_factory)


@pytest.fixture(scope="module")
def constant_app_url(tmp_path_factory):
    yield from _serve(["--model", "constant:2.0"], tmp_path_factory)


def _serve(model_args: list[str], tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    cmd = [sys.executable, "-m", "depthlm.cli", "app", *model_args, "--port", str(port)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"depthlm app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


TASKS = "depth,distance,region"  # what the task model's folder records (closer, motion, ... not)


@pytest.fixture(scope="module")
def tasks_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model in a folder whose depthlm_render.json records three tasks, as training on a
    task mix writes it."""
    import shutil

    from depthlm.settings import resolve_settings

    folder = tmp_path_factory.mktemp("tasks-model") / "tiny-tasks"
    shutil.copytree(tiny_model_dir, folder)
    resolve_settings(tiny_model_dir).with_(tasks=TASKS).save(folder)
    return folder


@pytest.fixture(scope="module")
def tasks_app_url(tasks_model_dir, tmp_path_factory):
    model = ["--model", str(tasks_model_dir), "--backend", "transformers", "--dtype", "float32"]
    yield from _serve(model, tmp_path_factory)


@pytest.fixture(scope="module")
def browser():
    """One chromium for the module (Playwright's sync API runs one instance per thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _new_page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    return page


@pytest.fixture(scope="module")
def page(browser, app_url):
    yield (page := _new_page(browser))
    page.close()


@pytest.fixture(scope="module")
def tasks_page(browser, tasks_app_url):
    yield (page := _new_page(browser))
    page.close()


def _value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first.input_value()


def _wait_value(page, elem_id: str, pattern: str) -> str:
    page.wait_for_function(
        """([id, pattern]) => {
            const el = document.querySelector(`#${id} input, #${id} textarea`);
            return el && new RegExp(pattern).test(el.value);
        }""",
        arg=[elem_id, pattern],
    )
    return _value(page, elem_id)


def test_upload_click_two_points_ask_and_see_answers(page, app_url, tiny_model_dir, tmp_path):
    from depthlm.ask import ask, load_photo
    from depthlm.geometry import Intrinsics
    from depthlm.inference import make_backend
    from depthlm.intrinsics_guess import from_35mm
    from depthlm.settings import resolve_settings

    photo_path = _photo(tmp_path / "room.jpg")
    page.goto(app_url)
    page.locator("#upload input[type=file]").set_input_files(str(photo_path))

    # Intrinsics prefilled from EXIF (28 mm equivalent, diagonal-based).
    expected = from_35mm((640, 480), 28)
    fx = float(_wait_value(page, "fx", r"^[1-9]"))
    shown_k = [fx, *(float(_value(page, name)) for name in ("fy", "cx", "cy"))]
    assert shown_k == pytest.approx([expected.fx, expected.fy, 319.5, 239.5], abs=0.01)
    assert "exif-35mm" in page.locator("#status").inner_text()

    # Click two points; the page reports them in photo pixels.
    img = page.locator("#view img")
    img.wait_for()
    box = img.bounding_box()
    clicks = [(0.25, 0.5), (0.75, 0.3)]
    for i, (fx_, fy_) in enumerate(clicks):
        img.click(position={"x": box["width"] * fx_, "y": box["height"] * fy_})
        text = _wait_value(page, "points", "AB"[i] + ":")
    points = [tuple(map(float, m)) for m in re.findall(r"\(([\d.]+), ([\d.]+)\)", text)]
    assert len(points) == 2
    for (x, y), (fx_, fy_) in zip(points, clicks):
        assert x == pytest.approx(fx_ * 640, abs=3) and y == pytest.approx(fy_ * 480, abs=3)

    page.locator("#ask").click()
    shown = _wait_value(page, "answer", r"B \(")

    # What the page shows is what the same backend answers for the same photo, points and camera.
    settings = resolve_settings(tiny_model_dir)
    backend = make_backend("transformers", str(tiny_model_dir), settings, dtype="float32")
    camera = Intrinsics(*shown_k, 640, 480)
    direct = ask(backend, load_photo(photo_path).image, camera, points, settings)
    assert shown.splitlines() == direct.lines()
    assert page.locator("#sent img").count() >= 2  # the two marked views the model was sent


def test_non_image_upload_gets_a_clear_message(page, app_url, tmp_path):
    bogus = tmp_path / "notes.png"
    bogus.write_text("this is not a picture")
    page.goto(app_url)
    page.locator("#upload input[type=file]").set_input_files(str(bogus))
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('Error')")
    message = page.locator("#status").inner_text()
    assert "notes.png: not an image this tool reads" in message
    assert "/tmp" not in message  # the server's temporary path is not shown


def test_depth_map_tab_computes_shows_map_cloud_and_downloads(page, constant_app_url, tmp_path):
    """The depth-map tab: upload, a 16x12 grid, Compute; the colour map, the 3D viewer's canvas and
    the four downloads appear. DEPTHLM_APP_SCREENSHOT=path keeps a screenshot (docs/chat.md's)."""
    photo_path = _photo(tmp_path / "room.jpg")
    page.goto(constant_app_url)
    page.get_by_role("tab", name="Depth map").click()
    page.locator("#dense-upload input[type=file]").set_input_files(str(photo_path))
    fx = float(_wait_value(page, "dense-fx", r"^[1-9]"))
    fov = float(_value(page, "dense-fov"))
    assert fov == pytest.approx(np.degrees(2 * np.arctan(320 / fx)), abs=0.01)
    for elem_id, value in (("dense-cols", "16"), ("dense-rows", "12")):
        field = page.locator(f"#{elem_id} input[type=number]")
        field.fill(value)
        field.press("Enter")
    page.locator("#dense-compute").click()
    page.wait_for_function(
        "() => document.querySelector('#dense-status').innerText.includes('192 pixels asked in 192 queries')"
    )
    page.locator("#dense-map img").wait_for()
    page.locator("#dense-cloud canvas").wait_for()
    names = "".join(page.locator("#dense-files").inner_text().split())  # the list breaks names at the dot
    for name in ("depth.png", "depth.npy", "cloud.ply", "dense.json"):
        assert name in names, names
    shot = Path(os.environ.get("DEPTHLM_APP_SCREENSHOT") or tmp_path / "dense_tab.png")
    page.wait_for_timeout(1500)  # let the viewer draw the cloud
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] >= 1000


def _menu(page) -> list[str]:
    """The choices the "Kind of question" menu lists when opened."""
    page.locator("#task input").click()
    items = page.locator("li.item[aria-label]")
    items.first.wait_for()
    return items.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")


def _choose(page, task: str) -> None:
    if not page.locator(f"li.item[aria-label='{task}']").is_visible():
        page.locator("#task input").click()
    page.locator(f"li.item[aria-label='{task}']").click()
    page.wait_for_function("t => document.querySelector('#task input').value === t", arg=task)


def _wait_text(page, elem_id: str, text: str) -> None:
    page.wait_for_function(
        "([id, text]) => document.querySelector(`#${id}`).innerText.includes(text)", arg=[elem_id, text]
    )


def _shown_photo(page) -> np.ndarray:
    """The clickable picture as the page shows it (a data URL or a file the app serves)."""
    import base64
    import io

    src = page.locator("#view img").get_attribute("src")
    if src.startswith("data:"):
        data = base64.b64decode(src.split(",", 1)[1])
    else:
        with urllib.request.urlopen(urllib.parse.urljoin(page.url, src), timeout=10) as resp:
            data = resp.read()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _click(page, fractions) -> list[tuple[float, float]]:
    img = page.locator("#view img")
    img.wait_for()
    box = img.bounding_box()
    for i, (fx_, fy_) in enumerate(fractions):
        img.click(position={"x": box["width"] * fx_, "y": box["height"] * fy_})
        text = _wait_value(page, "points", "AB"[i] + ":")
    return [tuple(map(float, m)) for m in re.findall(r"\(([\d.]+), ([\d.]+)\)", text)]


def test_kind_of_question_menu_asks_distance_and_region(tasks_page, tasks_app_url, tasks_model_dir, tmp_path):
    """The menu offers the tasks the model's folder records (not closer, not motion); distance: two
    clicks, Ask, the answer the same backend gives for those picks; region: two corners, the box
    drawn on the photo in the view's box colour, Ask, the answer for that box and name.
    DEPTHLM_APP_TASKS_SCREENSHOT=path keeps a screenshot of the tab (docs/chat.md's)."""
    from playwright.sync_api import expect

    from depthlm.app import task_picks
    from depthlm.ask import ask_task, load_photo
    from depthlm.geometry import Intrinsics
    from depthlm.inference import make_backend
    from depthlm.settings import resolve_settings
    from depthlm.tasks.region import BOX_COLOR

    page = tasks_page
    photo_path = _photo(tmp_path / "room.jpg")
    page.goto(tasks_app_url)
    assert _menu(page) == TASKS.split(",")
    _choose(page, "distance")
    _wait_text(page, "status", "Click two points")
    expect(page.locator("#details")).to_be_hidden()  # distance reads no details
    page.locator("#upload input[type=file]").set_input_files(str(photo_path))
    _wait_value(page, "fx", r"^[1-9]")
    camera = Intrinsics(*(float(_value(page, n)) for n in ("fx", "fy", "cx", "cy")), 640, 480)
    points = _click(page, [(0.25, 0.5), (0.75, 0.3)])
    assert len(points) == 2
    page.locator("#ask").click()
    shown = _wait_value(page, "answer", r"distance: ")

    settings = resolve_settings(tasks_model_dir)
    backend = make_backend("transformers", str(tasks_model_dir), settings, dtype="float32")
    image = load_photo(photo_path).image
    direct = ask_task(backend, "distance", image, camera, settings, **task_picks("distance", points, ""))
    assert shown.splitlines() == [direct.query.question, *direct.lines()]
    assert "How far apart are the points marked A and B" in shown
    assert page.locator("#sent img").count() == 1  # the one view, with both markers

    # region: two corners -> the box on the photo; a name in Details; Ask.
    _choose(page, "region")
    _wait_text(page, "status", "opposite corners")  # one event at a time: the page's state settles
    expect(page.locator("#details")).to_be_visible()  # region's name goes there
    page.locator("#clear").click()
    _wait_text(page, "status", "Points cleared")
    before = _shown_photo(page)
    corners = _click(page, [(0.3, 0.3), (0.6, 0.7)])
    for _ in range(40):  # the picture may arrive just after the points text of the same event
        after = _shown_photo(page)
        green = np.all(after == BOX_COLOR[1], axis=2)
        if green.any():
            break
        page.wait_for_timeout(250)
    assert not np.all(before == BOX_COLOR[1], axis=2).any()
    (x0, y0), (x1, y1) = corners
    ys, xs = np.nonzero(green)
    assert len(xs) > (x1 - x0 + y1 - y0)  # the outline, all round
    gap = np.minimum.reduce([np.abs(xs - x0), np.abs(xs - x1), np.abs(ys - y0), np.abs(ys - y1)])
    assert (gap <= 6).all() and xs.min() < x0 < x1 < xs.max() and ys.min() < y0 < y1 < ys.max()
    page.locator("#details textarea, #details input").first.fill("chair")
    page.locator("#ask").click()
    shown = _wait_value(page, "answer", r"region: ")
    direct = ask_task(backend, "region", image, camera, settings, **task_picks("region", corners, "chair"))
    assert shown.splitlines() == [direct.query.question, *direct.lines()]
    assert "chair inside the green box" in shown
    page.locator("#sent img").first.wait_for()
    shot = os.environ.get("DEPTHLM_APP_TASKS_SCREENSHOT")  # docs/chat.md's picture of the menu at work
    if shot:
        page.wait_for_timeout(500)
        page.locator("#points-tab").screenshot(
            path=shot, **({"quality": 70} if shot.endswith(".jpg") else {})
        )
