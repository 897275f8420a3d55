"""NYU Depth V2, labelled subset: 1,449 Kinect v1 frames of indoor scenes, 640x480.

Download: https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html -- the labelled
dataset ``nyu_depth_v2_labeled.mat`` (2.8 GB) and the official train/test split
``splits.mat`` (http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat).
Licence: no explicit licence; the page asks users to cite Silberman et al., ECCV 2012
(research use).

Expected layout (``--root`` points at the folder holding both files)::

    ROOT/nyu_depth_v2_labeled.mat   MATLAB v7.3 = HDF5
    ROOT/splits.mat                 trainNdxs (795) / testNdxs (654), 1-based, MATLAB v5

Reading the release (checked against the NYU toolbox and common readers):
- MATLAB stores arrays column-major, so h5py exposes them with the axes reversed:
  ``images`` is (N, 3, W, H) uint8 and ``depths`` / ``rawDepths`` are (N, W, H);
  frame i is ``images[i].transpose(2, 1, 0)`` (H, W, 3) and ``depths[i].T`` (H, W).
- ``depths`` are metres, z-depth (the toolbox back-projects X = (x - cx) z / fx with
  Z = depth), already registered to the RGB image and hole-filled by colourisation;
  ``rawDepths`` are the same registered measurements before filling (0 = none).
- Intrinsics are the toolbox's RGB camera (``camera_params.m``: fx 518.8579,
  fy 519.4696, cx 325.5824, cy 253.7362). The toolbox uses them with MATLAB's 1-based pixels
  (``rgb_plane2rgb_world.m``: ``[xx, yy] = meshgrid(1:W, 1:H)``, X = (xx - cx) z / fx), so the 0-based
  principal point of our images is (324.5824, 252.7362), as SUN RGB-D's and iBims-1's are
  shifted too. The
  labelled images keep the RGB camera's small lens distortion (k1 0.21); like every
  NYU benchmark we treat them as pinhole.

What a frame carries: depth = ``depths`` (the values every NYU benchmark evaluates
against); valid = the Eigen crop (rows 45:471, cols 41:601 -- the border where the
registered depth is undefined, used by Eigen et al. and BTS/AdaBins/Depth Anything)
AND measured pixels (``rawDepths`` > 0), so no query lands on a colourised guess.
``--nyu-include-filled`` also allows filled pixels; ``--nyu-no-crop`` drops the crop.
Splits: ``train`` = trainNdxs, ``test`` = testNdxs (the official 654-image test set).
Keys are the 1-based official image numbers, zero-padded (``0001`` .. ``1449``).

Objects (``--objects``, off by default: default builds are unchanged): the release's ``labels``
(N, W, H as h5py sees it, uint16 index into ``names``, 0 = unlabelled), ``instances`` (N, W, H
uint8, the instance number WITHIN its class) and ``names`` (a cell of HDF5 object references to
uint16 character arrays). An object is one (label, instance) pair with label > 0 and instance > 0,
as the toolbox's ``get_instance_masks.m`` forms them (it keeps every pair but (0, 0); pixels
with a label but instance 0, or an instance but no label, are left out and counted in the
record's ``notes``: "pixels outside objects: 12 labelled pixels with instance 0"). Two chairs are two objects. Each gets an id k in a uint16 label map
(``extras.masks``), its inclusive box and its class name (``extras.objects``), and
``extras.depth_map`` holds ``depths`` at the frame's valid pixels only (the mask above), 0
elsewhere, so a region's median never sits on colourised guesses. A frame whose segmentation
cannot be used is still written, without these keys, with "segmentation unusable: <why>" in
``extras.notes``.

Reference-code faults fixed: depth is stored as z-depth with ``depth_type="z"``
(the reference turns NYU into ray distance while other sources stay z, mixing
conventions); intrinsics come from the official calibration, not a hard-coded guess.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image

from data_builders.base import Frame, SkipFrame, Source, register_source
from data_builders.sources._checks import check_depth, check_intrinsics
from data_builders.sources._region import RegionProblem, class_name, label_objects, valid_depth_mm
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

MAT_NAME = "nyu_depth_v2_labeled.mat"
SPLITS_NAME = "splits.mat"
WIDTH, HEIGHT = 640, 480
# camera_params.m's cx, cy are 1-based (MATLAB pixels); ours count from 0
INTRINSICS = Intrinsics(518.8579, 519.4696, 325.5824 - 1, 253.7362 - 1, WIDTH, HEIGHT)
EIGEN_CROP = (slice(45, 471), slice(41, 601))  # rows, cols of the 480x640 image
SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}
OBJECT_ARRAYS = ("labels", "instances", "names")  # what --objects reads


@register_source("nyuv2")
class NYUv2(Source):
    splits = ("train", "test")

    def __init__(self, root: Path, split: str, options: argparse.Namespace | None = None):
        super().__init__(root, split, options)
        self._h5: h5py.File | None = None
        self._h5_pid = -1
        self._names: list[str] | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--nyu-include-filled",
            action="store_true",
            help="nyuv2: also label pixels the release filled in by colourisation (not measured)",
        )
        parser.add_argument(
            "--nyu-no-crop", action="store_true", help="nyuv2: do not restrict labels to the Eigen crop"
        )
        parser.add_argument(
            "--objects",
            action="store_true",
            help="nyuv2: also write each (class, instance) object of the release's labels/instances: "
            "extras.objects (id, box, class), extras.masks and extras.depth_map (valid pixels only), "
            "for the region task",
        )

    def __getstate__(self) -> dict:  # worker processes reopen the HDF5 file themselves
        state = dict(self.__dict__)
        state["_h5"], state["_h5_pid"] = None, -1
        return state

    def list_frames(self) -> list[str]:
        if self.split not in SPLIT_KEYS:
            raise DepthLMError(f"nyuv2 has splits {', '.join(SPLIT_KEYS)}; got {self.split!r}")
        mat = self.root / MAT_NAME
        if not mat.is_file():
            raise DepthLMError(f"nyuv2: {mat} not found (download {MAT_NAME} from the NYU Depth V2 page)")
        objects = getattr(self.options, "objects", False)
        try:
            with h5py.File(mat, "r") as f:
                n_images, n_depths = _count(f, "images", mat), _count(f, "depths", mat)
                if objects:
                    missing = [name for name in OBJECT_ARRAYS if name not in f]
                    if missing:
                        raise DepthLMError(
                            f"nyuv2 --objects: {mat} has no {', '.join(missing)} (the labelled release "
                            f"holds {', '.join(OBJECT_ARRAYS)})"
                        )
                    n_labels, n_inst = int(f["labels"].shape[0]), int(f["instances"].shape[0])
        except OSError as err:
            raise DepthLMError(f"nyuv2: {mat} is not a MATLAB v7.3 (HDF5) file: {err}") from None
        if objects and not n_labels == n_inst == n_images:
            raise DepthLMError(
                f"nyuv2 --objects: {mat} holds {n_images} images, {n_labels} label maps and {n_inst} "
                "instance maps"
            )
        if n_images != n_depths:
            raise DepthLMError(f"nyuv2: {mat} holds {n_images} images but {n_depths} depth maps")
        indices = read_split(self.root / SPLITS_NAME, self.split)
        bad = [i for i in indices if not 1 <= i <= n_images]
        if bad:
            raise DepthLMError(f"nyuv2: {SPLITS_NAME} names images {bad[:5]} outside 1..{n_images}")
        return [f"{i:04d}" for i in sorted(set(indices))]

    def load(self, key: str) -> Frame:
        f = self._file()
        i = int(key) - 1
        try:
            rgb = np.asarray(f["images"][i]).transpose(2, 1, 0)
            depth = np.asarray(f["depths"][i], dtype=np.float32).T
            raw = np.asarray(f["rawDepths"][i], dtype=np.float32).T if "rawDepths" in f else depth
        except (OSError, ValueError, KeyError) as err:
            raise SkipFrame(f"{key}: unreadable arrays in {MAT_NAME}: {err}") from None
        if rgb.shape != (HEIGHT, WIDTH, 3) or depth.shape != (HEIGHT, WIDTH) or raw.shape != depth.shape:
            raise SkipFrame(
                f"{key}: size mismatch: image {rgb.shape}, depth {depth.shape}, raw depth {raw.shape}, "
                f"expected ({HEIGHT}, {WIDTH}, 3) and ({HEIGHT}, {WIDTH})"
            )
        valid = self._valid_mask(raw)
        check_depth(depth, valid, key)
        extras: dict = {"source_index": int(key)}
        if getattr(self.options, "objects", False):
            extras.update(self._region_extras(f, i, depth, valid))
        return Frame(
            key=key,
            intrinsics=check_intrinsics(INTRINSICS, key),
            image=Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8)), "RGB"),
            depth=depth,
            depth_type="z",
            valid=valid,
            split=self.split,
            extras=extras,
        )

    def _region_extras(self, f: h5py.File, i: int, depth: np.ndarray, valid: np.ndarray) -> dict:
        """objects + masks + depth_map of frame i, or only ``notes`` saying why there are none."""
        try:
            labels = np.asarray(f["labels"][i]).T
            instances = np.asarray(f["instances"][i]).T
            names = self._class_names(f)
        except (OSError, ValueError, KeyError, TypeError) as err:
            return {
                "notes": [f"segmentation unusable: unreadable labels/instances/names in {MAT_NAME}: {err}"]
            }
        if labels.shape != (HEIGHT, WIDTH) or instances.shape != labels.shape:
            return {
                "notes": [
                    f"segmentation unusable: labels {labels.shape[::-1]} and instances {instances.shape[::-1]} "
                    f"are not the image's {WIDTH}x{HEIGHT}"
                ]
            }
        labels, instances = labels.astype(np.int64), instances.astype(np.int64)
        if labels.max(initial=0) > len(names):
            return {"notes": [f"segmentation unusable: label {labels.max()} beyond the {len(names)} names"]}
        notes = []
        for what, stray in (
            ("labelled pixels with instance 0", (labels > 0) & (instances == 0)),
            ("unlabelled pixels with an instance", (labels == 0) & (instances > 0)),
        ):
            if stray.any():
                notes.append(f"pixels outside objects: {int(stray.sum())} {what}")
        keys = np.where((labels > 0) & (instances > 0), labels * 256 + instances, 0)

        def describe(key: int) -> dict:
            label, instance = divmod(key, 256)
            return {"class": class_name(names[label - 1]), "label": label, "instance": instance}

        try:
            masks, objects = label_objects(keys, describe)
        except RegionProblem as err:
            return {"notes": [f"segmentation unusable: {err}"]}
        out: dict = {"objects": objects, "masks": masks, "depth_map": valid_depth_mm(depth, valid)}
        if notes:
            out["notes"] = notes
        return out

    def _class_names(self, f: h5py.File) -> list[str]:
        """``names``: a MATLAB cell (h5py: object references) of uint16 character arrays."""
        if self._names is None:
            self._names = [
                "".join(map(chr, np.asarray(f[ref]).ravel())) for ref in np.asarray(f["names"]).ravel()
            ]
        return self._names

    def _valid_mask(self, raw: np.ndarray) -> np.ndarray:
        if getattr(self.options, "nyu_no_crop", False):
            valid = np.ones((HEIGHT, WIDTH), dtype=bool)
        else:
            valid = np.zeros((HEIGHT, WIDTH), dtype=bool)
            valid[EIGEN_CROP] = True
        if not getattr(self.options, "nyu_include_filled", False):
            valid &= np.isfinite(raw) & (raw > 0)
        return valid

    def _file(self) -> h5py.File:
        """One open handle per process (h5py handles must not cross a fork)."""
        if self._h5 is None or self._h5_pid != os.getpid():
            try:
                self._h5 = h5py.File(self.root / MAT_NAME, "r")
            except OSError as err:
                raise DepthLMError(f"nyuv2: cannot open {self.root / MAT_NAME}: {err}") from None
            self._h5_pid = os.getpid()
        return self._h5


def _count(f: h5py.File, name: str, path: Path) -> int:
    if name not in f:
        raise DepthLMError(f"nyuv2: {path} has no dataset {name!r} (is it the labelled v7.3 release?)")
    return int(f[name].shape[0])


def read_split(path: Path, split: str) -> list[int]:
    """1-based image numbers of the official split (``splits.mat``, MATLAB v5)."""
    if not path.is_file():
        raise DepthLMError(
            f"nyuv2: {path} not found; download the official split from "
            "http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat"
        )
    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise DepthLMError(f"nyuv2: cannot read {path}: {err}") from None
    key = SPLIT_KEYS[split]
    if key not in mat:
        raise DepthLMError(f"nyuv2: {path} has no variable {key!r}")
    return [int(v) for v in np.asarray(mat[key]).ravel()]
