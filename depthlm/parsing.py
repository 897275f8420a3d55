"""Read a distance in metres out of a model's free-text answer.

A model may answer "<answer> 2.75 </answer>", "about 90 cm", "roughly 3 feet", "from 1 to 2 m"
or "five feet three inches". The text is split into tokens (numbers, words, dashes, other marks)
and a few rules read lengths from the token stream:

1. Only the first ``<answer>`` tag's content is read when there is one (also unterminated).
2. A length is a number, optionally followed by a unit ("3 m", "3-metre"); a compound length
   adds smaller units ("1 m 20 cm", "5 ft and 3 in"). Ranges ("2-3 m", "1 to 2 m",
   "between 2 and 3 m") give their midpoint; an endpoint without a unit borrows the other's.
   A tolerance is dropped: "3.42 ± 0.5 m" is 3.42 m.
3. The first length that carries a unit wins; if none carries one, the first number, in metres.
4. Zero, negative, non-finite values and text without a number give ``None``: the caller
   counts those as parse failures instead of scoring them (the reference code scored
   negative numbers as correct and unparseable text as 0).

Numbers: "1,234" (a comma followed by exactly three digits) is a thousands separator, any
other comma before digits is a decimal comma ("2,5"); "1e3" scientific notation is read;
number words from zero to nine hundred and ninety-nine ("three", "twenty-five", "one hundred
and twenty") count only when a unit follows, because bare words such as "one" are usually
pronouns. See docs/parsing-metrics.md for the full table of cases.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "TIME_UNITS",
    "UNITS",
    "answer_text",
    "parse_choice",
    "parse_distance",
    "parse_duration",
    "parse_labelled",
    "tokenize",
]

# Metres per unit. Units match whole words only, so "5 mice", "3 meh" and "10 min" carry no unit.
UNITS: dict[str, float] = {
    **dict.fromkeys(["m", "meter", "meters", "metre", "metres"], 1.0),
    **dict.fromkeys(["cm", "centimeter", "centimeters", "centimetre", "centimetres"], 0.01),
    **dict.fromkeys(["mm", "millimeter", "millimeters", "millimetre", "millimetres"], 0.001),
    **dict.fromkeys(["km", "kilometer", "kilometers", "kilometre", "kilometres"], 1000.0),
    **dict.fromkeys(["ft", "foot", "feet"], 0.3048),
    **dict.fromkeys(["in", "inch", "inches"], 0.0254),
}
FOOT = UNITS["ft"]

ONES = {w: i for i, w in enumerate("zero one two three four five six seven eight nine".split())}
TEENS = {
    w: 10 + i
    for i, w in enumerate(
        "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
}
TENS = {w: 20 + 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}

_TOKEN = re.compile(
    r"""
      (?P<num>(?<![\w.])(?<!\d,)[-\u2212]?         # not inside "x3", "1.2.3", "1.234,5"; a sign only when
                                                   # glued to the digits: "-3", not "2-3"
              (?:\d+(?:,\d{3}(?!\d))*(?:[.,]\d+)?  # 1,234.5  2,5  3
                |\.\d+)                            # .5
              (?:[eE][-+]?\d+)?)                   # 1e3
    | (?P<word>[^\W\d_]+)
    | (?P<dash>[-\u2010-\u2015\u2212])
    | (?P<tilde>[~\u223c\u301c])
    | (?P<other>\S)
    """,
    re.VERBOSE,
)
_THOUSANDS_COMMA = re.compile(r",(?=\d{3}(?!\d))")
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)


@dataclass(frozen=True)
class Token:
    kind: str  # "num", "word", "dash", "tilde" or "other"
    text: str  # words are lower-cased
    value: float = math.nan  # for "num" tokens


@dataclass(frozen=True)
class _Length:
    value: float  # in `unit`
    unit: float | None  # metres per unit; None when no unit was written
    from_word: bool  # spelled out ("three"): only trusted with a unit
    end: int  # index of the first token after it


def answer_text(text: str) -> str:
    """The first <answer> tag's content (up to </answer> or the end), or the whole text."""
    opening = _ANSWER_OPEN.search(text)
    if opening is None:
        return text
    rest = text[opening.end() :]
    closing = _ANSWER_CLOSE.search(rest)
    return rest if closing is None else rest[: closing.start()]


