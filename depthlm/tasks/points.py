"""``points``: K labelled markers (A, B, C, ...) in one view; the answer lists each distance.

One image serves K queries (the cost lever for dense maps). Markers differ in colour
(Okabe-Ito, colour-blind safe) and shape, carry their letter, and are at least two marker
sizes apart. Scored per point like ``depth``: a label the answer lacks, or adds, is a miss."""

from __future__ import annotations

import numpy as np
from PIL import Image

from depthlm import markers
from depthlm.parsing import parse_labelled
from depthlm.records import Record
from depthlm.render import marker_size, view_pixels
from depthlm.settings import RenderSettings
from depthlm.tasks.base import NUMBER, Sample, Task, TaskQuery, TaskTemplate, fmt, join_words, known, letters
from depthlm.tasks.pick import pick_points, view_showing

DEFAULT_K = 4


class PointsTask(Task):
    name = "points"
    answer_kind = "labelled"
    description = "distance from the camera to each of K labelled points (one line per label)"
    template = TaskTemplate(
        question="How far from the camera is each of the points marked {labels}?",
        answer="{lines}",  # one "A: 2.31 m" line per label
        answer_regex=rf"(?:[A-Z]: {NUMBER} m\n)*[A-Z]: {NUMBER} m",
    )
    min_points = 2

    def __init__(self, k: int = DEFAULT_K):
        letters(k)  # validates 1..26
        self.k = self.min_points = k

    def sample(self, record: Record, rng: np.random.Generator, settings: RenderSettings) -> Sample:
        idx = pick_points(record, self.k, rng, settings, task=self.name)
        return Sample(indices=idx, labels=letters(len(idx)))

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
        marked = markers.draw_labelled_markers(view.image, px, sample.labels, size=marker_size(settings))
        depths = record.depths_as(settings.depth_target)[sample.indices]
        truth = {label: float(d) for label, d in zip(sample.labels, depths)} if known(*depths) else None
        return TaskQuery(
            task=self.name,
            images=[marked],
            intrinsics=[view.intrinsics],
            question=self.template.question.format(labels=join_words(sample.labels)),
            answer=None if truth is None else "\n".join(f"{label}: {fmt(d)} m" for label, d in truth.items()),
            truth=truth,
            settings=settings,
            points=dict(zip(sample.labels, px)),
            meta={"record_id": record.id, "dataset": record.dataset, "point_indices": sample.indices},
        )

    def answer_regex(self, settings: RenderSettings, query: TaskQuery | None = None) -> str:
        """With a query: exactly its labels, in order, one ``A: 2.07 m`` line each. The general regex
        admits any letters and any number of lines, so a model held only to it under structured
        decoding may answer other labels, or add lines until the token limit cuts one (misses)."""
        if query is None or not query.points:
            return super().answer_regex(settings)
        return r"\n".join(
            f"{label}: {NUMBER} m" for label in query.points
        )  # regex newline, as the task regex

    def parse(self, text: str) -> dict[str, float] | None:
        return parse_labelled(text)
