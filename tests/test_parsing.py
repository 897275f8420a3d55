import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from depthlm.parsing import UNITS, answer_text, parse_distance
from depthlm.prompts import TEMPLATES

# Parsing takes microseconds; on a loaded shared machine a timing deadline would only add flakes.
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

REFERENCE_TARGET = (
    "<think> The point is around 3.42 meters away from the camera. </think>\n\n<answer> 3.42 </answer>"
)

CASES = [
    # the examples of the issue and both answer formats we train
    ("<answer> 2.75 </answer>", 2.75),
    ("about 90 cm", 0.9),
    ("roughly 3 feet", 0.9144),
    ("from 1 to 2 m", 1.5),
    (REFERENCE_TARGET, 3.42),
    ("The point is around 3.42 meters away from the camera.", 3.42),
    ("3.42", 3.42),
    # answer tags: only the first tag's content, also unterminated
    ("<think> maybe 7 m </think> <answer> 4 </answer>", 4.0),
    ("<answer> 1.5 m </answer> <answer> 9 m </answer>", 1.5),
    ("<think> 7 m </think> <answer> 2.5", 2.5),
    ("<ANSWER>6</ANSWER>", 6.0),
    ("<think> 7 m </think> <answer> </answer>", None),
    ("<answer>", None),
    # the first number WITH a unit wins over earlier bare numbers
    ("In image 2 the point is 4 m away", 4.0),
    ("Point 1: 3 meters", 3.0),
    ("Step 1 of 3: it is 250 cm away", 2.5),
    ("I am 90% sure: 3 m", 3.0),
    ("3 meters (10 feet)", 3.0),
    ("2.5m", 2.5),
    ("2.5 m.", 2.5),
    ("a 3-metre wall", 3.0),
    ("the distance is 3.5 M", 3.5),
    # every unit
    ("1200 mm", 1.2),
    ("0.002 km", 2.0),
    ("2 kilometres", 2000.0),
    ("12 inches", 0.3048),
    ("12 in.", 0.3048),
    ("12 in", 0.3048),
    ("1 foot", 0.3048),
    ("150 centimetres", 1.5),
    ("150 centimeters", 1.5),
    ("1500 millimeters", 1.5),
    ("2 metres", 2.0),
    ("2 meter", 2.0),
    # units only as whole words
    ("5 mice", 5.0),
    ("3 meh", 3.0),
    ("10 min, then 4 m", 4.0),
    ("3 mm", 0.003),
    ("3 in the corner", 3.0),
    ("3 in 5 cases it is 2 m", 2.0),
    ("model x3 says 2 m", 2.0),
    # ranges: midpoint; an endpoint without a unit borrows the other's
    ("2-3 m", 2.5),
    ("2 - 3 m", 2.5),
    ("2 -3 m", 2.5),
    ("2\u20133 meters", 2.5),
    ("2~3 m", 2.5),
    ("between 2 and 3 meters", 2.5),
    ("between 1 m and 2 m", 1.5),
    ("90 cm to 1 m", 0.95),
    ("1 to 2", 1.5),
    ("3 m to the left", 3.0),
    ("two to three meters", 2.5),
    # a tolerance is dropped; its unit applies to the value
    ("3.42 \u00b1 0.5 m", 3.42),
    ("3.42 +/- 0.5 m", 3.42),
    ("3 +- 1 m", 3.0),
    ("3 +/-1 m", 3.0),
    ("3 m \u00b1 20 cm", 3.0),
    ("-3 \u00b1 1 m", None),
    # compound lengths add up
    ("1 m 20 cm", 1.2),
    ("5 ft 3 in", 5 * 0.3048 + 3 * 0.0254),
    ("5 feet and 3 inches", 5 * 0.3048 + 3 * 0.0254),
    ("five feet three inches", 5 * 0.3048 + 3 * 0.0254),
    ("1 m 2 m", 1.0),
    # number words count only with a unit
    ("three metres", 3.0),
    ("forty meters", 40.0),
    ("twenty-five meters", 25.0),
    ("twenty five meters", 25.0),
    ("Seventeen feet", 17 * 0.3048),
    ("a hundred metres", 100.0),
    ("one hundred and twenty meters", 120.0),
    ("two hundred meters", 200.0),
    ("3 hundred meters", 3.0),  # digits with number words: not read as a unit number
    ("one of them is far", None),
    ("the answer is three", None),
    ("zero meters", None),
    # thousands separators, decimal commas, scientific notation
    ("1,234 mm", 1.234),
    ("1,234,567 mm", 1234.567),
    ("2,5 m", 2.5),
    ("2,50 m", 2.5),
    ("1,2345 m", 1.2345),
    ("1,234.5 mm", 1.2345),
    ("1e3 mm", 1.0),
    ("2.5E-1 m", 0.25),
    (".5 m", 0.5),
    ("1.234,5 m", 1.234),  # the dot is always decimal; digits after "4," are not a new number
    ("version 1.2.3 is 4 m", 4.0),
    # signs: a minus glued to the number is negative (None); a dash between numbers is a range
    ("-3 m", None),
    ("-3", None),
    ("\u22123 m", None),
    ("depth: -2.5 meters", None),
    ("-1 to 2 m", None),
    ("- 3 m", 3.0),  # a markdown bullet, not a minus sign
    # nothing usable
    ("", None),
    ("no idea", None),
    ("0 m", None),
    ("0.0", None),
    ("1e999 m", None),
    ("nan meters", None),
    ("inf", None),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_parse_distance(text, expected):
    got = parse_distance(text)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, rel=1e-12)


def test_table_is_large_and_has_no_duplicates():
    texts = [text for text, _ in CASES]
    assert len(texts) >= 40 and len(set(texts)) == len(texts)


def test_answer_text():
    assert answer_text("a <answer> b </answer> c") == " b "
    assert answer_text("a <answer> b") == " b"
    assert answer_text("no tag") == "no tag"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("metres", [0.01, 0.5, 3.42, 12.0, 79.99, 9999.99])
def test_every_template_answer_parses_back(name, metres):
    assert parse_distance(TEMPLATES[name].format_answer(metres)) == pytest.approx(metres)


metres_strategy = st.floats(min_value=0.001, max_value=1e5, allow_nan=False, allow_infinity=False)


@PROPERTY
@given(metres=metres_strategy, unit=st.sampled_from(sorted(UNITS)), sep=st.sampled_from(["", " ", "-"]))
def test_number_with_unit_round_trips(metres, unit, sep):
    text = f"{metres:.4f}"
    got = parse_distance(f"It is about {text}{sep}{unit}.")
    assert got == pytest.approx(float(text) * UNITS[unit], rel=1e-12)


@PROPERTY
@given(metres=metres_strategy, noise=st.lists(st.integers(-1000, 1000), max_size=4))
def test_answer_tag_wins_over_numbers_outside(metres, noise):
    think = " ".join(f"{n} m" for n in noise)
    text = f"<think> {think} </think> <answer> {metres:.3f} </answer> {noise}"
    expected = float(f"{metres:.3f}")
    assert parse_distance(text) == (pytest.approx(expected) if expected > 0 else None)


@PROPERTY
@given(st.text())
def test_any_text_gives_none_or_a_positive_finite_float(text):
    got = parse_distance(text)
    assert got is None or (isinstance(got, float) and math.isfinite(got) and got > 0)
