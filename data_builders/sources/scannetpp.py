"""ScanNet++: iPhone RGB-D video of 1000+ indoor scenes, with ARKit poses and intrinsics.

Download: https://kaldir.vc.in.tum.de/scannetpp/ -- apply for access (Terms of Use), then run
the download script you are sent with the iPhone assets (``iphone/rgb.mkv``, ``depth.bin``,
``pose_intrinsic_imu.json``) and extract the frames with the official toolbox
(https://github.com/scannetpp/scannetpp)::

    python -m iphone.prepare_iphone_data iphone/configs/prepare_iphone_data.yml

Licence: ScanNet++ Terms of Use -- non-commercial research and education only, no
redistribution of the data.

Expected layout (``--root`` is the release root, or its ``data`` folder)::

    ROOT/splits/nvs_sem_train.txt, nvs_sem_val.txt, nvs_test.txt     scene ids, one a line
    ROOT/data/<scene>/iphone/rgb/frame_000000.jpg                    1920x1440 (ffmpeg, -start_number 0)
    ROOT/data/<scene>/iphone/depth/frame_000000.png                  256x192, uint16 millimetres, 0 = none
    ROOT/data/<scene>/iphone/rgb_masks/frame_000000.png              anonymisation mask (optional;
                                                                      0 = anonymised, not labelled)
    ROOT/data/<scene>/iphone/pose_intrinsic_imu.json                 {"frame_000000": {"intrinsic": 3x3,
                                                                      "pose": 4x4, "aligned_pose": 4x4, ...}}

``--scannetpp-depth render`` (``iphone/render_depth/``, depth rendered from the laser-scan mesh by
the toolbox's ``common.render``) is refused with a clear error: the toolbox renders it through the
COLMAP camera (``iphone/colmap/cameras.txt``, OPENCV model with distortion), and the frames here
carry the ARKit intrinsics, so labels and intrinsics would describe different cameras.

Pairing: the toolbox names every frame by its index in the video (``frame_%06d``); RGB,
depth, mask and the json entry of one moment share that index. Frames are paired by the index
parsed from the names, never by position in a directory listing (the reference pairs sorted
or unsorted ``os.listdir`` results, which shifts every pair once one file is missing or RGB was
extracted for a subset of frames). An RGB frame without a depth map or intrinsics is rejected
with that reason; depth maps without an RGB frame are counted in a log line.

Registration: the iPhone depth map (256x192) is smaller than the RGB image (1920x1440) but
covers the same field of view. By default it is upsampled to the RGB size, nearest neighbour
with pixel centres aligned (never interpolated across an edge), and the json intrinsics, which
describe the RGB image, are kept. ``--scannetpp-register downsample-rgb`` instead shrinks the
RGB to the depth size and scales the intrinsics with Intrinsics.resized. Other aspect ratios
are rejected as a size mismatch.

Depth convention: ARKit depth is z-depth in millimetres (the toolbox back-projects
K^-1 [u v 1] * d); stored in metres with depth_type "z". The reference code mixes normalised
coordinates with metres for ScanNet++; every value here is metres.

Split: the official scene lists, train = nvs_sem_train.txt, val = nvs_sem_val.txt,
test = nvs_test.txt (``--scannetpp-split-file`` takes any other list). ``--scannetpp-frame-step N``
keeps frames whose index is a multiple of N (consecutive 60 fps frames are near duplicates).

Second views (``--pair-offset N``, for the ``motion`` task): the frame N places later among the
scene's frames that exist and are kept (RGB extracted, index a multiple of
``--scannetpp-frame-step``), ordered by the index parsed from the names; so with
``--scannetpp-frame-step 10 --pair-offset 3`` the second view is 30 video frames later where
every frame was extracted. Its camera comes from the same json: ``aligned_pose``, the ARKit
camera-to-world pose registered to the laser scan (metres), in the scan's world frame, which
the mesh, the annotations and the COLMAP poses share. ``pose`` (raw ARKit, its own world
frame per capture) is not used, and the two are never mixed in one pair.

Camera axes of ``aligned_pose``: OpenCV's (x right, y down, z forward), not ARKit's native
x right, y up, z backward. The toolbox itself never reads these poses
(``common/scene_release.py`` only names the file) and the public documentation does not state
the axes; what it rests on is that ScanNet++ users project the scan's annotations into the
iPhone frames with ``inverse(aligned_pose)`` and the json's ``intrinsic`` directly, points in
front having z > 0 (scannetpp issue #154 asks how to use these poses with the meshes). The
distance the ``motion`` task asks about (the length of the translation) does not depend on
the camera axes; its direction and the rotation do. Frames without a usable ``aligned_pose``
(either of the two) keep their record without a pair (``extras.notes`` says why: "no second view: ..."). With
``--scannetpp-register downsample-rgb`` the second view is shrunk the same way (a PNG) with
intrinsics scaled alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from bisect import bisect_left
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from data_builders.base import Frame, SkipFrame, Source, register_source
from data_builders.pairs import (
    add_pair_argument,
    checked_pair_offset,
    finite_pose,
    no_pair,
    pair_extras,
    pair_image,
    report_unpaired,
)
from data_builders.sources._checks import check_depth, check_intrinsics, check_same_size
from data_builders.sources.rgbd_io import image_size, read_mask, read_png16, upsample_nearest, warn_missing
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

log = logging.getLogger(__name__)

MM_PER_METRE = 1000.0
SPLIT_FILES = {"train": "nvs_sem_train.txt", "val": "nvs_sem_val.txt", "test": "nvs_test.txt"}
DEPTH_DIRS = {"iphone": "depth", "render": "render_depth"}
# The toolbox renders iphone/render_depth through the COLMAP camera of iphone/colmap/cameras.txt
# (OPENCV model: its own fx, fy, cx, cy and lens distortion), while this builder describes frames
# with the per-frame ARKit intrinsics of pose_intrinsic_imu.json: the labels would sit in one
# camera's geometry and the intrinsics describe another. Refused until the COLMAP camera is read
# and the frames undistorted (docs/sources-indoor-b.md).
RENDER_REFUSED = (
    "--scannetpp-depth render is not supported: rendered depth follows the COLMAP camera "
    "(iphone/colmap/cameras.txt, with lens distortion), not the ARKit intrinsics this builder "
    "attaches; use the ARKit depth (--scannetpp-depth iphone)"
)
REGISTER = ("upsample-depth", "downsample-rgb")
FRAME_NAME = re.compile(r"^frame_(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)
NOT_EXTRACTED = "(rgb frames not extracted)"
CACHED_SCENES = 2


def frame_files(folder: Path) -> dict[int, Path]:
    """Frame index -> file, parsed from ``frame_<index>.<ext>`` names (empty if no folder)."""
    if not folder.is_dir():
        return {}
    out: dict[int, Path] = {}
    for path in folder.iterdir():
        match = FRAME_NAME.match(path.name)
        if match:
            out[int(match.group(1))] = path
    return out


def read_cameras(path: Path) -> tuple[dict, dict]:
    """Two maps of pose_intrinsic_imu.json: frame name -> its ``intrinsic`` value and frame name
    -> its ``aligned_pose`` value (None where absent); IMU data and raw ARKit poses dropped."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SkipFrame(f"camera file missing: {path}") from None
    except (OSError, ValueError) as err:
        raise SkipFrame(f"unreadable camera file: {path}: {err}") from None
    if not isinstance(data, dict):
        raise SkipFrame(f"camera file is not a frame -> entry mapping: {path}")
    entries = {name: entry if isinstance(entry, dict) else {} for name, entry in data.items()}
    return (
        {name: entry.get("intrinsic") for name, entry in entries.items()},
        {name: entry.get("aligned_pose") for name, entry in entries.items()},
    )


