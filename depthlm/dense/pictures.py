"""Side-by-side pictures: input, predicted map, ground truth, error map."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def side_by_side(
    image: Image.Image,
    pred: np.ndarray,
    gt: np.ndarray | None = None,
    path: str | os.PathLike | None = None,
    *,
    points: np.ndarray | None = None,
    title: str | None = None,
) -> Image.Image:
    """Input (with the queried pixels as dots), prediction, and with `gt` the ground truth
    (same colour range) and |pred - gt| / gt (0 to 50 %, grey where unknown)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from depthlm.dense.writers import colourise

    panels = 2 if gt is None else 4
    ref = gt if gt is not None else pred
    ok = np.isfinite(ref) & (ref > 0)
    lo, hi = np.percentile(ref[ok], [2, 98]) if ok.any() else (0.0, 1.0)
    w, h = image.size
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.2 * h / w + 0.5), dpi=100)
    axes[0].imshow(image)
    if points is not None and len(points):
        axes[0].scatter(points[:, 0], points[:, 1], s=2, c="white", edgecolors="black", linewidths=0.2)
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(colourise(pred, lo, hi)[0])
    axes[1].set_title(f"predicted (z, {lo:.2f}-{hi:.2f} m)", fontsize=9)
    if gt is not None:
        axes[2].imshow(colourise(gt, lo, hi)[0])
        axes[2].set_title("ground truth", fontsize=9)
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.abs(pred - gt) / gt
        err = np.ma.masked_where(~(np.isfinite(err) & ok), err)
        cmap = matplotlib.colormaps["magma"].with_extremes(bad="0.5")
        shown = axes[3].imshow(err, cmap=cmap, vmin=0, vmax=0.5)
        axes[3].set_title("|pred - gt| / gt", fontsize=9)
        fig.colorbar(shown, ax=axes[3], fraction=0.046, pad=0.02)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    picture = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    if path is not None:
        picture.save(path)
    return picture