def tokenize(text: str) -> list[Token]:
    tokens = []
    for match in _TOKEN.finditer(text):
        kind, raw = match.lastgroup, match.group()
        if kind == "num":
            if raw[0] in "-\u2212" and tokens and (tokens[-1].kind == "num" or tokens[-1].text in ("+", "/")):
                # "2 -3 m" is a sloppy range and "3 +/-1 m" a tolerance, not a negative number.
                tokens.append(Token("dash", raw[0]))
                raw = raw[1:]
            number = _THOUSANDS_COMMA.sub("", raw).replace(",", ".").replace("\u2212", "-")
            tokens.append(Token(kind, raw, float(number)))
        else:
            tokens.append(Token(kind, raw.lower()))
    return tokens


def parse_distance(text: str) -> float | None:
    """The distance in metres the text states, or None if it states no usable (positive, finite) one."""
    tokens = tokenize(answer_text(text))
    first_bare = None
    i = 0
    while i < len(tokens):
        found = _quantity(tokens, i)
        if found is None:
            i += 1
            continue
        metres, has_unit, i = found
        if has_unit:
            return _usable(metres)
        if first_bare is None:
            first_bare = metres
    return None if first_bare is None else _usable(first_bare)


def _usable(metres: float) -> float | None:
    return float(metres) if math.isfinite(metres) and metres > 0 else None


def _quantity(tokens: list[Token], i: int) -> tuple[float, bool, int] | None:
    """(metres, has_unit, next index) for a length or range starting at token i."""
    if _word(tokens, i) == "between":
        first = _length(tokens, i + 1)
        if first is not None and _word(tokens, first.end) == "and":
            second = _length(tokens, first.end + 1)
            if second is not None:
                return _midpoint(first, second)
        return None
    first = _length(tokens, i)
    if first is None:
        return None
    if _kind(tokens, first.end) in ("dash", "tilde") or _word(tokens, first.end) == "to":
        second = _length(tokens, first.end + 1)
        if second is not None:
            return _midpoint(first, second)
    tolerance = _after_plus_minus(tokens, first.end)
    if tolerance is not None and (spread := _length(tokens, tolerance)) is not None:
        # "3.42 ± 0.5 m": the value is the first number, in the unit written after the spread
        first = _Length(first.value, first.unit or spread.unit, first.from_word, spread.end)
    if first.unit is None and first.from_word:
        return None
    return first.value * (first.unit or 1.0), first.unit is not None, first.end


def _midpoint(a: _Length, b: _Length) -> tuple[float, bool, int] | None:
    unit_a, unit_b = a.unit or b.unit, b.unit or a.unit
    if unit_a is None and (a.from_word or b.from_word):
        return None
    if a.value < 0 or b.value < 0:
        return math.nan, unit_a is not None, b.end
    return (a.value * (unit_a or 1.0) + b.value * (unit_b or 1.0)) / 2, unit_a is not None, b.end


def _after_plus_minus(tokens: list[Token], i: int) -> int | None:
    """The index after a "±", "+/-" or "+-" sign at token i, else None."""
    texts = [t.text for t in tokens[i : i + 3]]
    if texts[:1] == ["\u00b1"]:
        return i + 1
    if texts[:2] == ["+", "-"]:
        return i + 2
    if texts == ["+", "/", "-"]:
        return i + 3
    return None


def _length(tokens: list[Token], i: int) -> _Length | None:
    """A number, its unit if any, and any smaller units that follow ("5 ft 3 in")."""
    number = _number(tokens, i)
    if number is None:
        return None
    value, from_word, j = number
    unit, after = _unit(tokens, j, after_feet=False)
    if unit is None:
        return _Length(value, None, from_word, j)
    metres, smallest, j = value * unit, unit, after
    while True:
        k = j + 1 if _word(tokens, j) == "and" else j
        part = _number(tokens, k)
        if part is None or part[0] < 0:
            break
        part_unit, after = _unit(tokens, part[2], after_feet=smallest == FOOT)
        if part_unit is None or part_unit >= smallest:
            break
        metres, smallest, j = metres + part[0] * part_unit, part_unit, after
    return _Length(metres / unit, unit, from_word, j)


def _number(tokens: list[Token], i: int) -> tuple[float, bool, int] | None:
    """(value, spelled out?, next index) for a number or number words at token i."""
    if _kind(tokens, i) == "num":
        return tokens[i].value, False, i + 1
    spelled = _number_words(tokens, i)
    return None if spelled is None else (float(spelled[0]), True, spelled[1])


