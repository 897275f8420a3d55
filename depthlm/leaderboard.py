"""A table across evaluation runs and datasets, in markdown and HTML.

Each run folder contributes one row (its metrics.json). The DepthLM paper's published
rows can be added as references: they are QUOTED numbers (delta1 only, on the paper's
full evaluation sets), never recomputed here, and are labelled as such in every output.
Dataset columns follow the paper's order when the names match it.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from depthlm.errors import DepthLMError
from depthlm.metrics import HIGHER_IS_BETTER
from depthlm.tables import markdown_table

PAPER = "DepthLM paper (ICLR 2026, arXiv 2509.25413), published delta1 on its evaluation sets"
# The paper scored answers against its files' values as they are; those hold z-depth for nuScenes,
# DDAD and iBims-1 and ray distance for the others (docs/data-builders.md). Measured rows here are
# scored against the quantity the question asks for, converted from each file's own convention.
CONVENTION_NOTE = (
    "Measured rows are scored against the distance the question asks for, read from each file by its "
    "convention (metrics.json label_conventions); the paper scored against its files' values as they "
    "are, which are z-depth for nuScenes, DDAD and iBims-1 (ray distance elsewhere), so those columns "
    "compare a different target (iBims-1 ray distances are 7.5 % above the file's z on average)."
)
# Paper column order; keys are our lower-case dataset names (aliases map other spellings to them).
PAPER_DATASETS = ("argoverse2", "ddad", "nuscenes", "eth3d", "scannetpp", "sunrgbd", "ibims1", "nyuv2")
ALIASES = {
    "scannet++": "scannetpp",
    "sun_rgbd": "sunrgbd",
    "sun-rgbd": "sunrgbd",
    "ibims": "ibims1",
    "nyu": "nyuv2",
}


@dataclass
class Row:
    name: str
    values: dict[str, float]  # dataset -> metric value
    average: float
    n: int | None = None
    parse_failure_rate: float | None = None
    reference: bool = False  # quoted from the paper, not measured here
    note: str = ""
    extra: dict = field(default_factory=dict)
    backend: str = "-"  # how the answers were generated: two runs of one model differ here
    tasks: dict[str, float] = field(default_factory=dict)  # task -> its metric, averaged over datasets


TASK_PREFIX = "task:"  # columns of tasks other than depth (depthlm eval --tasks)
TASK_NOTE = (
    "task: columns are each task's own metric (delta1; accuracy for closer) averaged over datasets "
    "(depthlm eval --tasks); the dataset columns and avg are the depth task's."
)


def _ref(name: str, values: list[float], avg: float) -> Row:
    return Row(f"{name} [paper]", dict(zip(PAPER_DATASETS, values)), avg, reference=True, note=PAPER)


# Quoted from the paper; see docs/evaluation.md. Baselines were published as averages only.
REFERENCE_ROWS: tuple[Row, ...] = (
    _ref("DepthLM 3B (Qwen2.5-VL)", [0.808, 0.724, 0.870, 0.745, 0.838, 0.850, 0.890, 0.868], 0.824),
    _ref("DepthLM 7B (Qwen2.5-VL)", [0.833, 0.747, 0.865, 0.718, 0.850, 0.859, 0.920, 0.915], 0.838),
    _ref("DepthLM Pixtral 12B", [0.734, 0.670, 0.819, 0.653, 0.834, 0.786, 0.870, 0.799], 0.771),
    Row("Qwen2.5-VL-3B [paper]", {}, 0.106, reference=True, note=PAPER),
    Row("GPT-5 [paper]", {}, 0.370, reference=True, note=PAPER),
    Row("SpatialRGPT-8B [paper]", {}, 0.205, reference=True, note=PAPER),
    Row('constant "2.0 m" [paper]', {}, 0.186, reference=True, note=PAPER),
)


def canonical(name: str) -> str:
    low = name.lower()
    return ALIASES.get(low, low)


def load_run(folder: str | os.PathLike, metric: str = "delta1", name: str | None = None) -> Row:
    """One run folder's row (`name` defaults to the model as the run recorded it)."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise DepthLMError(f"{folder}: no metrics.json (not an evaluation run folder, or not finished)")
    try:
        m = json.loads(path.read_text())
        per = {canonical(ds): float(v[metric]) for ds, v in m["datasets"].items()}
        avg = m["average"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DepthLMError(f"{path}: not a depthlm metrics file ({err})") from None
    tasks = {
        t: float(v["average"].get(v["metric"], math.nan))
        for t, v in (m.get("tasks") or {}).items()
        if t != "depth"
    }
    model = name or str(m.get("model", folder))
    note = "" if m.get("complete", True) else "incomplete run"
    return Row(
        model,
        per,
        float(avg[metric]),
        int(avg["n"]),
        float(avg["parse_failure_rate"]),
        note=note,
        extra={"folder": str(folder), "structured": m.get("generation", {}).get("structured")},
        backend=backend_label(m),
        tasks=tasks,
    )


def backend_label(metrics: dict) -> str:
    """``vllm float32 structured``: the backend, its dtype and decoding, as the run recorded them."""
    details = metrics.get("backend_details") or {}
    parts = [str(metrics.get("backend") or details.get("kind") or "?")]
    if details.get("dtype") not in (None, "auto"):
        parts.append(str(details["dtype"]))
    if (metrics.get("generation") or {}).get("structured"):
        parts.append("structured")
    return " ".join(parts)


def build(folders: list[str], metric: str = "delta1", references: bool = True) -> tuple[list[str], list[Row]]:
    """(dataset columns, rows): runs (``DIR`` or ``NAME=DIR``) sorted best first, then the quoted
    paper rows (delta1 only)."""
    runs = []
    for spec in folders:
        name, sep, folder = spec.partition("=")
        runs.append(
            load_run(folder, metric, name) if sep and not Path(spec).is_dir() else load_run(spec, metric)
        )
    runs.sort(key=lambda r: -r.average if metric in HIGHER_IS_BETTER else r.average)
    refs = list(REFERENCE_ROWS) if references and metric == "delta1" else []
    seen = {ds for r in runs for ds in r.values}
    columns = [d for d in PAPER_DATASETS if d in seen] + sorted(seen - set(PAPER_DATASETS))
    if refs and not runs:
        columns = list(PAPER_DATASETS)
    from depthlm.tasks import names

    asked = {t for r in runs for t in r.tasks}
    columns += [TASK_PREFIX + t for t in names() if t in asked]
    return columns, runs + refs


def _value(row: Row, column: str) -> float | None:
    if column.startswith(TASK_PREFIX):
        return row.tasks.get(column[len(TASK_PREFIX) :])
    return row.values.get(column)


def _cell(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _avg_label(row: Row, columns: list[str]) -> str:
    """Averages over different dataset sets are not comparable: say which average it is."""
    cell = _cell(row.average)
    if row.reference:
        return f"{cell} (8 sets)"
    sets = [c for c in columns if not c.startswith(TASK_PREFIX)]
    return cell if len(row.values) == len(sets) else f"{cell} ({len(row.values)} sets)"


def to_markdown(columns: list[str], rows: list[Row], metric: str = "delta1") -> str:
    head = ["model", "backend", *columns, "avg", "n", "parse fail", "source"]
    table = []
    for r in rows:
        cells = [
            r.name,
            r.backend,
            *(_cell(_value(r, c)) for c in columns),
            _avg_label(r, columns),
            str(r.n) if r.n is not None else "-",
            f"{r.parse_failure_rate:.1%}" if r.parse_failure_rate is not None else "-",
            "quoted from the paper" if r.reference else ("measured" + (f", {r.note}" if r.note else "")),
        ]
        table.append(cells)
    lines = [markdown_table(head, table)]
    foot = f"\nMetric: {metric}. Rows marked [paper] are quoted from the {PAPER}, measured on the paper's full sets, not here. {CONVENTION_NOTE}"
    if any(c.startswith(TASK_PREFIX) for c in columns):
        foot = (foot if any(r.reference for r in rows) else "") + f"\n{TASK_NOTE}"
        return "\n".join(lines) + "\n" + foot + "\n"
    return "\n".join(lines) + "\n" + (foot + "\n" if any(r.reference for r in rows) else "")


def to_html(columns: list[str], rows: list[Row], metric: str = "delta1") -> str:
    esc = html.escape
    head = "".join(
        f"<th>{esc(h)}</th>" for h in ["model", "backend", *columns, "avg", "n", "parse fail", "source"]
    )
    body = []
    for r in rows:
        cells = [
            r.name,
            r.backend,
            *(_cell(_value(r, c)) for c in columns),
            _avg_label(r, columns),
            str(r.n) if r.n is not None else "-",
            f"{r.parse_failure_rate:.1%}" if r.parse_failure_rate is not None else "-",
            "quoted from the paper" if r.reference else ("measured" + (f", {r.note}" if r.note else "")),
        ]
        cls = ' class="reference"' if r.reference else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    note = (
        f"<p>Metric: {esc(metric)}. Rows marked [paper] (grey) are quoted from the {esc(PAPER)}, not measured here. {esc(CONVENTION_NOTE)}</p>"
        if any(r.reference for r in rows)
        else f"<p>Metric: {esc(metric)}.</p>"
    )
    if any(c.startswith(TASK_PREFIX) for c in columns):
        note += f"\n<p>{esc(TASK_NOTE)}</p>"
    style = (
        "table{border-collapse:collapse;font-family:sans-serif;font-size:14px}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
        "tr.reference{color:#777;font-style:italic}"
    )
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>depthlm leaderboard</title>"
        f"<style>{style}</style></head><body>\n<table><thead><tr>{head}</tr></thead><tbody>\n"
        + "\n".join(body)
        + f"\n</tbody></table>\n{note}\n</body></html>\n"
    )
