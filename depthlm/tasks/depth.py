"""``depth``: how far is the marked point from the camera -- today's question, unchanged.

The view, marker, question and answer are exactly depthlm.render's (the settings' template),
so a model trained before tasks existed answers this task as it always did."""

from __future__ import annotations

import numpy as np
from PIL import Image

from depthlm.parsing import parse_distance
from depthlm.records import Record
from depthlm.render import load_image, render, render_record
from depthlm.settings import RenderSettings
from depthlm.tasks.base import Sample, Task, TaskQuery, known


class DepthTask(Task):
    name = "depth"
    answer_kind = "metres"
    description = "distance from the camera to the point under the marker (the default task)"

    def sample(self, record: Record, rng: np.random.Generator, settings: RenderSettings) -> Sample:
        return Sample(indices=[int(rng.integers(len(record)))])

    def build(
        self,
        record: Record,
        sample: Sample,
        settings: RenderSettings,
        *,
        rng: np.random.Generator | None = None,
        image: Image.Image | None = None,
    ) -> TaskQuery:
        i = sample.indices[0]
        if known(record.depths[i]):
            q = render_record(record, i, settings, rng=rng, image=image)
        else:  # chat: a point the user picked, depth unknown
            image = (
                image if image is not None else load_image(record.image, record.intrinsics, settings.f_uni)
            )
            q = render(
                image,
                record.intrinsics,
                tuple(record.points[i]),
                settings,
                rng=rng,
                meta={"record_id": record.id},
            )
        return TaskQuery(
            task=self.name,
            images=[q.image],
            intrinsics=[q.intrinsics],
            question=q.question,
            answer=q.answer,
            truth=q.depth,
            settings=settings,
            points={"": q.point},
            meta=q.meta,
        )

    def parse(self, text: str) -> float | None:
        return parse_distance(text)
