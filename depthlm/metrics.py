"""Depth metrics over parsed predictions, per dataset and averaged over datasets.

Predictions come from free text, so some are missing: a parse failure (None or NaN) or a
prediction <= 0 (or infinite) counts as a MISS in delta1/2/3 -- the reference code counted a
negative prediction as correct -- and is left out of the error metrics, which are computed
over the valid predictions only. ``n``, ``n_valid`` and ``parse_failure_rate`` say how many
that was, so a low error over few valid answers cannot pass unnoticed.

Definitions (p prediction, g ground truth, both metres; means over the valid pairs):

- delta_k = fraction of ALL n samples with max(p/g, g/p) < 1.25**k
- abs_rel = mean(|p - g| / g); sq_rel = mean((p - g)**2 / g)
- rmse = sqrt(mean((p - g)**2)); rmse_log = sqrt(mean((ln p - ln g)**2))
- log10 = mean(|log10 p - log10 g|)
- silog = 100 * sqrt(mean(d**2) - mean(d)**2), d = ln p - ln g (Eigen et al. 2014's scale-invariant
  error with lambda = 1, as the KITTI depth benchmark reports it)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from depthlm.errors import DepthLMError

__all__ = [
    "DELTA_NAMES",
    "ERROR_NAMES",
    "HIGHER_IS_BETTER",
    "METRIC_NAMES",
    "MetricInputError",
    "aggregate",
    "choice_metrics",
    "depth_metrics",
    "json_safe",
    "labelled_metrics",
    "metrics_by_group",
]

DELTA_NAMES = ("delta1", "delta2", "delta3")
ERROR_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")
METRIC_NAMES = (*DELTA_NAMES, *ERROR_NAMES, "parse_failure_rate")
HIGHER_IS_BETTER = frozenset(DELTA_NAMES)
COUNT_NAMES = ("n", "n_valid")


class MetricInputError(DepthLMError, ValueError):
    """Ground truth or inputs that cannot be scored (a ValueError, printed as one line by the CLI)."""


def depth_metrics(pred: Sequence[float | None] | np.ndarray, gt: Sequence[float] | np.ndarray) -> dict:
    """All metrics for one set of predictions; see the module docstring for the definitions.

    Returns plain floats (NaN where a metric is undefined: no samples, or no valid prediction
    for the error metrics) and the integer counts ``n`` and ``n_valid``.
    """
    try:
        p = np.array([math.nan if x is None else x for x in pred], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise MetricInputError(
            f"predictions must be numbers or None (parse answers with depthlm.parsing.parse_distance): {err}"
        ) from None
    try:
        g = np.asarray(gt, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise MetricInputError(f"ground-truth depths must be numbers: {err}") from None
    if p.shape != g.shape:
        raise MetricInputError(f"{p.size} predictions but {g.size} ground-truth depths")
    bad = ~(np.isfinite(g) & (g > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MetricInputError(
            f"ground-truth depth must be positive and finite, got {float(g[i])} at index {i} ({int(bad.sum())} such)"
        )
    n = int(g.size)
    result: dict = dict.fromkeys(METRIC_NAMES, math.nan)
    result.update(n=n, n_valid=0)
    if n == 0:
        return result

    valid = np.isfinite(p) & (p > 0)
    result["n_valid"] = int(valid.sum())
    result["parse_failure_rate"] = float(np.isnan(p).mean())
    ratio = np.ones_like(g)  # placeholder for invalid entries, masked out below
    ratio[valid] = np.maximum(p[valid] / g[valid], g[valid] / p[valid])
    for k, name in enumerate(DELTA_NAMES, start=1):
        result[name] = float((valid & (ratio < 1.25**k)).sum() / n)
    if not valid.any():
        return result

    pv, gv = p[valid], g[valid]
    d = np.log(pv) - np.log(gv)
    with np.errstate(over="ignore"):  # a 1e300 depth squares to inf: the true value, written as null
        result.update(
            abs_rel=float(np.mean(np.abs(pv - gv) / gv)),
            sq_rel=float(np.mean((pv - gv) ** 2 / gv)),
            rmse=float(np.sqrt(np.mean((pv - gv) ** 2))),
            rmse_log=float(np.sqrt(np.mean(d**2))),
            log10=float(np.mean(np.abs(np.log10(pv) - np.log10(gv)))),
            # max(0, .) guards against a tiny negative from rounding when all d are equal.
            silog=float(100 * np.sqrt(max(0.0, np.mean(d**2) - np.mean(d) ** 2))),
        )
    return result


def aggregate(per_dataset: Mapping[str, Mapping]) -> dict:
    """The leaderboard's "avg" column: the unweighted mean over datasets of each metric.

    Every dataset weighs the same whatever its size, as the DepthLM paper averages datasets.
    A metric that is NaN for any dataset is NaN in the average (it is undefined there).
    ``n`` and ``n_valid`` are summed, and ``datasets`` counts the datasets.
    """
    result: dict = {
        name: float(np.mean([m[name] for m in per_dataset.values()])) if per_dataset else math.nan
        for name in METRIC_NAMES
    }
    for name in COUNT_NAMES:
        result[name] = int(sum(m[name] for m in per_dataset.values()))
    result["datasets"] = len(per_dataset)
    return result


def metrics_by_group(
    groups: Sequence[str], pred: Sequence[float | None] | np.ndarray, gt: Sequence[float] | np.ndarray
) -> dict[str, dict]:
    """depth_metrics for each group (e.g. dataset name) from parallel lists, groups in sorted order."""
    if not len(groups) == len(pred) == len(gt):
        raise MetricInputError(
            f"groups, predictions and ground truth differ in length: {len(groups)}, {len(pred)}, {len(gt)}"
        )
    members: dict[str, list[int]] = {}
    for i, name in enumerate(groups):
        members.setdefault(name, []).append(i)
    result = {}
    for name in sorted(members):
        try:
            result[name] = depth_metrics([pred[i] for i in members[name]], [gt[i] for i in members[name]])
        except MetricInputError as err:
            raise MetricInputError(f"group {name!r}: {err}") from None
    return result


def choice_metrics(pred: Sequence[str | None], truth: Sequence[str]) -> dict:
    """Accuracy of choice answers ("A"/"B"): an unparsed answer (None) counts as wrong.

    Returns ``accuracy`` (over all n), ``n``, ``n_valid`` (answers that named an option) and
    ``parse_failure_rate``; accuracy is NaN when n is 0."""
    if len(pred) != len(truth):
        raise MetricInputError(f"{len(pred)} predictions but {len(truth)} ground-truth choices")
    n = len(truth)
    n_valid = sum(p is not None for p in pred)
    hits = sum(p is not None and p == t for p, t in zip(pred, truth))
    return {
        "accuracy": hits / n if n else math.nan,
        "n": n,
        "n_valid": n_valid,
        "parse_failure_rate": (n - n_valid) / n if n else math.nan,
    }


def labelled_metrics(
    pred: Sequence[Mapping[str, float] | None], truth: Sequence[Mapping[str, float]]
) -> dict:
    """depth_metrics per labelled point over answers that list several points ("A: 2.1 m, B: ...").

    Every asked label is one sample; a label the answer lacks is a miss, and so is every label
    it adds that was not asked (it counts in n as a miss and in ``n_extra``), so listing
    guesses for labels that are not there cannot help. ``n_missing`` counts asked labels the
    answer lacks; ``parse_failure_rate`` is (missing + extra) / n."""
    if len(pred) != len(truth):
        raise MetricInputError(f"{len(pred)} predictions but {len(truth)} ground-truth label sets")
    p_all: list[float | None] = []
    g_all: list[float] = []
    n_missing = n_extra = 0
    for answer, asked in zip(pred, truth):
        answer = answer or {}
        for label, g in asked.items():
            p_all.append(answer.get(label))
            g_all.append(g)
            n_missing += label not in answer
        extra = [label for label in answer if label not in asked]
        n_extra += len(extra)
        p_all.extend([None] * len(extra))
        g_all.extend([1.0] * len(extra))  # any positive truth: a None prediction is a miss whatever it is
    result = depth_metrics(p_all, g_all)
    result.update(n_missing=n_missing, n_extra=n_extra)
    return result


def json_safe(obj: Any) -> tuple[Any, int]:
    """`obj` with every NaN / Infinity replaced by None, and how many there were.

    JSON has no NaN or Infinity: Python writes them as bare words other readers reject (a
    1e300 depth makes rmse Infinity). metrics.json keeps the key with null, and the count
    says it happened, rather than writing a file that is not JSON or dropping the value."""
    if isinstance(obj, Mapping):
        pairs = [(k, json_safe(v)) for k, v in obj.items()]
        return {k: v for k, (v, _) in pairs}, sum(n for _, (_, n) in pairs)
    if isinstance(obj, (list, tuple)):
        items = [json_safe(v) for v in obj]
        return [v for v, _ in items], sum(n for _, n in items)
    if isinstance(obj, (float, np.floating)):
        return (float(obj), 0) if math.isfinite(obj) else (None, 1)
    if isinstance(obj, np.integer):
        return int(obj), 0
    return obj, 0
