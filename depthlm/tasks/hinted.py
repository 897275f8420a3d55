"""``hinted``: some marked points come with their distance in the question, the red one is asked.

The metric-prompt idea (MetricAnything) in words: "Point A is 1.20 m and point B is 3.05 m
from the camera. How far is the point marked by the red arrow from the camera?" Hint points
are labelled markers (colour-blind-safe palette, never red); the asked point carries the
settings' marker. The answer and its scoring are ``depth``'s."""

from __future__ import annotations

import numpy as np
from PIL import Image

from depthlm import markers
from depthlm.parsing import parse_distance
from depthlm.records import Record
from depthlm.render import marker_size, view_pixels
from depthlm.settings import RenderSettings
from depthlm.tasks.base import (
    NUMBER,
    Sample,
    Task,
    TaskError,
    TaskQuery,
    TaskTemplate,
    fmt,
    join_words,
    known,
    letters,
)
from depthlm.tasks.pick import pick_points, view_showing

DEFAULT_HINTS = 2


def hint_words(hints: dict[str, float]) -> str:
    """ "Point A is 1.20 m from the camera." / "Points A and B are 1.20 m and 3.05 m from the camera.\""""
    labels, values = list(hints), [f"{fmt(v)} m" for v in hints.values()]
    if len(labels) == 1:
        return f"Point {labels[0]} is {values[0]} from the camera."
    return f"Points {join_words(labels)} are {join_words(values)} from the camera, in that order."


class HintedTask(Task):
    name = "hinted"
    answer_kind = "metres"
    description = "distance to the red-marked point, given the distances of labelled hint points"
    template = TaskTemplate(
        question="{hints} How far is the point marked by the {marker} from the camera?",
        answer="The point is around {d} meters away from the camera.",
        answer_regex=rf"The point is around {NUMBER} meters away from the camera\.",
    )
    min_points = DEFAULT_HINTS + 1

    def __init__(self, hints: int = DEFAULT_HINTS):
        self.hints = hints
        self.min_points = hints + 1

    def sample(self, record: Record, rng: np.random.Generator, settings: RenderSettings) -> Sample:
        idx = pick_points(record, self.hints + 1, rng, settings, task=self.name)
        return Sample(indices=idx, labels=letters(self.hints))  # the last index is the asked point

    def build(
        self,
        record: Record,
        sample: Sample,
        settings: RenderSettings,
        *,
        rng: np.random.Generator | None = None,
        image: Image.Image | None = None,
    ) -> TaskQuery:
        src = record.points[sample.indices]
        view = view_showing(record, src, settings, rng, image, task=self.name)
        px = view_pixels(src, view)
        size = marker_size(settings)
        marked = markers.draw_labelled_markers(view.image, px[:-1], sample.labels, size=size)
        marked = markers.draw_marker(
            marked, px[-1], style=settings.marker, color=settings.marker_color, size=size
        )
        depths = record.depths_as(settings.depth_target)[sample.indices]
        hints = {label: float(d) for label, d in zip(sample.labels, depths[:-1])}
        if not known(*hints.values()):
            raise TaskError(f"{record.id}: hinted: every hint point needs a known depth")
        truth = float(depths[-1]) if known(depths[-1]) else None
        question = self.template.question.format(
            hints=hint_words(hints), marker=markers.describe(settings.marker, settings.marker_color)
        )
        return TaskQuery(
            task=self.name,
            images=[marked],
            intrinsics=[view.intrinsics],
            question=question,
            answer=None if truth is None else self.template.answer.format(d=fmt(truth)),
            truth=truth,
            settings=settings,
            points={**dict(zip(sample.labels, px[:-1])), "": px[-1]},
            meta={
                "record_id": record.id,
                "dataset": record.dataset,
                "point_indices": sample.indices,
                "hints": hints,
            },
        )

    def parse(self, text: str) -> float | None:
        return parse_distance(text)
