"""Ask a model how far points in a user's photo are, and how far apart they are.

The library behind ``depthlm ask``, ``depthlm chat`` and ``depthlm app``::

    photo = load_photo("kitchen.jpg")
    camera = guess_camera(photo.size, photo.exif)              # EXIF, or a stated default
    result = ask(backend, photo.image, camera.intrinsics, [(320, 240), (500, 260)], settings)
    result.answers[0].metres, result.distances()                 # per point; 3D between points

Each point is one rendered query (``depthlm.render.render``: the same focal normalisation
and marker as in training), so the marker is drawn here, on the client, for every backend
(an OpenAI-compatible server receives the finished view). The distance between two points
comes from unprojecting both answers with the photo's intrinsics
(``depthlm.geometry.unproject``); it is only as good as the two answers and the focal length.

Photos are untrusted input: only common image formats are opened, the pixel count is checked
before decoding (decompression bombs), EXIF orientation is applied once, here, so the picture
shown, the clicks and the intrinsics share one frame.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics, inside, unproject
from depthlm.intrinsics_guess import read_exif
from depthlm.markers import draw_markers
from depthlm.parsing import parse_distance
from depthlm.render import Query, render
from depthlm.settings import RenderSettings

MAX_PHOTO_PIXELS = 50_000_000  # 50 MP: larger than any phone photo, far below a decompression bomb
MAX_PHOTO_BYTES = 100 * 1024 * 1024
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "MPO")  # MPO: multi-picture JPEGs from phones


@dataclass
class Photo:
    """A user's photo, oriented as it should be displayed, with the EXIF numbers for intrinsics."""

    image: Image.Image
    exif: dict[int, float]
    name: str = "photo"

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def load_photo(source: str | os.PathLike | Image.Image, *, max_pixels: int = MAX_PHOTO_PIXELS) -> Photo:
    """Open an untrusted photo safely (or wrap an already opened one); errors say what is wrong."""
    if isinstance(source, Image.Image):
        return _orient(source, "photo", max_pixels)
    path = Path(source)
    name = str(source)
    if not path.is_file():
        raise DepthLMError(f"{name}: no such file")
    if path.stat().st_size > MAX_PHOTO_BYTES:
        raise DepthLMError(f"{name}: file is over {MAX_PHOTO_BYTES // 2**20} MB")
    Image.init()  # registers every plugin, so formats= can name them
    try:
        with warnings.catch_warnings():  # the pixel limit below is ours, and stricter
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=[f for f in PHOTO_FORMATS if f in Image.OPEN])
    except UnidentifiedImageError:
        raise DepthLMError(
            f"{name}: not an image this tool reads (expected one of {', '.join(PHOTO_FORMATS)})"
        ) from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DepthLMError(f"{name}: cannot read the image: {err}") from None
    return _orient(image, name, max_pixels)


def _orient(image: Image.Image, name: str, max_pixels: int) -> Photo:
    w, h = image.size
    if w * h > max_pixels:  # checked from the header, before a single pixel is decoded
        raise DepthLMError(
            f"{name}: image is {w}x{h} ({w * h / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP limit; "
            "downscale it first"
        )
    if w < 2 or h < 2:
        raise DepthLMError(f"{name}: image is {w}x{h} pixels, too small to ask about")
    exif = read_exif(image)
    try:
        oriented = ImageOps.exif_transpose(image) or image
        rgb = oriented.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DepthLMError(f"{name}: cannot decode the image: {err}") from None
    return Photo(rgb, exif, name)