def json_intrinsics(k, width: int, height: int, where: str) -> Intrinsics:
    """A 3x3 ``intrinsic`` matrix of pose_intrinsic_imu.json, describing an image of width x height."""
    try:
        k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    except (TypeError, ValueError) as err:
        raise SkipFrame(f"{where}: unreadable 'intrinsic' in pose_intrinsic_imu.json: {err!r}") from None
    return Intrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), width, height)


@register_source("scannetpp")
class ScanNetPP(Source):
    """ScanNet++ iPhone frames: z-depth in metres registered to the RGB image, per-frame ARKit intrinsics."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--scannetpp-depth",
            choices=sorted(DEPTH_DIRS),
            default="iphone",
            help="iphone: ARKit LiDAR depth (iphone/depth, default); render: mesh-rendered (iphone/render_depth)",
        )
        parser.add_argument(
            "--scannetpp-register",
            choices=REGISTER,
            default="upsample-depth",
            help="bring depth and RGB to one size: upsample the depth (default) or downsample the RGB",
        )
        parser.add_argument(
            "--scannetpp-frame-step", type=int, default=1, help="keep frames whose index is a multiple of N"
        )
        parser.add_argument(
            "--scannetpp-split-file", default=None, help="scene list to use instead of the official one"
        )
        add_pair_argument(parser, unit="frames (of those extracted and kept by --scannetpp-frame-step)")

    def __init__(self, root, split, options=None):
        super().__init__(root, split, options)
        opt = self.options
        self.depth_dir = DEPTH_DIRS.get(getattr(opt, "scannetpp_depth", None) or "iphone")
        self.register = getattr(opt, "scannetpp_register", None) or "upsample-depth"
        self.step = int(getattr(opt, "scannetpp_frame_step", None) or 1)
        if self.depth_dir is None or self.register not in REGISTER or self.step < 1:
            raise DepthLMError(
                f"bad ScanNet++ options: --scannetpp-depth in {sorted(DEPTH_DIRS)}, "
                f"--scannetpp-register in {REGISTER}, --scannetpp-frame-step >= 1"
            )
        if self.depth_dir == DEPTH_DIRS["render"]:
            raise DepthLMError(RENDER_REFUSED)
        self.pair_offset = checked_pair_offset(opt, "scannetpp")
        self.data = self.root / "data" if (self.root / "data").is_dir() else self.root
        # Per-scene file maps and intrinsics, for the few most recent scenes only: keys are sorted,
        # so a worker meets a scene's frames together, and memory stays flat over 1000 scenes.
        self._cache: OrderedDict[tuple[str, str], dict | str] = OrderedDict()

    def iphone(self, scene: str) -> Path:
        return self.data / scene / "iphone"

    def cached(self, scene: str, kind: str, make):
        """make() for (scene, kind), remembered for CACHED_SCENES scenes; a SkipFrame is remembered too."""
        key = (scene, kind)
        if key not in self._cache:
            try:
                self._cache[key] = make()
            except SkipFrame as err:
                self._cache[key] = str(err)
            while len(self._cache) > CACHED_SCENES * (5 if self.pair_offset else 4):
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        value = self._cache[key]
        if isinstance(value, str):
            raise SkipFrame(value)
        return value

    def frames(self, scene: str, kind: str) -> dict[int, Path]:
        return self.cached(scene, kind, lambda: frame_files(self.iphone(scene) / kind))

    def cameras(self, scene: str) -> tuple[dict, dict]:
        """pose_intrinsic_imu.json as frame name -> 'intrinsic' and frame name -> 'aligned_pose'."""
        return self.cached(
            scene, "json", lambda: read_cameras(self.iphone(scene) / "pose_intrinsic_imu.json")
        )

    def intrinsics(self, scene: str) -> dict:
        """Frame name -> its 3x3 'intrinsic' entry of pose_intrinsic_imu.json."""
        return self.cameras(scene)[0]

    def kept(self, scene: str) -> list[int]:
        """The scene's frame indices that exist and are kept, in order: where second views are counted."""
        return self.cached(
            scene, "kept", lambda: sorted(i for i in self.frames(scene, "rgb") if i % self.step == 0)
        )

    def scenes(self) -> list[str]:
        choice = getattr(self.options, "scannetpp_split_file", None)
        if choice:
            path = Path(choice)
        else:
            if self.split not in SPLIT_FILES:
                raise DepthLMError(f"ScanNet++ has splits {sorted(SPLIT_FILES)}, not {self.split!r}")
            folders = [self.root / "splits", self.data.parent / "splits"]
            path = next(
                (f / SPLIT_FILES[self.split] for f in folders if (f / SPLIT_FILES[self.split]).is_file()),
                None,
            )
            if path is None:
                raise DepthLMError(
                    f"ScanNet++ split file {SPLIT_FILES[self.split]} not found in {folders[0]} "
                    "(download the release's splits/ folder, or pass --scannetpp-split-file)"
                )
        try:
            return [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise DepthLMError(f"cannot read ScanNet++ scene list {path}: {err}") from None

    def list_frames(self) -> list[str]:
        wanted = self.scenes()
        present = [s for s in wanted if self.iphone(s).is_dir()]
        warn_missing("ScanNet++ scenes (iphone/ folder)", self.split, wanted, present, self.data)
        if not present:
            raise DepthLMError(
                f"none of the {len(wanted)} ScanNet++ {self.split} scenes has data/<scene>/iphone/ under {self.root}"
            )
        keys = []
        unpaired = 0
        for scene in present:
            rgb = frame_files(self.iphone(scene) / "rgb")  # listing stays out of the load cache
            if not rgb:
                keys.append(f"{scene}/{NOT_EXTRACTED}")
                continue
            kept = [i for i in rgb if i % self.step == 0]
            keys.extend(f"{scene}/{rgb[i].stem}" for i in kept)
            unpaired += min(self.pair_offset, len(kept))
            orphans = sum(
                1
                for i in frame_files(self.iphone(scene) / self.depth_dir)
                if i % self.step == 0 and i not in rgb
            )
            if orphans:
                log.info(
                    "ScanNet++ %s: %d depth maps have no RGB frame (RGB extracted for a subset)",
                    scene,
                    orphans,
                )
        report_unpaired("scannetpp", self.pair_offset, unpaired, len(keys), "frames", "scene")
        return sorted(keys)

    def load(self, key: str) -> Frame:
        scene, index, rgb_path, depth_path, entry = self.partners(key)
        size = image_size(rgb_path)
        intr = check_intrinsics(json_intrinsics(entry, *size, key), key)
        depth = read_png16(depth_path).astype(np.float32) / MM_PER_METRE
        mask_path = self.frames(scene, "rgb_masks").get(index)
        valid = read_mask(mask_path, threshold=127) if mask_path is not None else None
        image, intr, depth = self.registered(key, rgb_path, intr, depth, depth_path)
        if valid is not None and valid.shape != depth.shape:
            valid = upsample_nearest(valid, intr.size)
        check_same_size(intr.size, depth, f"{key} ({depth_path.name})")
        check_depth(depth, valid, f"{key} ({depth_path})")
        extras = self.second_view(key, scene, index, size, intr) if self.pair_offset else {}
        return Frame(
            key=key,
            intrinsics=intr,
            image=image,
            image_path=None if image is not None else rgb_path,
            depth=depth,
            depth_type="z",
            valid=valid,
            split=self.split,
            extras=extras,
        )

    def second_view(self, key: str, scene: str, index: int, size: tuple[int, int], intr: Intrinsics) -> dict:
        """``{"pair": ...}`` for the frame --pair-offset places later, or ``no_pair(why)`` (a note).
        `size` is the frame's RGB size as released, `intr` its registered intrinsics."""
        kept = self.kept(scene)
        pos = bisect_left(kept, index)
        at = pos + self.pair_offset if pos < len(kept) and kept[pos] == index else len(kept)
        if at >= len(kept):
            return no_pair(f"no frame {self.pair_offset} later in the scene")
        other = kept[at]
        name, other_name = f"frame_{index:06d}", f"frame_{other:06d}"
        intrinsics, poses = self.cameras(scene)
        first, second = finite_pose(poses.get(name)), finite_pose(poses.get(other_name))
        if first is None or second is None:
            missing = name if first is None else other_name
            return no_pair(f"no usable aligned_pose for {missing} in pose_intrinsic_imu.json")
        path = self.frames(scene, "rgb").get(other)
        if path is None:
            raise SkipFrame(f"{key}: second view image missing: {self.iphone(scene) / 'rgb' / other_name}")
        other_size = image_size(path)
        if other_size != size:
            return no_pair(f"{other_name} is {other_size[0]}x{other_size[1]}, this frame {size[0]}x{size[1]}")
        try:
            other_intr = check_intrinsics(
                json_intrinsics(intrinsics.get(other_name), *size, other_name), other_name
            )
        except SkipFrame as err:
            return no_pair(f"{other_name}: {err}")
        pair_image(path, other_intr, key)
        if intr.size == size:  # the RGB file as released
            return {"pair": pair_extras(path, other_intr, first, second)}
        image = Frame(key=other_name, intrinsics=other_intr, image_path=path).load_image()
        image = image.resize(intr.size, Image.Resampling.BICUBIC)  # as registered() shrinks the frame
        return {"pair": pair_extras(image, other_intr.resized(*intr.size), first, second)}

    def partners(self, key: str) -> tuple[str, int, Path, Path, object]:
        """The RGB file, depth file and json entry that share this key's frame index."""
        scene, _, name = key.partition("/")
        iphone = self.iphone(scene)
        if name == NOT_EXTRACTED:
            raise SkipFrame(
                f"{key}: RGB frames not extracted from the video, run the toolbox's "
                f"iphone.prepare_iphone_data: {iphone / 'rgb'}"
            )
        match = FRAME_NAME.match(name + ".jpg")
        if match is None:
            raise SkipFrame(f"{key}: not a ScanNet++ frame name (frame_<index>)")
        index = int(match.group(1))
        rgb_path = self.frames(scene, "rgb").get(index)
        if rgb_path is None:
            raise SkipFrame(f"{key}: RGB frame missing: {iphone / 'rgb'}")
        depth_path = self.frames(scene, self.depth_dir).get(index)
        if depth_path is None:
            folder = iphone / self.depth_dir
            if not folder.is_dir():
                raise SkipFrame(f"{key}: depth maps not extracted, run iphone.prepare_iphone_data: {folder}")
            raise SkipFrame(
                f"{key}: no depth map with the same frame index: {folder / f'frame_{index:06d}.png'}"
            )
        entry = self.intrinsics(scene).get(f"frame_{index:06d}", "absent")
        if isinstance(entry, str):
            raise SkipFrame(f"{key}: no entry for this frame in pose_intrinsic_imu.json: {iphone}")
        return scene, index, rgb_path, depth_path, entry

    def registered(
        self, key: str, rgb_path: Path, intr: Intrinsics, depth: np.ndarray, depth_path: Path
    ) -> tuple[Image.Image | None, Intrinsics, np.ndarray]:
        """Image (None = the file as is), intrinsics and depth, all of one size."""
        h, w = depth.shape
        if (w, h) == intr.size:
            return None, intr, depth
        if abs(w * intr.height - h * intr.width) > max(intr.size):  # aspect ratios differ
            raise SkipFrame(
                f"{key}: size mismatch, depth and image differ in aspect ratio: {depth_path} is {w}x{h}, "
                f"the image {intr.width}x{intr.height}"
            )
        if self.register == "upsample-depth":
            return None, intr, upsample_nearest(depth, intr.size)
        image = Frame(key=key, intrinsics=intr, image_path=rgb_path).load_image()
        return image.resize((w, h), Image.Resampling.BICUBIC), intr.resized(w, h), depth
