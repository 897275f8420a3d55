"""GRPO reward functions, chosen by name from a recipe's YAML (``reward_funcs: [neg_abs_rel, format]``).

Each is a plain function ``(completions, **columns) -> list[float]`` the way TRL's
GRPOTrainer calls it: keyword arguments ``prompts``, ``completions``, ``completion_ids``,
``trainer_state``, ``log_extra``, ``log_metric`` and one list per dataset column. A completion
is a string, or for conversational datasets a list of messages
``[{"role": "assistant", "content": ...}]``. The ground truth is the ``depth`` column (metres).

Rewards are bounded so one wild number cannot dominate its group's advantage, and an
unparseable answer (see depthlm.parsing: no number, or a value <= 0) gets the worst value:

==============  =====================================  ==========  ===========
name            reward for prediction p, truth g        range       unparseable
==============  =====================================  ==========  ===========
``neg_l1``      -min(|p - g|, ERROR_CAP * g)            [-2g, 0]    -2g
``neg_abs_rel`` -min(|p - g| / g, ERROR_CAP)            [-2, 0]     -2
``delta1``      1 if max(p/g, g/p) < 1.25 else 0        {0, 1}      0
``format``      1 if the answer has the template's      {0, 1}      0
                format (``template`` column), else 0
==============  =====================================  ==========  ===========

The L1 cap is relative to g because GRPO compares completions of the same prompt (same g),
and depths range from under a metre indoors to 80 m outdoors: any answer off by more than
2g (e.g. 3x too far) is equally useless.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence

from depthlm.errors import DepthLMError
from depthlm.parsing import parse_distance
from depthlm.prompts import get_template

__all__ = [
    "ERROR_CAP",
    "REWARDS",
    "completion_text",
    "delta1_reward",
    "format_reward",
    "get_rewards",
    "neg_abs_rel_reward",
    "neg_l1_reward",
]

ERROR_CAP = 2.0  # relative error at which the error rewards bottom out
DELTA1_THRESHOLD = 1.25

Completion = str | list[dict]
RewardFunc = Callable[..., list[float]]


def completion_text(completion: Completion) -> str:
    """The text of a completion: the string itself, or the last assistant message's content."""
    if isinstance(completion, str):
        return completion
    messages = [m for m in completion if m.get("role", "assistant") == "assistant"]
    content = messages[-1].get("content") if messages else None
    if isinstance(content, list):  # multimodal message parts: [{"type": "text", "text": ...}, ...]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def neg_l1_reward(
    completions: Sequence[Completion], depth: Sequence[float] | None = None, **kwargs
) -> list[float]:
    """-|p - g| in metres, floored at -ERROR_CAP * g."""
    errors = _relative_errors(completions, depth, "neg_l1", kwargs.get("log_metric"))
    return [0.0 - e * g for e, g in zip(errors, depth)]  # 0.0 - x: no "-0.0" in the logs


def neg_abs_rel_reward(
    completions: Sequence[Completion], depth: Sequence[float] | None = None, **kwargs
) -> list[float]:
    """-|p - g| / g, floored at -ERROR_CAP."""
    return [0.0 - e for e in _relative_errors(completions, depth, "neg_abs_rel", kwargs.get("log_metric"))]


def delta1_reward(
    completions: Sequence[Completion], depth: Sequence[float] | None = None, **kwargs
) -> list[float]:
    """1.0 when max(p/g, g/p) < 1.25 (a delta1 hit), else 0.0."""
    preds = _predictions(completions, depth, "delta1", kwargs.get("log_metric"))
    return [0.0 if p is None else float(max(p / g, g / p) < DELTA1_THRESHOLD) for p, g in zip(preds, depth)]


def format_reward(
    completions: Sequence[Completion], template: Sequence[str] | None = None, **kwargs
) -> list[float]:
    """1.0 when the answer has its template's format, else 0.0.

    With a ``template`` column (template names from depthlm.prompts) the answer, stripped of
    surrounding whitespace, must fully match that template's ``answer_regex``. Without one
    (or for a row whose template is None), the answer only has to parse to a distance.
    """
    texts = [completion_text(c) for c in completions]
    names = [None] * len(texts) if template is None else template
    _check_length("template", names, texts)
    return [float(_has_format(text, name)) for text, name in zip(texts, names)]


def _has_format(text: str, template: str | None) -> bool:
    if template is None:  # no template column, or a row without one
        return parse_distance(text) is not None
    return re.fullmatch(get_template(template).answer_regex, text.strip()) is not None


