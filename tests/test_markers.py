import numpy as np
import pytest
from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.markers import STYLES, draw_marker, draw_markers


def changed(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.any(np.asarray(a) != np.asarray(b), axis=2)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("background", [(0, 0, 0), (255, 255, 255), (255, 0, 0), (128, 128, 128)])
def test_marker_is_new_visible_and_centred_on_the_pixel(style, background):
    base = Image.new("RGB", (200, 150), background)
    out = draw_marker(base, (100, 70), style=style, size=20)
    assert np.asarray(base).max() == max(background) and out is not base  # input untouched
    diff = changed(base, out)
    ys, xs = np.nonzero(diff)
    assert len(xs) > 20, "marker invisible on this background"
    assert xs.min() - 2 <= 100 <= xs.max() + 2 and ys.min() - 2 <= 70 <= ys.max() + 2
    if style in ("arrow", "dot"):
        assert tuple(np.asarray(out)[70, 100]) == (255, 0, 0)  # the tip covers the query pixel itself
    else:
        assert np.hypot(xs - 100, ys - 70).min() <= 4


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("point", [(0, 0), (199, 149), (0, 149), (199, 0), (2, 75), (197, 75)])
def test_marker_at_borders_stays_whole_and_on_target(style, point):
    base = Image.new("RGB", (200, 150), (40, 90, 40))
    centre = changed(base, draw_marker(base, (100, 75), style=style, size=20)).sum()
    out = draw_marker(base, point, style=style, size=20)
    diff = changed(base, out)
    # arrows turn to stay whole; centred shapes are clipped, at worst to the quarter in a corner
    assert diff.sum() >= (0.8 if style == "arrow" else 0.2) * centre, "marker mostly cut off at the border"
    ys, xs = np.nonzero(diff)
    dist = np.hypot(xs - point[0], ys - point[1])
    if style in ("arrow", "dot"):  # covers the pixel
        assert tuple(np.asarray(out)[point[1], point[0]]) == (255, 0, 0)
    elif style == "circle":  # a ring around it
        assert dist.min() >= 2 and dist.max() <= 20 / 3 + 3
    else:  # a cross through it
        assert np.all(np.minimum(np.abs(xs - point[0]), np.abs(ys - point[1])) <= 2)


def test_arrow_flips_to_come_from_the_side_with_room():
    base = Image.new("RGB", (100, 50))
    left_diff = changed(base, draw_marker(base, (95, 25), size=20))
    right_diff = changed(base, draw_marker(base, (3, 25), size=20))
    assert np.nonzero(left_diff)[1].min() < 95 - 10  # tail to the left of the tip
    assert np.nonzero(right_diff)[1].max() > 3 + 10  # tail to the right of the tip


def test_several_labelled_markers():
    base = Image.new("RGB", (300, 200), (200, 200, 200))
    out = draw_markers(base, [(50, 100), (250, 100)], size=20)
    diff = changed(base, out)
    assert diff[:, :150].sum() > 30 and diff[:, 150:].sum() > 30
    with pytest.raises(DepthLMError, match="2 points but 1 labels"):
        draw_markers(base, [(1, 1), (2, 2)], labels=["A"])


def test_bad_inputs_are_clear_errors():
    base = Image.new("RGB", (10, 10))
    with pytest.raises(DepthLMError, match="outside the 10x10 image"):
        draw_marker(base, (10, 3))
    with pytest.raises(DepthLMError, match="unknown marker style"):
        draw_marker(base, (5, 5), style="star")
    with pytest.raises(DepthLMError, match="unknown marker colour"):
        draw_marker(base, (5, 5), color="mauve")


@pytest.mark.parametrize("size", [7, 8])
def test_a_small_arrow_head_is_filled_with_the_marker_colour(size):
    # The smallest arrows (f_uni 350-400) once drew a head that was all outline: white, not red.
    im = draw_marker(Image.new("RGB", (64, 48), (90, 60, 80)), (40, 24), "arrow", size=size)
    a = np.asarray(im).astype(int)
    assert tuple(a[24, 40]) == (255, 0, 0)  # the tip is the query pixel
    head = np.delete(a[20:29, 36:41], 4, axis=0)  # left of the tip, the shaft's row taken out
    red = (head[..., 0] > 200) & (head[..., 1] < 60) & (head[..., 2] < 60)
    assert red.sum() >= 4, red.astype(int)
