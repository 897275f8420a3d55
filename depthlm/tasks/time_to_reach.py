"""``time``: how long to reach the marked point at a stated speed (the paper's speed/time kind).

Ground truth: the point's straight-line (ray) distance from the camera -- also when the
settings ask depth questions as z-depth -- divided by the stated speed, in seconds. The speed
is drawn from SPEEDS_M_S and written with one decimal; the truth uses that written value."""

from __future__ import annotations

import numpy as np
from PIL import Image

from depthlm import markers
from depthlm.parsing import parse_duration
from depthlm.records import Record
from depthlm.render import marker_size
from depthlm.settings import RenderSettings
from depthlm.tasks.base import NUMBER, Sample, Task, TaskQuery, TaskTemplate, fmt, known
from depthlm.tasks.pick import view_showing

SPEEDS_M_S = (0.5, 3.0)  # uniform range, rounded to 0.1 m/s (walking pace to a jog)


class TimeTask(Task):
    name = "time"
    answer_kind = "seconds"
    description = "seconds to reach the marked point moving straight at a stated speed"
    template = TaskTemplate(
        question=(
            "Moving in a straight line at {speed} m/s, how many seconds would the camera take "
            "to reach the point marked by the {marker}?"
        ),
        answer="It would take about {t} seconds.",
        answer_regex=rf"It would take about {NUMBER} seconds\.",
    )

    def sample(self, record: Record, rng: np.random.Generator, settings: RenderSettings) -> Sample:
        speed = round(float(rng.uniform(*SPEEDS_M_S)), 1)
        return Sample(indices=[int(rng.integers(len(record)))], info={"speed_m_s": speed})

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
        px = view.anchor_px  # the view is anchored on the asked pixel
        marked = markers.draw_marker(
            view.image, px, style=settings.marker, color=settings.marker_color, size=marker_size(settings)
        )
        speed = sample.info["speed_m_s"]
        distance = float(record.depths_as("ray")[sample.indices[0]])  # straight line, whatever depth_target
        truth = distance / speed if known(distance) else None
        question = self.template.question.format(
            speed=f"{speed:.1f}", marker=markers.describe(settings.marker, settings.marker_color)
        )
        return TaskQuery(
            task=self.name,
            images=[marked],
            intrinsics=[view.intrinsics],
            question=question,
            answer=None if truth is None else self.template.answer.format(t=fmt(truth)),
            truth=truth,
            settings=settings,
            points={"": px},
            meta={
                "record_id": record.id,
                "dataset": record.dataset,
                "point_indices": sample.indices,
                "speed_m_s": speed,
                "distance_m": distance,
            },
        )

    def parse(self, text: str) -> float | None:
        return parse_duration(text)
