"""``distance``: how far apart in 3D are the two marked points.

Ground truth: both pixels unprojected with their depths and the record's intrinsics
(depthlm.geometry.unproject), then the Euclidean distance; rescaling and cropping the view
do not change it. Pairs under MIN_DISTANCE_M apart are not asked."""

from __future__ import annotations

import numpy as np
from PIL import Image

from depthlm import markers
from depthlm.geometry import unproject
from depthlm.parsing import parse_distance
from depthlm.records import Record
from depthlm.render import marker_size, view_pixels
from depthlm.settings import RenderSettings
from depthlm.tasks.base import NUMBER, Sample, Task, TaskQuery, TaskTemplate, fmt, known
from depthlm.tasks.pick import pick_points, view_showing

MIN_DISTANCE_M = 0.1


def distance_3d(record: Record, i: int, j: int) -> float:
    """Metres between labelled points i and j of a record, in 3D."""
    xyz = unproject(record.points[[i, j]], record.depths[[i, j]], record.intrinsics, record.depth_type)
    return float(np.linalg.norm(xyz[0] - xyz[1]))


class DistanceTask(Task):
    name = "distance"
    answer_kind = "metres"
    description = "3D distance between the two points marked A and B"
    template = TaskTemplate(
        question="How far apart are the points marked A and B, in metres, in the 3D scene?",
        answer="The two points are around {d} meters apart.",
        answer_regex=rf"The two points are around {NUMBER} meters apart\.",
    )
    min_points = 2

    def sample(self, record: Record, rng: np.random.Generator, settings: RenderSettings) -> Sample:
        def far_enough(chosen: list[int], i: int) -> bool:
            return not chosen or distance_3d(record, chosen[0], i) >= MIN_DISTANCE_M

        idx = pick_points(record, 2, rng, settings, far_enough, task=self.name)
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
        truth = distance_3d(record, *sample.indices)
        truth = truth if known(truth) else None
        return TaskQuery(
            task=self.name,
            images=[marked],
            intrinsics=[view.intrinsics],
            question=self.template.question,
            answer=None if truth is None else self.template.answer.format(d=fmt(truth)),
            truth=truth,
            settings=settings,
            points=dict(zip(sample.labels, px)),
            meta={"record_id": record.id, "dataset": record.dataset, "point_indices": sample.indices},
        )

    def parse(self, text: str) -> float | None:
        return parse_distance(text)
