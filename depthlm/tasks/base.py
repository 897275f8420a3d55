"""What every task is: one small interface, the lmms-eval way.

A task turns one record into one query: it says whether it can use the record
(``check``), picks pixels, a box or a second view with a seeded rng (``sample``),
renders the views through ``depthlm.render`` and marks them (``build``), and reads and
scores answers (``parse``, ``metrics``, ``reward``). Ground truth always comes from the
record's 3D data (depths, intrinsics, masks, poses), never from a model.
"""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics
from depthlm.metrics import choice_metrics, depth_metrics, labelled_metrics
from depthlm.prompts import NUMBER_REGEX, get_template
from depthlm.records import Record, extras_files
from depthlm.rewards import choice_score, labelled_score, number_score
from depthlm.settings import RenderSettings

AnswerKind = Literal["metres", "seconds", "choice", "labelled"]
Truth = float | str | dict[str, float]
ANY_SOURCE = "any"  # every builder source: the task needs only labelled points


class TaskError(DepthLMError):
    """A record a task cannot use, with the record and the reason (counted and listed by callers)."""


@dataclass(frozen=True)
class TaskTemplate:
    """A task's words, like depthlm.prompts.Template: the question's format fields are the
    task's own; ``answer_regex`` matches exactly what ``answer`` produces (format rewards,
    structured decoding)."""

    question: str
    answer: str
    answer_regex: str


@dataclass
class Sample:
    """What a task picked from a record, in the record's own pixels, before rendering."""

    indices: list[int] = field(default_factory=list)  # labelled points of the record used
    labels: list[str] = field(default_factory=list)  # their letters, in order
    info: dict = field(default_factory=dict)  # task-specific: speed, object id and box, ...


@dataclass
class TaskQuery:
    """What the model sees (one image or several) and what it must answer."""

    task: str
    images: list[Image.Image]
    intrinsics: list[Intrinsics]  # one per image, describing it exactly
    question: str
    answer: str | None  # target text
    truth: Truth | None
    settings: RenderSettings
    points: dict[str, tuple[int, int]] = field(default_factory=dict)  # label -> view pixel (first image)
    box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1) view pixels, inclusive
    meta: dict = field(default_factory=dict)

    @property
    def image(self) -> Image.Image:
        """The first view: what code written for depthlm.render.Query (one image) shows or logs."""
        return self.images[0]

    def messages(self, with_answer: bool = True) -> list[dict]:
        """TRL's conversational format; one {"type": "image"} per image, in order."""
        system = get_template(self.settings.template).system
        msgs: list[dict] = []
        if system:
            msgs.append({"role": "system", "content": [{"type": "text", "text": system}]})
        content = [{"type": "image"} for _ in self.images] + [{"type": "text", "text": self.question}]
        msgs.append({"role": "user", "content": content})
        if with_answer:
            if self.answer is None:
                raise DepthLMError(f"this {self.task} query has no ground truth, so no answer to train on")
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": self.answer}]})
        return msgs

    def sft_example(self) -> dict:
        return {"images": list(self.images), "messages": self.messages(with_answer=True)}

    def prompt_example(self) -> dict:
        """A GRPO/evaluation row: the prompt plus the ``task`` and ``truth`` columns that
        ``depthlm.rewards.task_reward`` reads (truth as JSON text: one Arrow type for all tasks)."""
        return {
            "images": list(self.images),
            "prompt": self.messages(with_answer=False),
            "task": self.task,
            "truth": json.dumps(self.truth),
        }