def parse_point(text: str) -> tuple[float, float]:
    """``"X,Y"`` (or ``"X Y"``) in pixels of the photo as displayed: x column, y row, from top-left."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        x, y = (float(p) for p in parts)
    except ValueError:
        raise DepthLMError(f"point {text!r}: expected X,Y in pixels, e.g. 320,240") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise DepthLMError(f"point {text!r}: coordinates must be finite numbers")
    return x, y


def check_points(
    points: Sequence[tuple[float, float]], size: tuple[int, int], labels: Sequence[str] | None = None
) -> None:
    """Refuse points outside the photo, naming each and the photo's size."""
    if not points:
        raise DepthLMError("no point given: place at least one point (x column, y row in pixels)")
    mask = inside(np.asarray(points, dtype=np.float64), size)
    names = list(labels) if labels is not None else [label_for(i) for i in range(len(points))]
    bad = [f"{n} ({p[0]:g}, {p[1]:g})" for n, p, ok in zip(names, points, mask) if not ok]
    if bad:
        raise DepthLMError(
            f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} outside the {size[0]}x{size[1]} photo "
            f"(x must be in 0..{size[0] - 1}, y in 0..{size[1] - 1})"
        )


def label_for(index: int) -> str:
    """A, B, ..., Z, A2, B2, ...: the names shown on the marked photo."""
    letter = chr(ord("A") + index % 26)
    return letter if index < 26 else f"{letter}{index // 26 + 1}"


@dataclass
class PointAnswer:
    label: str
    point: tuple[float, float]  # in the photo as displayed
    query: Query  # what was sent: its .image is the marked, focal-normalised view
    text: str  # the model's answer
    metres: float | None  # parsed from text; None when the answer holds no distance


@dataclass
class AskResult:
    answers: list[PointAnswer]
    intrinsics: Intrinsics
    depth_type: str  # what the answers measure: "ray" (distance from the camera) or "z"
    question: str
    notes: list[str] = field(default_factory=list)

    def positions(self) -> dict[str, np.ndarray]:
        """Camera-frame 3D positions (x right, y down, z forward; metres) of answered points."""
        good = [a for a in self.answers if a.metres is not None]
        if not good:
            return {}
        xyz = unproject(
            np.array([a.point for a in good]),
            np.array([a.metres for a in good]),
            self.intrinsics,
            self.depth_type,  # type: ignore[arg-type]
        )
        return {a.label: xyz[i] for i, a in enumerate(good)}

    def distances(self) -> list[tuple[str, str, float]]:
        """3D distance in metres between every two answered points."""
        pos = self.positions()
        return [(a, b, float(np.linalg.norm(pos[a] - pos[b]))) for a, b in itertools.combinations(pos, 2)]

    def lines(self) -> list[str]:
        """The result in words, one line per point and per pair."""
        out = []
        for a in self.answers:
            metres = f"{a.metres:.2f} m" if a.metres is not None else "no distance in the answer"
            out.append(f"{a.label} ({a.point[0]:g}, {a.point[1]:g}): {metres}   [model: {a.text.strip()!r}]")
        for a, b, d in self.distances():
            out.append(f"{a}-{b}: {d:.2f} m apart (3D, from both answers and the intrinsics)")
        unanswered = [a.label for a in self.answers if a.metres is None]
        if len(self.answers) > 1 and unanswered:
            out.append(f"no 3D distance for {', '.join(unanswered)}: the model's answer held no distance")
        return out


def render_points(
    image: Image.Image,
    intrinsics: Intrinsics,
    points: Sequence[tuple[float, float]],
    settings: RenderSettings,
    question: str | None = None,
) -> list[Query]:
    """One rendered query per point; a user's own question replaces the template's words."""
    check_points(points, image.size)
    queries = []
    for i, p in enumerate(points):
        q = render(image, intrinsics, p, settings, meta={"label": label_for(i), "point": tuple(p)})
        queries.append(replace(q, question=question.strip()) if question and question.strip() else q)
    return queries


def default_question(settings: RenderSettings) -> str:
    """The question the model is asked when the user gives none, as the rendering path words
    it (template, marker words), for a page to show; coordinates in it are of a sample point."""
    from depthlm.geometry import Intrinsics

    image = Image.new("RGB", (64, 48))
    return render(image, Intrinsics(64.0, 64.0, 31.5, 23.5, 64, 48), (32, 24), settings).question


