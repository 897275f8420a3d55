"""Pictures of an evaluation run (matplotlib, no display needed).

- ``pred_vs_true.png``: predicted vs true depth on log axes, one colour per dataset, with the
  y = x line and the delta1 band (a factor 1.25 either way); parse failures are counted in the title.
- ``delta1_by_depth.png``: delta1 per true-depth range, per dataset (where does the model fail?).
- ``datasets.png``: delta1 and AbsRel per dataset and on average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEPTH_BINS = (0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 40.0, 80.0, math.inf)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def make_plots(out_dir: str | Path, *, rows: Sequence[dict], metrics: dict) -> list[Path]:
    """Write the three plots into out_dir/plots and return their paths."""
    folder = Path(out_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_pred_vs_true(rows, folder / "pred_vs_true.png"),
        plot_delta1_by_depth(rows, folder / "delta1_by_depth.png"),
        plot_datasets(metrics, folder / "datasets.png"),
    ]
    return paths


def plot_pred_vs_true(rows: Sequence[dict], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    gts = [r["gt"] for r in rows]
    preds = [r["pred"] for r in rows if r.get("pred")]
    lo = max(min(gts + preds) * 0.8, 1e-2)
    hi = max(gts + preds) * 1.25
    line = np.geomspace(lo, hi, 50)
    ax.fill_between(line, line / 1.25, line * 1.25, color="0.85", label="delta1 band (x1.25)")
    ax.plot(line, line, color="0.4", lw=1)
    failures = 0
    for name in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == name]
        ok = [r for r in sub if r.get("pred") is not None]
        failures += len(sub) - len(ok)
        ax.scatter([r["gt"] for r in ok], [r["pred"] for r in ok], s=8, alpha=0.6, label=name)
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="true depth (m)",
        ylabel="predicted (m)",
    )
    ax.set_title(f"{len(rows)} queries, {failures} parse failures", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def delta1_by_depth(rows: Sequence[dict], bins: Sequence[float] = DEPTH_BINS) -> list[tuple[str, int, float]]:
    """(range label, n, delta1) per non-empty true-depth range; failures count as misses."""
    out = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sub = [r for r in rows if lo <= r["gt"] < hi]
        if not sub:
            continue
        hits = sum(1 for r in sub if r.get("pred") and max(r["pred"] / r["gt"], r["gt"] / r["pred"]) < 1.25)
        label = f"{lo:g}-{hi:g}" if math.isfinite(hi) else f">{lo:g}"
        out.append((label, len(sub), hits / len(sub)))
    return out


def plot_delta1_by_depth(rows: Sequence[dict], path: Path) -> Path:
    plt = _pyplot()
    names = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    labels = [lab for lab, _, _ in delta1_by_depth(rows)]
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        found = {lab: (n, d) for lab, n, d in delta1_by_depth([r for r in rows if r["dataset"] == name])}
        xs = [i + k * width for i, lab in enumerate(labels) if lab in found]
        ax.bar(xs, [found[lab][1] for lab in labels if lab in found], width=width, label=name)
    ax.set_xticks(
        [i + 0.4 - width / 2 for i in range(len(labels))], [f"{lab} m" for lab in labels], fontsize=8
    )
    ax.set(ylim=(0, 1), ylabel="delta1", xlabel="true depth range")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_datasets(metrics: dict, path: Path) -> Path:
    plt = _pyplot()
    names = [*metrics["datasets"], "avg"]
    values = [*metrics["datasets"].values(), metrics["average"]]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), dpi=110)
    for ax, key, title in (
        (axes[0], "delta1", "delta1 (higher is better)"),
        (axes[1], "abs_rel", "AbsRel (lower is better)"),
    ):
        vals = [v[key] if not math.isnan(v[key]) else 0.0 for v in values]
        ax.bar(names, vals, color=["C0"] * (len(names) - 1) + ["C1"])
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes[0].set_ylim(0, 1)
    fig.suptitle(str(metrics["model"]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
