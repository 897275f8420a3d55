"""A web page to ask how far things in a photo are (Gradio).

Upload a photo, click to place one or more points (A, B, ...), ask: the page shows each
point's answer and metres, the 3D distance between points, and the marked views the model
was sent. The intrinsics fields are prefilled from the photo's EXIF (or a stated default,
with a warning) and can be edited, or set from a horizontal field of view. A second tab, "Depth
map", runs ``depthlm dense`` on the photo (``depthlm.dense.depth_map_view``): a grid (and K points
per query for models trained on ``points``), a progress bar, the colour map, a 3D point cloud and
the PNG/NPY/PLY/JSON downloads. Started by ``depthlm app``; binds to 127.0.0.1 unless told
otherwise.

The page keeps no photo on the server beyond the session: the uploaded file is read once,
through the same safe loader as ``depthlm ask`` (format list, pixel limit, EXIF orientation).
Gradio stores uploads in a folder of this page's own (``depthlm-app-*`` in the system temp
folder, not gradio's shared one), deletes files older than an hour while it runs, and
:func:`close` removes the folder when the app stops (at exit too, if it is not called). Depth
maps and clouds are written into that folder too (``dense-*``), so they go with it.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field

from PIL import Image

from depthlm.ask import AskResult, Photo, ask, check_points, label_for, load_photo, marked_photo
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics
from depthlm.intrinsics_guess import CameraGuess, guess_camera
from depthlm.settings import RenderSettings

DISPLAY_MAX_SIDE = 1280  # the clickable picture is at most this large; clicks are mapped back
UPLOAD_MAX_AGE_S = 3600  # uploads older than this are deleted while the app runs (checked every 10 min)


@dataclass
class PageState:
    """One visitor's photo and points (gradio keeps one per browser session)."""

    photo: Photo | None = None
    camera: CameraGuess | None = None
    scale: float = 1.0  # photo pixels per displayed pixel
    points: list[tuple[float, float]] = field(default_factory=list)
    task: str = "depth"  # the "Kind of question" chosen: region draws its box from the last two clicks

    def region_box(self) -> list[float] | None:
        """The box the last two clicks span (photo pixels, inclusive), when the task is ``region``."""
        if self.task != "region" or len(self.points) < 2:
            return None
        (x0, y0), (x1, y1) = self.points[-2:]
        return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]

    def display(self) -> Image.Image | None:
        """The photo with its markers (and a region's box, in the colour the model's view uses), at
        display size."""
        if self.photo is None:
            return None
        marked = marked_photo(self.photo.image, self.points)
        box = self.region_box()
        if box is not None:
            from depthlm.markers import draw_box
            from depthlm.tasks.region import BOX_COLOR

            marked = draw_box(marked, box, BOX_COLOR[1], width=max(2, round(min(marked.size) / 160)))
        if self.scale == 1.0:
            return marked
        size = (round(marked.width / self.scale), round(marked.height / self.scale))
        return marked.resize(size, Image.Resampling.LANCZOS)

    def points_text(self) -> str:
        return "\n".join(f"{label_for(i)}: ({x:g}, {y:g})" for i, (x, y) in enumerate(self.points))


def on_upload(path: str | None, task: str | None = None):
    """A new photo: load it safely, prefill the intrinsics, forget the old points (the kind of
    question chosen stays)."""
    state = PageState(task=task or "depth")
    if not path:
        return state, None, None, None, None, None, "", "", "Upload a photo to begin."
    try:
        photo = load_photo(path)
    except DepthLMError as err:
        return state, None, None, None, None, None, "", "", f"**Error:** {_strip_path(str(err), path)}"
    state.photo = photo
    state.camera = guess_camera(photo.size, photo.exif)
    state.scale = max(1.0, max(photo.size) / DISPLAY_MAX_SIDE)
    k = state.camera.intrinsics
    note = (
        f"{photo.size[0]}x{photo.size[1]} photo. Intrinsics: {state.camera.source} ({state.camera.detail})."
    )
    if state.camera.warning:
        note += f"\n\n**Warning:** {state.camera.warning}"
    note += "\n\nClick on the photo to place points."
    fields = [round(v, 2) for v in (k.fx, k.fy, k.cx, k.cy)]
    return state, state.display(), *fields, "", "", note