def ask(
    backend,
    image: Image.Image,
    intrinsics: Intrinsics,
    points: Sequence[tuple[float, float]],
    settings: RenderSettings,
    question: str | None = None,
    max_tokens: int | None = None,
) -> AskResult:
    """Ask `backend` (``depthlm.inference.make_backend``) about every point in one batch."""
    queries = render_points(image, intrinsics, points, settings, question)
    texts = backend.generate(queries, max_tokens=max_tokens)
    answers = [
        PointAnswer(q.meta["label"], tuple(map(float, p)), q, t, parse_distance(t))
        for q, p, t in zip(queries, points, texts)
    ]
    return AskResult(answers, intrinsics, settings.depth_target, queries[0].question)


def marked_photo(image: Image.Image, points: Sequence[tuple[float, float]]) -> Image.Image:
    """The user's photo with labelled markers (A, B, ...), sized to be visible at any resolution."""
    if not points:
        return image
    size = max(12, round(min(image.size) / 25))
    return draw_markers(image, points, [label_for(i) for i in range(len(points))], size=size)


def save_images(result: AskResult, photo: Image.Image, prefix: str | os.PathLike) -> list[Path]:
    """Save what was sent for each point (``PREFIX-A.png``...) and the labelled photo
    (``PREFIX-points.png``); returns the paths written."""
    prefix = Path(prefix)
    if prefix.parent != Path("."):
        prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for a in result.answers:
        path = prefix.with_name(f"{prefix.name}-{a.label}.png")
        a.query.image.save(path)
        paths.append(path)
    overview = prefix.with_name(f"{prefix.name}-points.png")
    marked_photo(photo, [a.point for a in result.answers]).save(overview)
    return [*paths, overview]


def save_task_images(query, prefix: str | os.PathLike) -> list[Path]:
    """Save the view(s) a task question sent (``PREFIX-TASK-1.png``, ``-2`` for motion's second)."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(query.images):
        path = prefix.with_name(f"{prefix.name}-{query.task}-{i + 1}.png")
        im.save(path)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------- other tasks


@dataclass
class TaskAnswer:
    """One question of a task other than ``depth`` (depthlm.tasks) about the user's pixels."""

    task: str
    query: object  # depthlm.tasks.TaskQuery: .images are the views sent
    text: str  # the model's answer
    value: object  # parsed: metres or seconds, "A"/"B", or {label: metres}; None when unreadable

    def lines(self) -> list[str]:
        from depthlm import tasks

        kind = tasks.get(self.task).answer_kind
        if self.value is None:
            said = "no answer of this kind in the reply"
        elif kind == "labelled":
            said = ", ".join(f"{k}: {v:.2f} m" for k, v in self.value.items())
        elif kind == "choice":
            said = f"point {self.value}"
        else:
            said = f"{self.value:.2f} {'s' if kind == 'seconds' else 'm'}"
        return [f"{self.task}: {said}   [model: {self.text.strip()!r}]"]


def offered_tasks(settings: RenderSettings) -> list[str]:
    """The tasks a model answers: those its settings record (``depth`` alone for older models)."""
    return settings.task_names


