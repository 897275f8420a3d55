"""A weighted mix of tasks, for training and evaluation sets (``tasks: {depth: 1.0, distance: 0.3}``).

For each record the mix draws one task among those that can use the record, with probability
proportional to their weights, so a task a record set cannot feed (``region`` without masks)
takes nothing from the others. What could not be asked is counted per task and reason, never
dropped silently.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import numpy as np
from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.records import Record
from depthlm.settings import RenderSettings
from depthlm.tasks.base import TaskError, TaskQuery


def parse_weights(spec: Mapping[str, float] | str | None) -> dict[str, float]:
    """{task: weight} from a mapping, "depth=1,distance=0.3", "depth,closer" (weight 1 each),
    "all" (every task, weight 1), or None (``depth`` alone: the default everywhere)."""
    from depthlm import tasks

    if spec is None:
        return {"depth": 1.0}
    if isinstance(spec, str):
        if spec.strip() == "all":
            return dict.fromkeys(tasks.names(), 1.0)
        pairs = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, weight = part.partition("=")
            try:
                pairs[name.strip()] = float(weight) if weight else 1.0
            except ValueError:
                raise DepthLMError(f"task weight must be a number: {part!r}") from None
        spec = pairs
    weights = {str(k): float(v) for k, v in spec.items()}
    for name, weight in weights.items():
        tasks.get(name)  # unknown names: one clear line listing the known ones
        if not weight >= 0:
            raise DepthLMError(f"task {name!r}: weight must be >= 0, got {weight}")
    weights = {k: v for k, v in weights.items() if v > 0}
    if not weights:
        raise DepthLMError("the task mix has no task with a positive weight")
    return weights


class TaskMix:
    """Draws a task per record and builds its query; ``stats`` counts queries and skips."""

    def __init__(self, weights: Mapping[str, float] | str | None = None):
        from depthlm import tasks

        self.weights = parse_weights(weights)
        self.tasks = {name: tasks.get(name) for name in self.weights}
        self.asked: collections.Counter[str] = collections.Counter()
        self.skipped: collections.Counter[tuple[str, str]] = collections.Counter()  # (task, reason)

    def usable(self, record: Record) -> list[str]:
        """The mix's tasks that can use the record; the others are counted with their reason."""
        names = []
        for name, task in self.tasks.items():
            reason = task.check(record)
            if reason is None:
                names.append(name)
            else:
                self.skipped[(name, reason)] += 1
        return names

    def query(
        self,
        record: Record,
        settings: RenderSettings,
        rng: np.random.Generator,
        *,
        train: bool = False,
        image: Image.Image | None = None,
    ) -> TaskQuery | None:
        """One query of a task drawn by weight among those that can use the record. When the drawn
        task finds nothing to ask (e.g. no pair of points far enough apart), the reason is counted
        and another usable task is drawn; None when none can ask anything."""
        names = self.usable(record)
        while names:
            p = np.array([self.weights[n] for n in names])
            name = names.pop(int(rng.choice(len(names), p=p / p.sum())))
            try:
                query = self.tasks[name].query(record, settings, rng, train=train, image=image)
            except TaskError as err:
                self.skipped[(name, str(err).split(f"{name}: ", 1)[-1])] += 1
                continue
            self.asked[name] += 1
            return query
        return None

    def stats(self) -> dict:
        """{"asked": {task: n}, "skipped": {task: {reason: n}}} for summaries and logs."""
        skipped: dict[str, dict[str, int]] = {}
        for (name, reason), n in self.skipped.most_common():
            skipped.setdefault(name, {})[reason] = n
        return {"asked": dict(self.asked), "skipped": skipped}
