"""Question/answer templates, in one registry.

A template decides the words: the question (which may name the marker, or give the
pixel coordinates in text for the paper's text-coordinate ablation) and the answer
for a depth in metres, rounded to 2 decimals. `answer_regex` matches exactly what
`answer` produces, for format rewards and structured (regex) decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from depthlm.errors import DepthLMError

NUMBER_REGEX = r"\d{1,4}\.\d{2}"


@dataclass(frozen=True)
class Template:
    name: str
    question: str  # format fields: {marker} ("red arrow"), {x}, {y} (query pixel), {width}, {height}
    answer: str  # format field: {d} (metres, a string with 2 decimals)
    answer_regex: str
    draws_marker: bool = True
    system: str | None = None
    description: str = ""

    def format_question(self, *, marker: str, x: int, y: int, width: int, height: int) -> str:
        return self.question.format(marker=marker, x=x, y=y, width=width, height=height)

    def format_answer(self, metres: float) -> str:
        return self.answer.format(d=f"{metres:.2f}")


TEMPLATES: dict[str, Template] = {}


def register_template(template: Template) -> Template:
    TEMPLATES[template.name] = template
    return template


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise DepthLMError(
            f"unknown prompt template {name!r}; known: {', '.join(sorted(TEMPLATES))}"
        ) from None


register_template(
    Template(
        name="reference",
        question=(
            "Given this image, how far is the point pointed by the {marker} from the camera? "
            "Output the thinking process in <think> </think> and final answer (the meter number only, "
            "without the unit) in <answer> </answer> tags."
        ),
        answer="<think> The point is around {d} meters away from the camera. </think>\n\n<answer> {d} </answer>",
        answer_regex=(
            rf"<think> The point is around {NUMBER_REGEX} meters away from the camera\. </think>\n\n"
            rf"<answer> {NUMBER_REGEX} </answer>"
        ),
        description="the DepthLM reference prompt and target, for released DepthLM checkpoints",
    )
)
register_template(
    Template(
        name="plain",
        question="How far is the point marked by the {marker} from the camera?",
        answer="The point is around {d} meters away from the camera.",
        answer_regex=rf"The point is around {NUMBER_REGEX} meters away from the camera\.",
        description="a plain sentence: readable, and about half the reference's decode steps (16 vs 31 tokens)",
    )
)
register_template(
    Template(
        name="number",
        question="How far is the point marked by the {marker} from the camera? Answer with the distance in meters, a number only.",
        answer="{d}",
        answer_regex=NUMBER_REGEX,
        description="the number only: fewest decode steps",
    )
)
register_template(
    Template(
        name="text_coords",
        question=(
            "In this {width}x{height} image, how far is the pixel at column {x}, row {y} "
            "(origin at the top-left corner) from the camera?"
        ),
        answer="The point is around {d} meters away from the camera.",
        answer_regex=rf"The point is around {NUMBER_REGEX} meters away from the camera\.",
        draws_marker=False,
        description="no marker, pixel coordinates in words (the paper's text-coordinate ablation)",
    )
)