def task_query(
    task: str,
    image: Image.Image,
    intrinsics: Intrinsics,
    settings: RenderSettings,
    *,
    points: Sequence[tuple[float, float]] = (),
    known: Sequence[tuple[tuple[float, float], float]] = (),
    box: Sequence[float] | None = None,
    name: str | None = None,
    speed: float | None = None,
    second: str | os.PathLike | None = None,
    image_path: str | os.PathLike | None = None,
):
    """The query of `task` about what the user picked, as training renders it (depthlm.tasks):
    ``points`` (depth, time: one; distance, closer: two; points: several), ``known`` (hinted:
    pixels with their metres, then the asked pixel in ``points``), ``box`` + ``name`` (region),
    ``speed`` (time, m/s), ``second`` (motion: the second photo, taken by the same camera).
    Unknown depths are NaN, so the query carries no truth and no answer."""
    from depthlm import tasks
    from depthlm.records import Record
    from depthlm.tasks.base import letters

    t = tasks.get(task)
    pts = [tuple(map(float, p)) for p in points]
    need = {"depth": 1, "time": 1, "distance": 2, "closer": 2, "hinted": 1}.get(task)
    if need is not None and len(pts) != need:
        raise DepthLMError(f"--task {task} asks about {need} point(s) (--point X,Y), got {len(pts)}")
    if task == "points" and not 1 <= len(pts) <= 26:
        raise DepthLMError(f"--task points asks about 1 to 26 points (--point X,Y), got {len(pts)}")
    if task == "hinted" and not known:
        raise DepthLMError("--task hinted needs at least one --known X,Y=METRES")
    if task == "region" and (box is None or len(box) != 4):
        raise DepthLMError("--task region needs a box: --box X0,Y0,X1,Y1")
    if task == "motion" and second is None:
        raise DepthLMError("--task motion needs the second photo: --second-image PATH")
    if task == "time" and not (speed is not None and 0 < speed <= 100):
        raise DepthLMError(f"--task time needs a speed in m/s (0-100): --speed, got {speed}")
    every = [p for p, _ in known] + pts
    if every:
        check_points(every, image.size)
    if box is not None:
        check_points([(box[0], box[1]), (box[2], box[3])], image.size)
        if not (box[0] < box[2] and box[1] < box[3]):
            raise DepthLMError(f"--box {list(box)}: expected X0,Y0,X1,Y1 with X0 < X1 and Y0 < Y1")
    depths = [float(d) for _, d in known] + [math.nan] * len(pts)
    for p, d in known:
        if not (math.isfinite(d) and d > 0):
            raise DepthLMError(
                f"--known {p[0]:g},{p[1]:g}: the depth must be a positive number of metres, got {d}"
            )
    centre = ((intrinsics.width - 1) / 2, (intrinsics.height - 1) / 2)
    extras = {}
    if second is not None:
        if not Path(second).is_file():
            raise DepthLMError(f"{second}: no such file (the second photo)")
        extras["pair"] = {"image": str(Path(second).resolve()), "intrinsics": intrinsics.to_list()}
    record = Record(
        str(Path(image_path).resolve()) if image_path else "<photo>",
        intrinsics,
        every or [centre],
        depths or [math.nan],
        depth_type=settings.depth_target,
        id="ask",
        extras=extras,
    )
    n = len(every)
    sample = {
        "points": tasks.Sample(indices=list(range(n)), labels=letters(n) if n else []),
        "distance": tasks.Sample(indices=[0, 1], labels=["A", "B"]),
        "closer": tasks.Sample(indices=[0, 1], labels=["A", "B"]),
        "hinted": tasks.Sample(indices=list(range(n)), labels=letters(n - 1) if n > 1 else []),
        "region": tasks.Sample(info={"box": [int(round(v)) for v in box or ()], "name": name}),
        "time": tasks.Sample(indices=[0], info={"speed_m_s": speed}),
        "motion": tasks.Sample(),
    }.get(task, tasks.Sample(indices=[0]))
    return t.build(record, sample, settings, image=image)


def ask_task(
    backend, task: str, image: Image.Image, intrinsics: Intrinsics, settings, max_tokens=None, **picked
):
    """Ask `backend` one `task` question (see :func:`task_query` for what ``picked`` holds)."""
    from depthlm import tasks

    query = task_query(task, image, intrinsics, settings, **picked)
    text = backend.generate([query], max_tokens=max_tokens)[0]
    return TaskAnswer(task, query, text, tasks.get(task).parse(text))


def parse_known(text: str) -> tuple[tuple[float, float], float]:
    where, sep, metres = text.partition("=")
    try:
        return parse_point(where), float(metres)
    except ValueError:
        raise DepthLMError(f"--known {text!r}: expected X,Y=METRES, e.g. 120,340=2.5") from None


def check_task(task: str, settings) -> None:
    """One line when the model was not trained on `task` (its folder records the tasks it was)."""
    from depthlm import tasks

    tasks.get(task)
    if task not in offered_tasks(settings):
        raise DepthLMError(
            f"this model was trained on {', '.join(offered_tasks(settings))}, not {task} "
            "(train with tasks: in the recipe config; depthlm tasks lists them)"
        )
