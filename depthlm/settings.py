"""Rendering settings, and how they travel with a model.

Everything that decides what the model sees and must answer lives in one
dataclass. Training writes it into the output folder (``depthlm_render.json``);
evaluation, chat and the demo read it back from the model folder, so a model is
never evaluated at a focal length or with a prompt it was not trained with (the
reference code trains at f_uni 1000 and evaluates at 750).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from depthlm.errors import DepthLMError
from depthlm.geometry import DepthType
from depthlm.markers import COLOR_NAMES, STYLES
from depthlm.prompts import get_template

SETTINGS_FILE = "depthlm_render.json"
F_UNI_RANGE = (10.0, 10000.0)  # pixels; the paper uses 1000
MAX_VIEW_PIXELS = 64 * 10**6  # a view larger than this is a typo, not a setting


def _bad(name: str, value, expected: str):
    raise DepthLMError(f"render setting {name} must be {expected}, got {value!r}")


def _number(name: str, value) -> float:
    """A finite real number (bools and numeric strings are refused: YAML typos, not numbers)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        _bad(name, value, "a finite number")
    return float(value)


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _bad(name, value, "a whole number")
    return int(value)


@dataclass(frozen=True)
class RenderSettings:
    f_uni: float = 1000.0  # every image is rescaled so fx = fy = f_uni (paper default 1000 px)
    template: str = "plain"  # depthlm.prompts registry name
    marker: str = "arrow"
    marker_color: str = "red"
    marker_size: int | None = None  # pixels; None: proportional to f_uni (markers.marker_size)
    depth_target: DepthType = "ray"  # "how far from the camera" = Euclidean ray distance; "z" also possible
    grid: int = 28  # image sides are multiples of this (patch_size * merge_size of the processor)
    max_pixels: int = 1280 * 28 * 28  # pixel budget: larger views are cropped around the query, never resized
    min_pixels: int = 4 * 28 * 28
    # Training crops, as fractions of f_uni (paper at f_uni 1000: width 1000-1400, height 700-1200 px).
    crop_width: tuple[float, float] = (1.0, 1.4)
    crop_height: tuple[float, float] = (0.7, 1.2)
    train_crop: bool = True
    # The task mix a model is trained on ({task: weight}, depthlm.tasks.mix); None: ``depth`` alone,
    # and then not written, so the settings of depth-only runs stay as they were. Chat offers these.
    tasks: dict[str, float] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        """Every field checked for type and range: settings come from YAML, JSON in a model
        folder and the command line, and a NaN or a string must be one clear error, not a
        crash (or a huge allocation) deep inside rendering."""
        for name in ("template", "marker", "marker_color", "depth_target"):
            if not isinstance(getattr(self, name), str):
                _bad(name, getattr(self, name), "a string")
        get_template(self.template)
        f_uni = _number("f_uni", self.f_uni)
        if not F_UNI_RANGE[0] <= f_uni <= F_UNI_RANGE[1]:
            _bad("f_uni", self.f_uni, f"between {F_UNI_RANGE[0]:g} and {F_UNI_RANGE[1]:g} pixels")
        object.__setattr__(self, "f_uni", f_uni)
        if self.marker not in STYLES:
            raise DepthLMError(f"unknown marker {self.marker!r}; known: {', '.join(STYLES)}")
        if self.marker_color not in COLOR_NAMES:
            raise DepthLMError(f"unknown marker_color {self.marker_color!r}; known: {', '.join(COLOR_NAMES)}")
        if self.depth_target not in ("z", "ray"):
            raise DepthLMError(f"depth_target must be 'z' or 'ray', got {self.depth_target!r}")
        if self.marker_size is not None and not 1 <= _whole("marker_size", self.marker_size) <= 1000:
            _bad("marker_size", self.marker_size, "a whole number of pixels from 1 to 1000, or null")
        for name in ("grid", "max_pixels", "min_pixels"):
            _whole(name, getattr(self, name))
        if self.grid < 1 or self.max_pixels < self.grid * self.grid or self.min_pixels > self.max_pixels:
            raise DepthLMError(
                f"inconsistent pixel budget: grid {self.grid}, min {self.min_pixels}, max {self.max_pixels}"
            )
        if self.max_pixels > MAX_VIEW_PIXELS:
            _bad(
                "max_pixels",
                self.max_pixels,
                f"at most {MAX_VIEW_PIXELS} (a {MAX_VIEW_PIXELS // 10**6} Mpx view)",
            )
        for name in ("crop_width", "crop_height"):
            pair = getattr(self, name)
            if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
                _bad(name, pair, "two numbers [min, max] (fractions of f_uni)")
            lo, hi = (_number(name, v) for v in pair)
            if not 0 < lo <= hi <= 100:
                _bad(name, pair, "0 < min <= max <= 100 (fractions of f_uni)")
            object.__setattr__(self, name, (lo, hi))
        if not isinstance(self.train_crop, bool):
            _bad("train_crop", self.train_crop, "true or false")
        if self.tasks is not None:
            from depthlm.tasks.mix import parse_weights

            weights = parse_weights(self.tasks)
            object.__setattr__(self, "tasks", None if weights == {"depth": 1.0} else weights)

    @property
    def task_names(self) -> list[str]:
        """The tasks these settings train (and chat offers): ``["depth"]`` unless a mix is set."""
        return list(self.tasks) if self.tasks else ["depth"]

    def with_(self, **changes) -> RenderSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["crop_width"], d["crop_height"] = list(self.crop_width), list(self.crop_height)
        if self.tasks is None:
            del d["tasks"]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> RenderSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"depthlm_version"}
        if unknown:
            raise DepthLMError(f"unknown render settings: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, folder: str | os.PathLike) -> Path:
        from depthlm import __version__

        path = Path(folder) / SETTINGS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**self.to_dict(), "depthlm_version": __version__}, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> RenderSettings | None:
        """The settings a model folder was trained with, or None when it records none."""
        path = Path(folder) / SETTINGS_FILE
        if not path.is_file():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise DepthLMError(f"{path}: not valid render settings: {err}") from None


# Presets for models that record no settings. "reference" matches the released DepthLM
# checkpoints: trained at f_uni 1000 with the think/answer template and a red arrow.
PRESETS: dict[str, RenderSettings] = {
    "default": RenderSettings(),
    "reference": RenderSettings(template="reference"),
}


def resolve_settings(
    model: str | os.PathLike | None, preset: str | None = None, **overrides
) -> RenderSettings:
    """Settings for a model: what its folder records, else the named preset, then overrides.

    Overriding a recorded setting is allowed (ablations) but never silent: callers print
    what they changed."""
    recorded = RenderSettings.load(model) if model is not None and Path(model).is_dir() else None
    if recorded is not None:
        base = recorded
    else:
        name = preset or "default"
        if name not in PRESETS:
            raise DepthLMError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        base = PRESETS[name]
    return base.with_(**overrides)