def _number_words(tokens: list[Token], i: int) -> tuple[int, int] | None:
    """0-999 in words: "seven", "twenty-five", "a hundred", "three hundred and twelve"."""
    word, following = _word(tokens, i), _word(tokens, i + 1)
    if following == "hundred" and (word == "a" or ONES.get(word, 0) > 0):
        hundreds, j = 100 * ONES.get(word, 1), i + 2
    else:
        return _below_hundred(tokens, i)
    rest = _below_hundred(tokens, j + 1 if _word(tokens, j) == "and" else j)
    return (hundreds, j) if rest is None else (hundreds + rest[0], rest[1])


def _below_hundred(tokens: list[Token], i: int) -> tuple[int, int] | None:
    word = _word(tokens, i)
    if word in TENS:
        k = i + 2 if _kind(tokens, i + 1) == "dash" else i + 1
        ones = ONES.get(_word(tokens, k), 0)
        return (TENS[word] + ones, k + 1) if ones else (TENS[word], i + 1)
    if word in TEENS:
        return TEENS[word], i + 1
    if word in ONES:
        return ONES[word], i + 1
    return None


def _unit(tokens: list[Token], j: int, *, after_feet: bool) -> tuple[float | None, int]:
    """(metres per unit, next index) for a unit word at token j ("3 m", "3-metre"), else (None, j)."""
    k = j + 1 if _kind(tokens, j) == "dash" else j
    word = _word(tokens, k)
    if word not in UNITS:
        return None, j
    # "in" is an inch only in "5 ft 3 in" or when no word or number follows ("12 in."):
    # "3 in the corner" is a preposition.
    if word == "in" and not after_feet and _kind(tokens, k + 1) in ("word", "num"):
        return None, j
    return UNITS[word], k + 1


def _kind(tokens: list[Token], i: int) -> str | None:
    return tokens[i].kind if i < len(tokens) else None


def _word(tokens: list[Token], i: int) -> str | None:
    return tokens[i].text if _kind(tokens, i) == "word" else None


# --- answers of the other tasks (depthlm.tasks): durations, choices, labelled lists ----------

# Seconds per unit. "m" stays metres, never minutes.
TIME_UNITS: dict[str, float] = {
    **dict.fromkeys(["s", "sec", "secs", "second", "seconds"], 1.0),
    **dict.fromkeys(["ms", "millisecond", "milliseconds"], 0.001),
    **dict.fromkeys(["min", "mins", "minute", "minutes"], 60.0),
    **dict.fromkeys(["h", "hr", "hrs", "hour", "hours"], 3600.0),
}
# Words after a capital "A" that make it a label, not the article ("A is closer", "A or B").
_VERBS = frozenset(
    {"is", "was", "seems", "appears", "looks", "lies", "would", "should", "must", "or", "and", "than", "vs"}
)
_NEARER = frozenset({"closer", "nearer"})
_FARTHER = frozenset({"farther", "further"})
_LABEL_MENTION = re.compile(
    r"(?P<pre>\b(?i:point|marker|label)\s+)?(?<![\w'])(?P<label>[A-Za-z])(?![\w'])(?P<sep>\s*(?::|=|->|\)|\u2192))?"
)
_LABEL_VERB = re.compile(r"\s+(?:(?:is|was|lies|sits|at)\b|[~\u2248]?\d)")  # "A is ...", "A 2.3 m"


def parse_duration(text: str) -> float | None:
    """The time in seconds the text states ("about 2.5 seconds", "1 min 20 s", "3-4 s"), or None.

    The same rules as parse_distance with time units: the first duration with a unit wins,
    else the first bare number (seconds); ranges give their midpoint; words need a unit."""
    tokens = tokenize(answer_text(text))
    first_bare = None
    i = 0
    while i < len(tokens):
        found = _duration_or_range(tokens, i)
        if found is None:
            i += 1
            continue
        seconds, has_unit, i = found
        if has_unit:
            return _usable(seconds)
        if first_bare is None:
            first_bare = seconds
    return None if first_bare is None else _usable(first_bare)


def _duration_or_range(tokens: list[Token], i: int) -> tuple[float, bool, int] | None:
    if _word(tokens, i) == "between":
        first = _duration(tokens, i + 1)
        if first is not None and _word(tokens, first.end) == "and":
            second = _duration(tokens, first.end + 1)
            if second is not None:
                return _midpoint(first, second)
        return None
    first = _duration(tokens, i)
    if first is None:
        return None
    if _kind(tokens, first.end) in ("dash", "tilde") or _word(tokens, first.end) == "to":
        second = _duration(tokens, first.end + 1)
        if second is not None:
            return _midpoint(first, second)
    if first.unit is None and (first.from_word or _unit(tokens, first.end, after_feet=False)[0] is not None):
        return None  # a spelled-out number without a unit, or a length ("5 m") is no duration
    return first.value * (first.unit or 1.0), first.unit is not None, first.end


