"""Property tests over the inputs depthlm takes from outside: record files, model answers,
render settings and intrinsics. Any input yields a value, a clean DepthLMError, or a counted
reject -- never an unhandled exception (issue 11, item 6). Modest example counts keep the
file fast; `--hypothesis-seed` reproduces a failure."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics, check_intrinsics, intrinsics_problem
from depthlm.parsing import parse_distance
from depthlm.records import read_records
from depthlm.render import render
from depthlm.settings import RenderSettings

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

numbers = st.one_of(
    st.integers(-(10**6), 10**6),
    st.integers(),  # huge ints: float() overflows
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 64, 48, 31.5, 50.0, 1e300, -1e-9]),
)
json_leaf = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


BASE = {
    "image": "a.png",
    "intrinsics": [50.0, 50.0, 31.5, 23.5, 64, 48],
    "pixel_coords": [[1, 2], [60, 40], [10, 10]],
    "depth": [1.5, 2.5, 3.0],
    "depth_type": "z",
}
KEYS = [*BASE, "extras", "id", "dataset"]
pair = st.lists(numbers, min_size=2, max_size=2)
field_values = {
    "image": st.one_of(st.sampled_from(["a.png", "../a.png", "/etc/passwd", "", "a.png\x00"]), json_value),
    "intrinsics": st.one_of(
        st.lists(numbers, min_size=6, max_size=6), st.lists(numbers, max_size=8), json_value
    ),
    "pixel_coords": st.one_of(st.lists(pair, max_size=4), json_value),
    "depth": st.one_of(st.lists(numbers, min_size=3, max_size=3), json_value),
}


def record_like() -> st.SearchStrategy[dict]:
    """A valid record with up to two fields replaced by anything (wrong types, NaN, huge
    numbers, paths out of the folder) and maybe one removed: every validation step is reached."""

    def mutate(changes: dict, dropped: set) -> dict:
        obj = {**BASE, **changes}
        return {k: v for k, v in obj.items() if k not in dropped}

    changes = st.lists(st.sampled_from(KEYS), max_size=2, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: field_values.get(k, json_value) for k in keys})
    )
    return st.builds(mutate, changes, st.sets(st.sampled_from(KEYS), max_size=1) | st.just(set()))


def line_bytes() -> st.SearchStrategy[bytes]:
    good = record_like().map(lambda obj: json.dumps(obj, allow_nan=True).encode())
    return st.one_of(good, st.binary(max_size=40), st.just(b"{"), st.just(b"\xff\xfe{}"))


@FAST
@given(lines=st.lists(line_bytes(), min_size=1, max_size=6))
def test_read_records_gives_a_record_or_a_counted_reject_for_every_line(tmp_path_factory, lines):
    folder = tmp_path_factory.mktemp("fuzz")
    Image.new("RGB", (64, 48)).save(folder / "a.png")
    lines = [ln.replace(b"\n", b" ").replace(b"\r", b" ") for ln in lines]
    (folder / "x.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    text_lines = (folder / "x.jsonl").read_bytes().split(b"\n")[:-1]
    nonblank = [i + 1 for i, ln in enumerate(text_lines) if ln.strip()]
    rejects = []
    recs = read_records(folder / "x.jsonl", rejects=rejects)  # must not raise
    whole_line = {r.line for r in rejects if r.point is None}
    assert len(recs) == len(nonblank) - len(whole_line)
    for rec in recs:
        assert len(rec) > 0 and np.all(np.isfinite(rec.depths)) and np.all(rec.depths > 0)
        assert intrinsics_problem(rec.intrinsics) is None
    for r in rejects:
        assert r.line in nonblank and "\n" not in str(r)


@FAST
@given(
    text=st.text(max_size=60)
    | st.from_regex(r"[a-z ]*-?[0-9.eE+]{1,12} ?(m|cm|mm|ft|feet|meters|inches)?", fullmatch=True)
)
def test_parse_distance_returns_a_positive_finite_number_or_none(text):
    value = parse_distance(text)
    assert value is None or (isinstance(value, float) and math.isfinite(value) and value > 0)


FIELDS = [
    "f_uni",
    "template",
    "marker",
    "marker_color",
    "marker_size",
    "depth_target",
    "grid",
    "max_pixels",
    "min_pixels",
    "crop_width",
    "crop_height",
    "train_crop",
    "bogus",
]


@FAST
@given(
    data=st.dictionaries(
        st.sampled_from(FIELDS), json_value | st.sampled_from([1000.0, 28, "plain", [1.0, 1.4]]), max_size=4
    )
)
def test_render_settings_from_any_json_are_settings_or_one_clear_error(data):
    try:
        s = RenderSettings.from_dict(data)
    except DepthLMError as err:
        assert "\n" not in str(err)
        return
    assert math.isfinite(s.f_uni) and s.f_uni > 0 and s.min_pixels <= s.max_pixels
    assert RenderSettings.from_dict(s.to_dict()) == s  # what is accepted round-trips


@FAST
@given(values=st.lists(numbers, min_size=6, max_size=6))
def test_the_intrinsics_check_never_crashes_and_agrees_with_itself(values):
    try:
        k = Intrinsics.from_list(values)
    except (ValueError, OverflowError):  # not numbers at all: records reject these before (tested there)
        return
    problem = intrinsics_problem(k)
    try:
        check_intrinsics(k)
        assert problem is None
    except DepthLMError as err:
        assert problem is not None and str(err) == problem


@settings(max_examples=30, deadline=None)
@given(
    size=st.tuples(st.integers(1, 96), st.integers(1, 96)),
    fov=st.tuples(st.floats(0.5, 179.5), st.floats(0.5, 179.5)),
    centre=st.tuples(st.floats(-0.6, 1.1), st.floats(-0.6, 1.1)),
    point=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    f_uni=st.floats(10, 300),
    train=st.booleans(),
)
def test_render_of_any_camera_is_a_query_or_one_clear_error(size, fov, centre, point, f_uni, train):
    w, h = size
    fx, fy = (s / 2 / math.tan(math.radians(a) / 2) for s, a in zip(size, fov))
    k = Intrinsics(fx, fy, centre[0] * w, centre[1] * h, w, h)
    s = RenderSettings(f_uni=f_uni, max_pixels=64 * 28 * 28, min_pixels=4 * 28 * 28)
    px = (min(point[0] * w, w - 0.51), min(point[1] * h, h - 0.51))
    rng = np.random.default_rng(0) if train else None
    try:
        q = render(Image.new("RGB", size, (90, 90, 90)), k, px, s, depth=2.0, depth_type="z", rng=rng)
    except DepthLMError as err:
        assert intrinsics_problem(k) is not None or "outside" in str(err), err
        return
    assert intrinsics_problem(k) is None
    assert (
        q.image.width % 28 == 0
        and q.image.height % 28 == 0
        and q.image.width * q.image.height <= s.max_pixels
    )
    assert 0 <= q.point[0] < q.image.width and 0 <= q.point[1] < q.image.height