class Task(ABC):
    """One kind of question. Subclasses set the class attributes and implement sample/build."""

    name: ClassVar[str]
    answer_kind: ClassVar[AnswerKind]
    description: ClassVar[str]
    template: ClassVar[TaskTemplate | None] = None  # None: the settings' depth template (depth task)
    needs: ClassVar[tuple[str, ...]] = ()  # record.extras keys the task reads
    sources: ClassVar[tuple[str, ...]] = (ANY_SOURCE,)  # builder sources that can feed it today
    min_points: ClassVar[int] = 1  # labelled points a record needs
    images_per_query: ClassVar[int] = 1

    # -- which records -------------------------------------------------------------------
    def check(self, record: Record) -> str | None:
        """None when the task can use the record, else the reason it cannot (for rejects lists)."""
        if len(record) < self.min_points:
            return f"needs {self.min_points} labelled points, record has {len(record)}"
        missing = [key for key in self.needs if key not in record.extras]
        if missing:
            return f"needs extras {', '.join(missing)}"
        for keys, path in extras_files(record.extras):  # e.g. a parquet row far from its masks
            if keys[0] in self.needs and not os.path.isfile(path):
                return f"extras {'.'.join(keys)} file not found: {path}"
        return None

    def usable(self, record: Record) -> bool:
        return self.check(record) is None

    # -- one query -----------------------------------------------------------------------
    @abstractmethod
    def sample(self, record: Record, rng: np.random.Generator, settings: RenderSettings) -> Sample:
        """Pick what to ask about (seeded: the same rng state gives the same pick)."""

    @abstractmethod
    def build(
        self,
        record: Record,
        sample: Sample,
        settings: RenderSettings,
        *,
        rng: np.random.Generator | None = None,
        image: Image.Image | None = None,
    ) -> TaskQuery:
        """Render and mark the view(s), write question and answer. rng: training crop; None: evaluation view."""

    def query(
        self,
        record: Record,
        settings: RenderSettings,
        rng: np.random.Generator,
        *,
        train: bool = False,
        image: Image.Image | None = None,
    ) -> TaskQuery:
        """sample + build in one call; raises TaskError when the record cannot serve this task."""
        reason = self.check(record)
        if reason is not None:
            raise TaskError(f"{record.id}: {self.name}: {reason}")
        picked = self.sample(record, rng, settings)
        return self.build(record, picked, settings, rng=rng if train else None, image=image)

    # -- answers -------------------------------------------------------------------------
    def answer_regex(self, settings: RenderSettings, query: TaskQuery | None = None) -> str:
        """What an answer must match (format rewards, structured decoding); with ``query``, that
        query's answer exactly (``points``: its own labels, one line each)."""
        return self.template.answer_regex if self.template else get_template(settings.template).answer_regex

    @abstractmethod
    def parse(self, text: str) -> Any:
        """float (metres or seconds), "A"/"B", or {label: metres}; None when nothing usable."""

    def metrics(self, pred: Sequence[Any], truth: Sequence[Truth]) -> dict:
        if self.answer_kind == "choice":
            return choice_metrics(pred, truth)
        if self.answer_kind == "labelled":
            return labelled_metrics(pred, truth)
        return depth_metrics(pred, truth)

    def reward(self, text: str, truth: Truth) -> float:
        """GRPO reward of one completion in [0, 1] (see depthlm.rewards)."""
        pred = self.parse(text)
        if self.answer_kind == "choice":
            return choice_score(pred, truth)
        if self.answer_kind == "labelled":
            return labelled_score(pred, truth)
        return number_score(pred, float(truth))

    def answer_text(self, query: TaskQuery, value: Any) -> str:
        """This task's answer words for ``value`` (metres or seconds; "A"/"B"; or one number said
        for every label of a ``points`` query): constant baselines and generation-length bounds."""
        if self.answer_kind == "choice":
            return self.template.answer.format(c=value)
        if self.answer_kind == "labelled":
            return "\n".join(f"{label}: {fmt(float(value))} m" for label in query.points)
        if self.template is None:
            return get_template(query.settings.template).format_answer(float(value))
        return self.template.answer.format(
            **{"t" if self.answer_kind == "seconds" else "d": fmt(float(value))}
        )

    @property
    def metric_names(self) -> tuple[str, ...]:
        if self.answer_kind == "choice":
            return ("accuracy",)
        return ("delta1", "abs_rel")


def known(*values: float) -> bool:
    """True when every value is a finite number: ground truth can be stated. Chat builds queries
    from records whose unknown depths are NaN; their queries carry no truth and no answer."""
    return all(isinstance(v, (int, float, np.floating)) and math.isfinite(v) for v in values)


def letters(k: int) -> list[str]:
    if not 1 <= k <= 26:
        raise DepthLMError(f"between 1 and 26 labelled points, got {k}")
    return [chr(ord("A") + i) for i in range(k)]


def join_words(items: Sequence[str]) -> str:
    """ "A", "A and B", "A, B and C"."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def fmt(value: float) -> str:
    """Numbers in answers: 2 decimals, as the depth templates (NUMBER_REGEX)."""
    if not math.isfinite(value) or value < 0:
        raise DepthLMError(f"cannot state {value!r} as an answer")
    return f"{value:.2f}"


NUMBER = NUMBER_REGEX