def _duration(tokens: list[Token], i: int) -> _Length | None:
    """A number, its time unit if any, and smaller units that follow ("1 min and 20 s")."""
    number = _number(tokens, i)
    if number is None:
        return None
    value, from_word, j = number
    unit, j2 = _time_unit(tokens, j)
    if unit is None:
        return _Length(value, None, from_word, j)
    seconds, smallest, j = value * unit, unit, j2
    while True:
        k = j + 1 if _word(tokens, j) == "and" else j
        part = _number(tokens, k)
        if part is None or part[0] < 0:
            break
        part_unit, after = _time_unit(tokens, part[2])
        if part_unit is None or part_unit >= smallest:
            break
        seconds, smallest, j = seconds + part[0] * part_unit, part_unit, after
    return _Length(seconds / unit, unit, from_word, j)


def _time_unit(tokens: list[Token], j: int) -> tuple[float | None, int]:
    k = j + 1 if _kind(tokens, j) == "dash" else j
    word = _word(tokens, k)
    return (TIME_UNITS[word], k + 1) if word in TIME_UNITS else (None, j)


def parse_choice(text: str, options: tuple[str, ...] = ("A", "B")) -> str | None:
    """Which option (an upper-case letter) the text picks: "Point B is closer.", "(A)", "B",
    "the one marked A". Several options named: the one said to be closer/nearer wins, or with
    two options the other than the one said to be farther; otherwise None (ambiguous).

    A capital "A" followed by an ordinary word ("A point further left...") is read as the article."""
    body = answer_text(text)
    named: list[tuple[str, str]] = []  # (option, the word after it)
    for m in _LABEL_MENTION.finditer(body):
        label = m.group("label")
        if label not in options and not (m.group("pre") and label.upper() in options):
            continue
        after = body[m.end() :].split(None, 2)
        nxt = after[0].lower().strip(".,;:!?)") if after else ""
        is_label = bool(m.group("pre") or m.group("sep")) or not nxt or nxt in _VERBS
        is_label = is_label or nxt in _NEARER | _FARTHER or not after[0][:1].isalpha()
        if label == "A" and not is_label:
            continue
        rest = " ".join(after[:2]).lower()
        named.append((label.upper(), rest))
    chosen = {label for label, _ in named}
    if len(chosen) == 1:
        return chosen.pop()
    if not chosen:
        return None
    nearer = {label for label, rest in named if any(w in rest.split() for w in _NEARER)}
    farther = {label for label, rest in named if any(w in rest.split() for w in _FARTHER)}
    if len(nearer) == 1:
        return nearer.pop()
    if len(farther) == 1 and len(options) == 2:
        return next(o for o in options if o not in farther)
    return None


def parse_labelled(text: str, labels: tuple[str, ...] | None = None) -> dict[str, float] | None:
    """Distances per label from "A: 2.31 m, B: 4.02 m" or "Point A is about 2 m away; B is 90 cm".

    Each label mention ("A:", "A =", "A is", "A 2.3 m", "point A") opens a segment that runs to the next
    mention; parse_distance reads the segment. A label that is not in `labels` (when given) is
    still returned, so callers can count it as extra; the first value of a repeated label wins.
    Labels without a readable distance are left out (callers count them missing). None: no label
    with a distance at all."""
    body = answer_text(text)
    mentions: list[tuple[str, int, int]] = []  # (label, match start, match end)
    for m in _LABEL_MENTION.finditer(body):
        label = m.group("label").upper() if m.group("pre") else m.group("label")
        if not label.isupper() or (labels is not None and label not in labels and not m.group("sep")):
            continue
        if m.group("pre") or m.group("sep") or _LABEL_VERB.match(body, m.end()):
            mentions.append((label, m.start(), m.end()))
    out: dict[str, float] = {}
    for n, (label, _, end) in enumerate(mentions):
        stop = mentions[n + 1][1] if n + 1 < len(mentions) else len(body)
        value = parse_distance(body[end:stop])
        if value is not None and label not in out:
            out[label] = value
    return out or None
