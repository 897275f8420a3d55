"""Task registry: which 3D questions depthlm can ask, one module per task.

    >>> from depthlm import tasks
    >>> tasks.names()
    ['depth', 'points', 'distance', 'closer', 'region', 'hinted', 'time', 'motion']
    >>> tasks.get("closer").parse("Point B is closer to the camera.")
    'B'

A task (depthlm.tasks.base.Task) says which records it can use, samples a query from a
record with a seeded rng, renders and marks the view(s) through depthlm.render, writes the
question and answer, parses answers, scores them (metrics) and rewards them (GRPO). Adding
a task is one module and one ``register`` line here; the loops that call tasks never change.
"""

from __future__ import annotations

from depthlm.errors import DepthLMError
from depthlm.tasks.base import Sample, Task, TaskError, TaskQuery, TaskTemplate
from depthlm.tasks.closer import CloserTask
from depthlm.tasks.depth import DepthTask
from depthlm.tasks.distance import DistanceTask
from depthlm.tasks.hinted import HintedTask
from depthlm.tasks.motion import MotionTask
from depthlm.tasks.points import PointsTask
from depthlm.tasks.region import RegionTask
from depthlm.tasks.time_to_reach import TimeTask

__all__ = ["TASKS", "Sample", "Task", "TaskError", "TaskQuery", "TaskTemplate", "get", "names", "register"]

TASKS: dict[str, Task] = {}
DEFAULT_TASK = "depth"


def register(task: Task) -> Task:
    """Add a task instance under its name (a later registration replaces an earlier one)."""
    TASKS[task.name] = task
    return task


def get(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise DepthLMError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def names() -> list[str]:
    return list(TASKS)


for _task in (
    DepthTask(),
    PointsTask(),
    DistanceTask(),
    CloserTask(),
    RegionTask(),
    HintedTask(),
    TimeTask(),
    MotionTask(),
):
    register(_task)