def on_click(state: PageState, x: float, y: float):
    """A click at display pixel (x, y): a new point, in photo pixels."""
    if state.photo is None:
        return state, None, "", "Upload a photo first."
    s = state.scale
    point = ((x + 0.5) * s - 0.5, (y + 0.5) * s - 0.5)
    point = (round(point[0], 1), round(point[1], 1))
    label = label_for(len(state.points))
    try:
        check_points([point], state.photo.size, [label])
    except DepthLMError as err:
        return state, state.display(), state.points_text(), f"**Error:** {err}"
    state.points.append(point)
    return state, state.display(), state.points_text(), f"{label} placed at ({point[0]:g}, {point[1]:g})."


def on_clear(state: PageState):
    state.points = []
    return state, state.display(), "", "Points cleared."


TASK_CLICKS = {
    "depth": "Click the points to ask about (one answer each).",
    "points": "Click the points: one question about all of them.",
    "distance": "Click two points: how far apart they are.",
    "closer": "Click two points: which is closer to the camera.",
    "region": "Click two opposite corners of the object's box; Details: its name (optional).",
    "hinted": "Click the hint points and then the point to ask; Details: A=2.0 (a hint's metres).",
    "time": "Click the point to reach; Details: the speed in m/s.",
}


TASK_DETAILS = ("region", "hinted", "time")  # the kinds that read the Details field


def on_task(state: PageState, task: str | None):
    """A kind of question chosen: redraw (a region's box) and say what to click."""
    state.task = task or "depth"
    return state, state.display(), TASK_CLICKS.get(state.task, "")


def intrinsics_from_fields(state: PageState, fx, fy, cx, cy) -> Intrinsics:
    values = [fx, fy, cx, cy]
    if any(v is None for v in values):
        raise DepthLMError("fill in all four intrinsics (fx, fy, cx, cy in pixels)")
    text = ",".join(str(float(v)) for v in values)
    return guess_camera(state.photo.size, intrinsics=text).intrinsics


def fov_of(state: PageState, fx) -> float | None:
    """The horizontal field of view (degrees) that the fx field means for this photo."""
    if state.photo is None or not fx or not math.isfinite(float(fx)) or fx <= 0:
        return None
    return round(math.degrees(2 * math.atan(state.photo.size[0] / 2 / float(fx))), 2)


def on_fov(state: PageState, fov, fx, fy, cx, cy):
    """A typed field of view: fx = fy for it and the centre, through the one plausibility check."""
    if state.photo is None:
        return fx, fy, cx, cy, "Upload a photo first."
    try:
        k = guess_camera(state.photo.size, fov=float(fov)).intrinsics
    except (DepthLMError, TypeError, ValueError) as err:
        return fx, fy, cx, cy, f"**Error:** {err}"
    return *(
        round(v, 2) for v in (k.fx, k.fy, k.cx, k.cy)
    ), f"Intrinsics from a {float(fov):g} degree field of view."


def result_text(result: AskResult) -> str:
    return "\n".join(result.lines())


APP_TASK_HINT = (
    "points/distance/closer: the clicked points; region: click two corners of the box (details: its "
    "name); hinted: details A=2.0 gives A's distance, the last other point is asked; time: details = m/s"
)


def task_picks(task: str, points: list[tuple[float, float]], details: str) -> dict:
    """What ``depthlm.ask.task_query`` needs, from the page's clicks and its one details field."""
    from depthlm.ask import label_for

    details = (details or "").strip()
    if task == "region":
        if len(points) < 2:
            raise DepthLMError("region: click two opposite corners of the object's box")
        (x0, y0), (x1, y1) = points[-2:]
        box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        return {"box": box, "name": details or None}
    if task == "time":
        try:
            return {"points": points[-1:], "speed": float(details)}
        except ValueError:
            raise DepthLMError("time: type the speed in m/s in the details field, e.g. 1.4") from None
    if task == "hinted":
        labels = {label_for(i): p for i, p in enumerate(points)}
        known = {}
        for part in details.replace(",", " ").split():
            label, _, metres = part.partition("=")
            if label.upper() not in labels:
                raise DepthLMError(f"hinted: no point {label!r} (details like A=2.0)")
            known[label.upper()] = float(metres)
        asked = [p for label, p in labels.items() if label not in known][-1:]
        return {"known": [(labels[k], m) for k, m in known.items()], "points": asked}
    if task in ("distance", "closer"):
        return {"points": points[-2:]}
    return {"points": points if task == "points" else points[-1:]}


