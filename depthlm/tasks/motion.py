"""``motion``: two views of one scene; how far did the camera move between them (metres).

Qwen-VL takes several images in one user turn: the two views go in order, each focal-
normalised by depthlm.render's view step (render_view: unmarked, both at f_uni). Ground truth: the length
of the second camera's centre in the first camera's frame (``extras.pair.translation_m``),
which no rescaling changes. Pairs that moved under MIN_MOTION_M are not asked. Sources:
synthetic two-view scenes (``depthlm build synthetic --second-view``) and the releases that ship
camera poses, with ``--pair-offset N`` (the same camera N frames later; data_builders.pairs):
ScanNet++, nuScenes, DDAD, Argoverse 2 and Waymo. The direction of motion is not asked yet."""

from __future__ import annotations

import numpy as np
from PIL import Image

from depthlm.parsing import parse_distance
from depthlm.records import Record
from depthlm.render import load_image, render_view
from depthlm.settings import RenderSettings
from depthlm.tasks.base import NUMBER, Sample, Task, TaskError, TaskQuery, TaskTemplate, fmt
from depthlm.tasks.extras import read_pair

MIN_MOTION_M = 0.05


class MotionTask(Task):
    name = "motion"
    answer_kind = "metres"
    description = "how far the camera moved between two views of one scene"
    template = TaskTemplate(
        question=(
            "These two images were taken by one camera from two positions. "
            "How far did the camera move between the first image and the second?"
        ),
        answer="The camera moved about {d} meters.",
        answer_regex=rf"The camera moved about {NUMBER} meters\.",
    )
    needs = ("pair",)
    sources = ("synthetic", "scannetpp", "nuscenes", "ddad", "argoverse2", "waymo")  # --pair-offset N
    images_per_query = 2
    min_points = 0

    def sample(self, record: Record, rng: np.random.Generator, settings: RenderSettings) -> Sample:
        pair = read_pair(record)
        if pair.translation is None:
            raise TaskError(f"{record.id}: motion: extras['pair'] has no translation_m to ask about")
        moved = float(np.linalg.norm(pair.translation))
        if moved < MIN_MOTION_M:
            raise TaskError(f"{record.id}: motion: the camera moved {moved:.3f} m, under {MIN_MOTION_M} m")
        return Sample(info={"moved_m": moved})

    def build(
        self,
        record: Record,
        sample: Sample,
        settings: RenderSettings,
        *,
        rng: np.random.Generator | None = None,
        image: Image.Image | None = None,
    ) -> TaskQuery:
        pair = read_pair(record)
        views = []
        for path, intr, img in (
            (record.image, record.intrinsics, image),
            (pair.image, pair.intrinsics, None),
        ):
            img = img if img is not None else load_image(path, intr, settings.f_uni)
            centre = ((intr.width - 1) / 2, (intr.height - 1) / 2)
            views.append(render_view(img, intr, centre, settings, rng))
        truth = None if pair.translation is None else float(np.linalg.norm(pair.translation))
        return TaskQuery(
            task=self.name,
            images=[v.image for v in views],
            intrinsics=[v.intrinsics for v in views],
            question=self.template.question,
            answer=None if truth is None else self.template.answer.format(d=fmt(truth)),
            truth=truth,
            settings=settings,
            meta={"record_id": record.id, "dataset": record.dataset, "second_image": pair.image},
        )

    def parse(self, text: str) -> float | None:
        return parse_distance(text)
