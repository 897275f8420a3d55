"""Matterport3D: undistorted colour + depth images of 90 houses, with their .conf intrinsics.

Download: https://niessner.github.io/Matterport/ -- sign the Terms of Use
(http://dovahkiin.stanford.edu/matterport/public/MP_TOS.pdf), send it as the page says, and use the download_mp.py script you are sent, e.g.
``python download_mp.py -o RAW --type undistorted_color_images undistorted_depth_images
undistorted_camera_parameters``, then unzip each house's archives.
Licence: Matterport3D Terms of Use -- non-commercial research and education only; the images
may not be redistributed. Records built here inherit that restriction.

Expected layout (``--root`` may be the folder holding the houses, or ``v1/scans`` above it;
houses are found by their .conf file up to three levels down)::

    ROOT/<house>/undistorted_camera_parameters/<house>.conf
    ROOT/<house>/undistorted_color_images/<pano>_i<cam>_<yaw>.jpg     1280x1024
    ROOT/<house>/undistorted_depth_images/<pano>_d<cam>_<yaw>.png     16-bit

The .conf file (data_organization.md of github.com/niessner/Matterport) is a list of commands::

    intrinsics_matrix <fx> 0 <cx>  0 <fy> <cy>  0 0 1     applies to the scan lines after it
    scan <depth file> <color file> <16 camera-to-world values>

Depth convention: "the pixel's distance in the z-direction from the camera center (_not_ the
euclidean distance)", 0.25 mm per unit (value / 4000 = metres), 0 = no reading. So depth_type is
"z". The release's own reader agrees (GAPS RGBDImage.cpp: PNG value x 0.001 x 0.25 for the
"matterport" format, used as the camera-space z coordinate). The reference code writes Matterport depth as Euclidean ray distance (a fault listed in
../shared/notes/depthlm-reference.md); here it stays z-depth and the one conversion in
depthlm.geometry derives ray distance when a record asks for it.

Principal point: the .conf intrinsics use the GAPS image convention the data_organization
notes spell out ("all images have their origins in the bottom-left of the image"), with pixel
(i, j) spanning [i, i+1) -- the image files themselves are stored top row first as usual. In
our convention (OpenCV: origin top-left, integer = pixel centre) that is
``cx = cx_conf - 0.5`` and ``cy = H - 0.5 - cy_conf``.

Split: the official benchmark house lists (tasks/benchmark/scenes_{train,val,test}.txt of the
Matterport repository: 61 / 11 / 18 houses), copied below. Houses of the split that are not on
disk are named in a warning (a partial download is fine).

Reference faults fixed: z-depth labelled as z (not mixed with ray distance); intrinsics come
from the frame's own .conf line (the reference's Matterport writer stores a key its loader
cannot read); no hard-coded paths; frames sorted by key, so builds are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_builders.base import Frame, SkipFrame, Source, register_source
from data_builders.sources._checks import check_depth, check_intrinsics, check_same_size
from data_builders.sources.rgbd_io import image_size, read_png16, warn_missing
from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics

DEPTH_UNITS_PER_METRE = 4000.0  # 0.25 mm per unit

# Official benchmark split (niessner/Matterport, tasks/benchmark/scenes_*.txt).
SPLITS: dict[str, tuple[str, ...]] = {
    "train": tuple(
        """17DRP5sb8fy 1LXtFkjw3qL 1pXnuDYAj8r 29hnd4uzFmX 5LpN3gDmAk7 5q7pvUzZiYa 759xd9YjKW5
        7y3sRwLe3Va 82sE5b5pLXE 8WUmhLawc2A aayBHfsNo7d ac26ZMwG7aT B6ByNegPMKs b8cTxDM8gDG
        cV4RVeZvu5T D7N2EKCX4Sj e9zR4mvMWw7 EDJbREhghzL GdvgFV5R1Z5 gTV8FGcVJC9 HxpKQynjfin
        i5noydFURQK JeFG25nYj2p JF19kD82Mey jh4fc5c5qoQ kEZ7cmS4wCh mJXqzFtmKg4 p5wJjkQkbXX
        Pm6F8kyY3z2 pRbA3pwrgk9 PuKPg4mmafe PX4nDJXEHrG qoiz87JEwZ2 rPc6DW4iMge s8pcmisQ38h
        S9hNv5qa7GM sKLMLpTHeUy SN83YJsR3w2 sT4fr6TAbpF ULsKaCPVFJR uNb9QFRL6hY Uxmj2M2itWa
        V2XKFyX4ASd VFuaQ6m2Qom VVfe2KiqLaN Vvot9Ly1tCj vyrNrziPKCB VzqfbhrpDEA XcA2TqTSSAj
        2n8kARJN3HM D7G3Y4RVNrH dhjEzFoUFzH E9uDoFAP3SH gZ6f7yhEvPG JmbYfDe2QKZ r1Q1Z4BcV1o
        r47D5H71a5s ur6pFq6Qu1A VLzqgDo317F YmJkqBEsHnH ZMojNkEp431""".split()
    ),
    "val": tuple(
        """2azQ1b91cZZ 8194nk5LbLH EU6Fwq7SyZv oLBMNvg9in8 QUCTc6BB5sX TbHJrupSAjP X7HyMhZNoso
        pLe4wQe7qrG x8F5xyUWy9e Z6MFQCViBuw zsNo4HB9uLZ""".split()
    ),
    "test": tuple(
        """2t7WUuJeko7 5ZKStnWn8Zo ARNzJeq3xxb fzynW3qQPVF jtcxE69GiFV pa4otMbVnkk q9vSo1VnCiC
        rqfALeAoiTq UwV83HsGsw3 wc2JMjhGNzB WYY7iVyf5p8 YFuZgdQ5vWj yqstnuAEVhm YVUC4YcDtcY
        gxdoqLR6rwA gYvKGZ5eRqb RPmz2sHmrrY Vt2qJdWjCF2""".split()
    ),
}


@dataclass(frozen=True)
class ConfEntry:
    """One scan line of a .conf file, or the reason it cannot be used."""

    depth_name: str = ""
    color_name: str = ""
    fx: float = 0.0
    fy: float = 0.0
    cx: float = 0.0
    cy: float = 0.0
    error: str = ""


def parse_conf(path: Path) -> dict[str, ConfEntry]:
    """Entries of a .conf file keyed by colour-image stem (bad lines keyed ``<file>:<line>``)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DepthLMError(f"cannot read Matterport3D camera file {path}: {err}") from None
    entries: dict[str, ConfEntry] = {}
    intr: tuple[float, float, float, float] | None = None
    for lineno, line in enumerate(lines, 1):
        words = line.split()
        where = f"{path.name}:{lineno}"
        if not words:
            continue
        if words[0] == "intrinsics_matrix":
            try:
                m = [float(w) for w in words[1:10]]
                intr = (m[0], m[4], m[2], m[5]) if len(m) == 9 else None
            except ValueError:
                intr = None
            if intr is None:
                intr = (float("nan"),) * 4  # scans after a broken intrinsics line are rejected, not misread
        elif words[0] == "scan":
            if len(words) < 3:
                entries[where] = ConfEntry(
                    error=f"{path}:{lineno}: scan line without depth and colour file names"
                )
                continue
            key = Path(words[2]).stem
            if intr is None:
                entries[key] = ConfEntry(
                    words[1], words[2], error=f"{path}:{lineno}: scan line before any intrinsics_matrix"
                )
            elif not all(np.isfinite(intr)):
                entries[key] = ConfEntry(
                    words[1], words[2], error=f"{path}:{lineno}: unreadable intrinsics_matrix line above it"
                )
            else:
                entries[key] = ConfEntry(words[1], words[2], *intr)
    return entries


