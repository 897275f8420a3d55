"""``region``: a box drawn on the view (with the object's name when the source gives one):
how far is that object.

Ground truth: the MEDIAN distance (settings' depth_target, ray by default) over the object's
valid pixels -- the pixels whose instance-mask label is the object's id and whose depth is
known -- from the record's dense ``depth_map`` when it has one, else over the record's
labelled points on the object (at least MIN_REGION_POINTS). The median, not the mean, so a
few mislabelled boundary pixels that see the wall behind cannot move it. Sources with masks:
synthetic (``extras.objects`` + ``extras.masks``), NYUv2 (``depthlm build nyuv2 --objects``: one
object per (class, instance) pair of the labelled release) and SUN RGB-D (``depthlm build sunrgbd
--objects``: one object per annotated polygon of each scene's ``seg.mat``); both write a
``depth_map`` of the frame's valid pixels only, so the median never uses filled or clamped depth.
Objects whose box does not fit one view of the pixel budget (walls, floors at a large f_uni) are
not asked."""

from __future__ import annotations

import numpy as np
from PIL import Image

from depthlm import markers
from depthlm.geometry import convert_depth
from depthlm.parsing import parse_distance
from depthlm.records import Record
from depthlm.render import box_to_view, marker_size
from depthlm.settings import RenderSettings
from depthlm.tasks.base import NUMBER, Sample, Task, TaskError, TaskQuery, TaskTemplate, fmt
from depthlm.tasks.extras import (
    MIN_REGION_POINTS,
    object_box,
    object_name,
    read_depth_map,
    read_masks,
    read_objects,
)
from depthlm.tasks.pick import eval_view_size, view_showing

MIN_OBJECT_PIXELS = 50  # in the stored image: smaller objects are not asked about
BOX_COLOR = ("green", (0, 158, 115))  # Okabe-Ito bluish green


def object_depths(
    record: Record, labels: np.ndarray, dense: np.ndarray | None, object_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (N, 2), depths (N,) of record.depth_type) of the object's valid pixels: every mask
    pixel with a known dense depth, or without a dense map the labelled points on the object."""
    if dense is not None:
        ys, xs = np.nonzero((labels == object_id) & np.isfinite(dense))
        return np.stack([xs, ys], 1).astype(np.float64), dense[ys, xs]
    ix = np.round(record.points).astype(int)
    on = labels[ix[:, 1], ix[:, 0]] == object_id
    return record.points[on], record.depths[on]


def region_truth(record: Record, object_id: int, settings: RenderSettings) -> tuple[float, int]:
    """(median distance in metres, number of pixels or points it was taken over)."""
    pts, depths = object_depths(record, read_masks(record), read_depth_map(record), object_id)
    if len(depths) == 0:
        raise TaskError(f"{record.id}: region: object {object_id} has no pixel with known depth")
    return median_distance(record, pts, depths, settings), int(len(depths))


def median_distance(record: Record, pts: np.ndarray, depths: np.ndarray, settings: RenderSettings) -> float:
    """The median of the settings' depth target over an object's pixels (the region statistic)."""
    target = convert_depth(depths, pts, record.intrinsics, record.depth_type, settings.depth_target)
    return float(np.median(target))


def fits_one_view(record: Record, box, settings: RenderSettings) -> bool:
    """Whether the box, drawn around the object, fits render's evaluation view (the pixel budget
    caps it): a wall or floor as wide as the image at a large f_uni does not, and is not asked."""
    k = record.intrinsics
    span = eval_view_size(record, settings)  # corners must fit as pick_points' markers must
    return (box[2] - box[0]) * settings.f_uni / k.fx <= span[0] - 2 and (
        box[3] - box[1]
    ) * settings.f_uni / k.fy <= span[1] - 2


class RegionTask(Task):
    name = "region"
    answer_kind = "metres"
    description = "distance to the object inside the drawn box (median over its mask pixels)"
    template = TaskTemplate(
        question="How far from the camera is the {object} inside the {box}?",
        answer="It is around {d} meters away from the camera.",
        answer_regex=rf"It is around {NUMBER} meters away from the camera\.",
    )
    needs = ("objects", "masks")
    sources = ("synthetic", "nyuv2", "sunrgbd")  # synthetic always; nyuv2 / sunrgbd with --objects

    def sample(self, record: Record, rng: np.random.Generator, settings: RenderSettings) -> Sample:
        """A random object with a box and enough depth support: MIN_OBJECT_PIXELS pixels of known
        depth with a dense map, else MIN_REGION_POINTS labelled points on it."""
        labels, dense = read_masks(record), read_depth_map(record)
        need = MIN_OBJECT_PIXELS if dense is not None else MIN_REGION_POINTS
        candidates, too_big = [], 0
        for obj in read_objects(record):
            box = object_box(record, obj)
            if box is None:
                continue
            pts, depths = object_depths(record, labels, dense, int(obj["id"]))
            if len(depths) < need:
                continue
            if fits_one_view(record, box, settings):
                candidates.append((obj, box, pts, depths))
            else:
                too_big += 1
        if not candidates:
            what = "pixels with known depth" if dense is not None else "labelled points (no depth_map)"
            wide = f" ({too_big} larger than one view of the pixel budget)" if too_big else ""
            raise TaskError(
                f"{record.id}: region: no object with a box and {need}+ {what} that fits one view{wide}"
            )
        obj, box, pts, depths = candidates[int(rng.integers(len(candidates)))]
        truth = median_distance(record, pts, depths, settings)  # measured here: masks and depth read once
        info = {"object_id": int(obj["id"]), "box": list(box), "name": object_name(obj)}
        return Sample(info={**info, "truth": truth, "support": int(len(depths))})

    def build(
        self,
        record: Record,
        sample: Sample,
        settings: RenderSettings,
        *,
        rng: np.random.Generator | None = None,
        image: Image.Image | None = None,
    ) -> TaskQuery:
        box = sample.info["box"]
        corners = np.array([[box[0], box[1]], [box[2], box[3]]], dtype=np.float64)
        view = view_showing(record, corners, settings, rng, image, task=self.name)
        vbox = box_to_view(box, view)
        width = max(2, marker_size(settings) // 6)
        marked = markers.draw_box(view.image, vbox, BOX_COLOR[1], width=width)
        truth, support = sample.info.get("truth"), sample.info.get("support", 0)  # sampled: measured
        if truth is None and "object_id" in sample.info and "masks" in record.extras:  # picked by hand
            truth, support = region_truth(record, sample.info["object_id"], settings)
        question = self.template.question.format(
            object=sample.info.get("name") or "object", box=f"{BOX_COLOR[0]} box"
        )
        return TaskQuery(
            task=self.name,
            images=[marked],
            intrinsics=[view.intrinsics],
            question=question,
            answer=None if truth is None else self.template.answer.format(d=fmt(truth)),
            truth=truth,
            settings=settings,
            box=vbox,
            meta={
                "record_id": record.id,
                "dataset": record.dataset,
                "object_id": sample.info.get("object_id"),
                "support": support,
            },
        )

    def parse(self, text: str) -> float | None:
        return parse_distance(text)
