"""Draw docs/images/rendered_sample.png: a synthetic scene as stored, and the query the
model sees after depthlm.render (focal normalisation, grid-aligned view, marker, words).

    .venv/bin/python scripts/readme_figure.py
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from data_builders.scenes import render_scene  # noqa: E402
from depthlm.render import render  # noqa: E402
from depthlm.settings import RenderSettings  # noqa: E402


def main(out: str = "docs/images/rendered_sample.png") -> None:
    image, intr, depth, _, _ = render_scene(seed=7, size=(480, 360))
    y, x = 250, 300
    settings = RenderSettings(f_uni=400.0)
    query = render(image, intr, (x, y), settings, depth=float(depth[y, x]), depth_type="z")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.8), gridspec_kw={"width_ratios": [4, 4, 3]})
    axes[0].imshow(np.asarray(image))
    axes[0].plot([x], [y], "r+", ms=12)
    axes[0].set_title(
        f"stored: {image.width}x{image.height}, fx={intr.fx:.0f}, fy={intr.fy:.0f}", fontsize=10
    )
    axes[1].imshow(np.asarray(query.image))
    k = query.intrinsics
    axes[1].set_title(f"model sees: {k.width}x{k.height}, fx={k.fx:.0f}, fy={k.fy:.0f}", fontsize=10)
    qx, qy = query.point
    half = 24
    box = (int(qx) - half, int(qy) - half, int(qx) + half, int(qy) + half)
    axes[2].imshow(np.asarray(query.image.crop(box)), interpolation="nearest")
    axes[2].set_title(f"the marker, zoomed: tip on pixel ({qx:.0f}, {qy:.0f})", fontsize=10)
    words = f"Q: {query.question}\nA: {query.answer}"
    fig.text(0.5, 0.02, "\n".join(textwrap.wrap(words, 120)), ha="center", fontsize=10, family="monospace")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