DENSE_K_CHOICES = (1, 4, 8, 16)  # points per query offered when the model was trained on ``points``
DENSE_MAX_QUERIED = 128 * 96  # pixels one page request may ask about (sliders stop there; the API too)
DISPLAY_MAX_POINTS = 150_000  # the 3D view's cloud is thinned to about this many points


def dense_options(cols, rows, k, tasks: list[str]):
    """The depth-map view's grid and K as DenseOptions, checked (the page's sliders can be bypassed)."""
    from depthlm.dense import DenseOptions

    try:
        cols, rows, k = int(cols), int(rows), int(k or 1)
    except (TypeError, ValueError):
        raise DepthLMError("grid columns, rows and K must be whole numbers") from None
    if not (1 <= cols and 1 <= rows and cols * rows <= DENSE_MAX_QUERIED):
        raise DepthLMError(f"grid {cols}x{rows}: columns and rows >= 1, at most {DENSE_MAX_QUERIED} points")
    if k != 1 and "points" not in tasks:
        raise DepthLMError(
            f"K={k} points per query needs a model trained on the points task; this one: {tasks}"
        )
    return DenseOptions(grid=(cols, rows), k=k)


def display_cloud(depth_npy, image: Image.Image, intrinsics: Intrinsics, path) -> str:
    """A thinned copy of the cloud for gradio's 3D view (binary PLY, which its viewer loads with
    babylon.js), y flipped so the scene stands upright there; the full cloud stays the download."""
    import numpy as np

    from depthlm.dense import writers

    depth = np.load(depth_npy)
    stride = max(1, int(np.ceil(np.sqrt(np.isfinite(depth).sum() / DISPLAY_MAX_POINTS))))
    xyz, rgb = writers.cloud(depth, intrinsics, image, stride=stride)
    xyz[:, 1] *= -1
    return str(writers.write_ply(xyz, rgb, path))


def camera_fields(gr, prefix: str = ""):
    """The intrinsics row of a tab: fx, fy, cx, cy and the FOV alternative (element ids PREFIXfx ...)."""
    with gr.Row():
        fields = [
            gr.Number(label=f"{name} (px)", elem_id=f"{prefix}{name}") for name in ("fx", "fy", "cx", "cy")
        ]
        fields.append(gr.Number(label="or horizontal FOV (deg)", elem_id=f"{prefix}fov"))
    return fields


