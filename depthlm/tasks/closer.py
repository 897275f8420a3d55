"""``closer``: which of the two marked points is closer to the camera, A or B.

Ground truth compares the two distances in the settings' depth_target convention (ray
distance by default). Pairs whose distances differ by less than MARGIN (10 %: the farther
is under 1.1 times the nearer) are not asked: the data's own noise could flip them. Accuracy."""

from __future__ import annotations

import numpy as np
from PIL import Image

from depthlm import markers
from depthlm.parsing import parse_choice
from depthlm.records import Record
from depthlm.render import marker_size, view_pixels
from depthlm.settings import RenderSettings
from depthlm.tasks.base import Sample, Task, TaskQuery, TaskTemplate, known
from depthlm.tasks.pick import pick_points, view_showing

MARGIN = 0.10  # relative: asked only when far / near >= 1 + MARGIN


class CloserTask(Task):
    name = "closer"
    answer_kind = "choice"
    description = f"which of A and B is closer to the camera (pairs within {MARGIN:.0%} not asked)"
    template = TaskTemplate(
        question="Which point is closer to the camera, the one marked A or the one marked B?",
        answer="Point {c} is closer to the camera.",
        answer_regex=r"Point [AB] is closer to the camera\.",
    )
    min_points = 2

    def sample(self, record: Record, rng: np.random.Generator, settings: RenderSettings) -> Sample:
        d = record.depths_as(settings.depth_target)

        def apart(chosen: list[int], i: int) -> bool:
            return not chosen or max(d[i], d[chosen[0]]) >= (1 + MARGIN) * min(d[i], d[chosen[0]])

        idx = pick_points(record, 2, rng, settings, apart, task=self.name)
        return Sample(indices=idx, labels=["A", "B"])

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
        d = record.depths_as(settings.depth_target)[sample.indices]
        truth = ("A" if d[0] < d[1] else "B") if known(*d) else None
        return TaskQuery(
            task=self.name,
            images=[marked],
            intrinsics=[view.intrinsics],
            question=self.template.question,
            answer=None if truth is None else self.template.answer.format(c=truth),
            truth=truth,
            settings=settings,
            points=dict(zip(sample.labels, px)),
            meta={
                "record_id": record.id,
                "dataset": record.dataset,
                "point_indices": sample.indices,
                "distances_m": [float(v) for v in d],
            },
        )

    def parse(self, text: str) -> str | None:
        return parse_choice(text, ("A", "B"))