REWARDS: dict[str, RewardFunc] = {
    "neg_l1": neg_l1_reward,
    "neg_abs_rel": neg_abs_rel_reward,
    "delta1": delta1_reward,
    "format": format_reward,
}


def get_rewards(names: Sequence[str]) -> list[RewardFunc]:
    """The reward functions for the names a recipe lists, with a clear error for unknown ones."""
    unknown = [name for name in names if name not in REWARDS]
    if unknown:
        raise DepthLMError(f"unknown reward {', '.join(map(repr, unknown))}; known: {', '.join(REWARDS)}")
    return [REWARDS[name] for name in names]


def _relative_errors(
    completions: Sequence[Completion],
    depth: Sequence[float] | None,
    reward: str,
    log_metric: Callable[[str, float], None] | None,
) -> list[float]:
    """min(|p - g| / g, ERROR_CAP) per completion, ERROR_CAP when the answer does not parse."""
    preds = _predictions(completions, depth, reward, log_metric)
    return [ERROR_CAP if p is None else min(abs(p - g) / g, ERROR_CAP) for p, g in zip(preds, depth)]


def _predictions(
    completions: Sequence[Completion],
    depth: Sequence[float] | None,
    reward: str,
    log_metric: Callable[[str, float], None] | None,
) -> list[float | None]:
    """Parsed predictions after checking the ground truth; logs the parse-failure rate to TRL."""
    if depth is None:
        raise DepthLMError(f"the {reward} reward needs a 'depth' column (metres) in the training dataset")
    _check_length("depth", depth, completions)
    for i, g in enumerate(depth):
        if isinstance(g, bool) or not isinstance(g, numbers.Real) or not (math.isfinite(g) and g > 0):
            raise DepthLMError(f"the {reward} reward needs positive finite depths; row {i} has depth {g!r}")
    preds = [parse_distance(completion_text(c)) for c in completions]
    if log_metric is not None and preds:
        log_metric("parse_failure_rate", sum(p is None for p in preds) / len(preds))
    return preds


def _check_length(column: str, values: Sequence, completions: Sequence) -> None:
    if len(values) != len(completions):
        raise DepthLMError(f"{len(completions)} completions but {len(values)} values in column {column!r}")


# --- one reward per task (depthlm.tasks) ------------------------------------------------------
# Every task's reward lies in [0, 1], so tasks mixed in one GRPO run share a scale:
#   numbers (metres, seconds): 1 - min(|p - g| / g, ERROR_CAP) / ERROR_CAP; unparseable 0
#   choices: 1 if right, else 0
#   labelled points: the number score per asked label, summed and divided by (asked + extra
#   labels), so a missing label scores 0 and an invented one costs as much as a wrong one.


def number_score(pred: float | None, truth: float) -> float:
    """Reward of one numeric answer, in [0, 1] (1 exact, 0 at ERROR_CAP relative error or worse)."""
    if pred is None or not math.isfinite(pred) or pred <= 0:
        return 0.0
    return 1.0 - min(abs(pred - truth) / truth, ERROR_CAP) / ERROR_CAP


def choice_score(pred: str | None, truth: str) -> float:
    return float(pred is not None and pred == truth)


def labelled_score(pred: dict[str, float] | None, truth: dict[str, float]) -> float:
    pred = pred or {}
    extra = sum(label not in truth for label in pred)
    total = sum(number_score(pred.get(label), g) for label, g in truth.items())
    return total / (len(truth) + extra) if truth else 0.0


def task_reward(
    completions: Sequence[Completion],
    task: Sequence[str] | None = None,
    truth: Sequence[str] | None = None,
    **kwargs,
) -> list[float]:
    """Each row scored by its own task (``task`` column, a depthlm.tasks name) against its
    ``truth`` column (JSON text, so one Arrow column holds numbers, letters and label maps)."""
    import json

    from depthlm.tasks import get as get_task

    if task is None or truth is None:
        raise DepthLMError("the task reward needs 'task' and 'truth' columns (rows made by depthlm.tasks)")
    _check_length("task", task, completions)
    _check_length("truth", truth, completions)
    return [
        get_task(name).reward(completion_text(c), json.loads(t) if isinstance(t, str) else t)
        for c, name, t in zip(completions, task, truth)
    ]


REWARDS["task"] = task_reward