def conf_intrinsics(entry: ConfEntry, width: int, height: int) -> Intrinsics:
    """.conf intrinsics (GAPS: origin bottom-left, pixel i spans [i, i+1)) in our convention."""
    return Intrinsics(entry.fx, entry.fy, entry.cx - 0.5, height - 0.5 - entry.cy, width, height)


def find_houses(root: Path) -> dict[str, Path]:
    """House id -> house folder, for every ``<house>/undistorted_camera_parameters/<house>.conf`` at
    the shallowest depth (0-3 levels below root) that has any: deeper levels are never listed, so
    the image folders of 90 houses are not walked."""
    for pattern in ("", "*/", "*/*/", "*/*/*/"):
        houses: dict[str, Path] = {}
        for conf in sorted(root.glob(f"{pattern}undistorted_camera_parameters/*.conf")):
            house_dir = conf.parent.parent
            if conf.stem in houses:
                raise DepthLMError(
                    f"Matterport3D house {conf.stem} found twice: {houses[conf.stem]} and {house_dir}"
                )
            houses[conf.stem] = house_dir
        if houses:
            return houses
    return {}


@register_source("matterport3d")
class Matterport3D(Source):
    """Undistorted Matterport3D RGB-D frames: z-depth in metres, per-frame .conf intrinsics."""

    def __init__(self, root, split, options=None):
        super().__init__(root, split, options)
        self._houses: dict[str, Path] | None = None
        self._confs: dict[str, dict[str, ConfEntry]] = {}

    def houses(self) -> dict[str, Path]:
        if self._houses is None:
            if not self.root.is_dir():
                raise DepthLMError(f"Matterport3D root {self.root} is not a folder")
            self._houses = find_houses(self.root)
            if not self._houses:
                raise DepthLMError(
                    f"no Matterport3D house under {self.root}: expected "
                    "<house>/undistorted_camera_parameters/<house>.conf (unzip the undistorted_* archives)"
                )
        return self._houses

    def conf(self, house: str) -> dict[str, ConfEntry]:
        if house not in self._confs:
            path = self.houses()[house] / "undistorted_camera_parameters" / f"{house}.conf"
            self._confs[house] = parse_conf(path)
        return self._confs[house]

    def list_frames(self) -> list[str]:
        if self.split not in SPLITS:
            raise DepthLMError(f"Matterport3D has splits {sorted(SPLITS)}, not {self.split!r}")
        houses = self.houses()
        present = [h for h in SPLITS[self.split] if h in houses]
        warn_missing("Matterport3D houses", self.split, SPLITS[self.split], present, self.root)
        if not present:
            raise DepthLMError(
                f"none of the {len(SPLITS[self.split])} {self.split} houses of Matterport3D is under {self.root}"
            )
        return sorted(f"{house}/{name}" for house in present for name in self.conf(house))

    def load(self, key: str) -> Frame:
        house, _, name = key.partition("/")
        if house not in self.houses():
            raise SkipFrame(f"Matterport3D house {house} not found under {self.root}")
        entry = self.conf(house).get(name)
        if entry is None:
            raise SkipFrame(f"{key}: no scan line for this frame in {house}.conf")
        if entry.error:
            raise SkipFrame(entry.error)
        house_dir = self.houses()[house]
        color = house_dir / "undistorted_color_images" / entry.color_name
        depth_path = house_dir / "undistorted_depth_images" / entry.depth_name
        size = image_size(color)
        raw = read_png16(depth_path)
        check_same_size(size, raw, f"{key} ({depth_path.name})")
        depth = raw.astype(np.float32) / DEPTH_UNITS_PER_METRE  # 0 stays 0 = no reading
        check_depth(depth, None, f"{key} ({depth_path})")
        intr = check_intrinsics(conf_intrinsics(entry, *size), f"{key} ({house}.conf)")
        return Frame(
            key=key, intrinsics=intr, image_path=color, depth=depth, depth_type="z", split=self.split
        )