def build_app(backend, settings: RenderSettings, *, max_tokens: int | None = None, model_name: str = ""):
    """The gr.Blocks page around one backend (``depthlm.inference.make_backend``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from depthlm.ask import default_question as question_for

    default_question = question_for(settings)  # worded by the rendering path, as the model is asked

    def click(state: PageState, evt: gr.SelectData):
        x, y = evt.index
        return on_click(state, float(x), float(y))

    click.__annotations__["evt"] = gr.SelectData  # a real class: gradio finds event data by annotation

    from depthlm.ask import ask_task, offered_tasks

    app_tasks = [t for t in offered_tasks(settings) if t != "motion"]  # motion needs a second photo: ask/chat

    def run_ask(state: PageState, fx, fy, cx, cy, question, task="depth", details=""):
        if state.photo is None:
            return "", [], "Upload a photo first."
        try:
            intr = intrinsics_from_fields(state, fx, fy, cx, cy)
            if task and task != "depth":
                picks = task_picks(task, list(state.points), details)
                a = ask_task(backend, task, state.photo.image, intr, settings, max_tokens, **picks)
                gallery = [(im, f"{task}: what the model saw") for im in a.query.images]
                return "\n".join([a.query.question, *a.lines()]), gallery, f"Asked a {task} question."
            result = ask(backend, state.photo.image, intr, state.points, settings, question, max_tokens)
        except DepthLMError as err:
            return "", [], f"**Error:** {err}"
        gallery = [(a.query.image, f"{a.label}: what the model saw") for a in result.answers]
        return result_text(result), gallery, f"Asked about {len(result.answers)} point(s)."

    with_points = "points" in offered_tasks(settings)

    def load_dense(path: str | None):
        state, _, fx_, fy_, cx_, cy_, _, _, note = on_upload(path)
        note = note.replace("Click on the photo to place points.", "Choose the grid and press **Compute**.")
        return state, fx_, fy_, cx_, cy_, fov_of(state, fx_), None, None, None, note

    def run_dense_view(state: PageState, fx, fy, cx, cy, cols, rows, k, progress=None):
        """Grid -> depth map: colour preview, 3D cloud, and the PNG/NPY/PLY/JSON downloads, all in
        this page's upload folder (removed when the app stops)."""
        from depthlm.dense import depth_map_view

        if state.photo is None:
            return None, None, None, "Upload a photo first."
        try:
            intr = intrinsics_from_fields(state, fx, fy, cx, cy)
            options = dense_options(cols, rows, k, offered_tasks(settings))
            out = tempfile.mkdtemp(prefix="dense-", dir=upload_dir)
            if progress is not None:
                progress(0, desc="asking the model")
            image, files = depth_map_view(backend, state.photo.image, intr, out, options)
            shown = display_cloud(files["npy"], state.photo.image, intr, os.path.join(out, "view.ply"))
        except DepthLMError as err:
            return None, None, None, f"**Error:** {err}"
        summary = json.loads(files["json"].read_text(encoding="utf-8"))
        stats, seconds = summary["stats"], sum(summary["timing_s"].values())
        note = (
            f"{stats['points']} pixels asked in {stats['queries']} queries ({options.describe()['query']}), "
            f"{stats['missing_points']} without an answer; {seconds:.1f} s. "
            f"Map {state.photo.size[0]}x{state.photo.size[1]}, {stats['cloud_points']} cloud points."
        )
        downloads = [str(files[key]) for key in ("png", "npy", "ply", "json")]
        return image, shown, downloads, note

    def dense_click(state, fx, fy, cx, cy, cols, rows, k, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        return run_dense_view(state, fx, fy, cx, cy, cols, rows, k, progress)

    upload_dir = tempfile.mkdtemp(prefix="depthlm-app-")
    os.environ["GRADIO_TEMP_DIR"] = upload_dir  # read by gradio when it makes the page and its server
    atexit.register(shutil.rmtree, upload_dir, True)
    with gr.Blocks(title="depthlm: how far is it?", delete_cache=(600, UPLOAD_MAX_AGE_S)) as page:
        gr.Markdown(
            "## How far is it?\nUpload a photo, click to place points, press **Ask**. "
            f"Model: `{model_name or backend.describe().get('model', '')}`."
        )
        state = gr.State(PageState())
        with gr.Tab("Points", elem_id="points-tab"), gr.Row():
            with gr.Column(scale=3):
                upload = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="upload")
                view = gr.Image(
                    label="Click to place points (A, B, ...)",
                    type="pil",
                    format="png",
                    interactive=False,
                    elem_id="view",
                )
            with gr.Column(scale=2):
                status = gr.Markdown("Upload a photo to begin.", elem_id="status")
                fx, fy, cx, cy, fov = camera_fields(gr)
                points = gr.Textbox(
                    label="Points (x, y in photo pixels)", interactive=False, elem_id="points"
                )
                question = gr.Textbox(label="Question (optional)", placeholder=default_question)
                task = gr.Dropdown(
                    app_tasks,
                    value="depth",
                    label="Kind of question",
                    visible=len(app_tasks) > 1,
                    elem_id="task",
                )
                details = gr.Textbox(
                    label="Details", placeholder=APP_TASK_HINT, visible=False, elem_id="details"
                )
                with gr.Row():
                    ask_button = gr.Button("Ask", variant="primary", elem_id="ask")
                    clear_button = gr.Button("Clear points", elem_id="clear")
                answer = gr.Textbox(label="Answer", lines=4, interactive=False, elem_id="answer")
                sent = gr.Gallery(label="What the model saw", columns=3, height=240, elem_id="sent")

        dense_state = gr.State(PageState())
        with gr.Tab("Depth map", elem_id="dense-tab"), gr.Row():
            with gr.Column(scale=2):
                dense_upload = gr.File(
                    label="Photo", file_types=["image"], type="filepath", elem_id="dense-upload"
                )
                dense_status = gr.Markdown("Upload a photo to begin.", elem_id="dense-status")
                dfx, dfy, dcx, dcy, dfov = camera_fields(gr, "dense-")
                with gr.Row():
                    cols = gr.Slider(2, 128, value=32, step=1, label="Grid columns", elem_id="dense-cols")
                    rows = gr.Slider(2, 96, value=24, step=1, label="Grid rows", elem_id="dense-rows")
                k = gr.Dropdown(
                    list(DENSE_K_CHOICES),
                    value=1,
                    label="Points per query (K)",
                    visible=with_points,
                    elem_id="dense-k",
                )
                compute = gr.Button("Compute", variant="primary", elem_id="dense-compute")
                downloads = gr.File(
                    label="Download (PNG mm, NPY m, PLY, JSON)", file_count="multiple", elem_id="dense-files"
                )
            with gr.Column(scale=3):
                depth_image = gr.Image(
                    label="Depth map", type="pil", format="png", interactive=False, elem_id="dense-map"
                )
                cloud_view = gr.Model3D(
                    label="Point cloud", display_mode="point_cloud", elem_id="dense-cloud"
                )
        dense_upload.change(
            load_dense,
            dense_upload,
            [dense_state, dfx, dfy, dcx, dcy, dfov, depth_image, cloud_view, downloads, dense_status],
        )
        dfov.input(on_fov, [dense_state, dfov, dfx, dfy, dcx, dcy], [dfx, dfy, dcx, dcy, dense_status])
        dfx.input(fov_of, [dense_state, dfx], dfov)
        compute.click(
            dense_click,
            [dense_state, dfx, dfy, dcx, dcy, cols, rows, k],
            [depth_image, cloud_view, downloads, dense_status],
            api_name="depth_map",
        )

        upload.change(on_upload, [upload, task], [state, view, fx, fy, cx, cy, points, answer, status]).then(
            fov_of, [state, fx], fov
        )
        fov.input(on_fov, [state, fov, fx, fy, cx, cy], [fx, fy, cx, cy, status])
        fx.input(fov_of, [state, fx], fov)
        view.select(click, state, [state, view, points, status])
        clear_button.click(on_clear, state, [state, view, points, status])

        def choose_task(state: PageState, kind: str | None):
            """on_task, and show the fields the kind reads: your own words for depth, Details for
            region (the name), hinted (A=2.0) and time (m/s)."""
            state, shown, note = on_task(state, kind)
            return (
                state,
                shown,
                note,
                gr.update(visible=state.task == "depth"),
                gr.update(visible=state.task in TASK_DETAILS),
            )

        task.change(choose_task, [state, task], [state, view, status, question, details])
        ask_button.click(run_ask, [state, fx, fy, cx, cy, question, task, details], [answer, sent, status])
    page.depthlm_upload_dir = upload_dir
    return page


def close(page) -> None:
    """Stop serving `page` and delete every photo uploaded to it."""
    try:
        page.close()
    finally:
        folder = getattr(page, "depthlm_upload_dir", None)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def launch(page, host: str = "127.0.0.1", port: int | None = None, *, block: bool = True):
    """Serve the page; only on loopback unless `host` says otherwise."""
    import gradio as gr

    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )  # local fonts: the default theme fetches web fonts
    return page.launch(
        server_name=host,
        server_port=port,
        share=False,
        ssr_mode=False,
        max_file_size="100mb",
        theme=theme,
        prevent_thread_lock=not block,
        quiet=True,
    )


def _strip_path(message: str, path: str) -> str:
    """Upload errors name the file by its base name, not the server's temporary path."""
    return message.replace(str(path), os.path.basename(str(path)))
