"""Draw docs/images/tasks/<task>.png: one query of every task on a synthetic scene, as the
model sees it (depthlm.tasks -> depthlm.render), with its question and answer.

The scene comes from data_builders.scenes (exact depth, object masks); the record gets a dense
depth map (for ``region``) and a second view of the same scene from a camera moved by a known
translation (for ``motion``), in the extras format depthlm.tasks.extras defines.

    .venv/bin/python scripts/task_figures.py            # writes docs/images/tasks/*.png
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from data_builders.scenes import camera_axes, render, sample_scene  # noqa: E402
from depthlm import tasks  # noqa: E402
from depthlm.records import Record  # noqa: E402
from depthlm.settings import RenderSettings  # noqa: E402

SEED, SIZE, FOCAL = 11, (480, 360), (330.0, 330.0)
MOVE_M = (0.4, 0.0, 0.9)  # second camera: right, up (world), forward, metres


def scene_record(folder: Path) -> Record:
    """A synthetic scene as a record with 300 labelled points, masks, depth map and a second view."""
    spec = sample_scene(np.random.default_rng(SEED), SIZE, FOCAL)
    first = render(spec)
    cam = spec.camera
    right, _, forward = camera_axes(cam)
    shift = MOVE_M[0] * right + MOVE_M[2] * forward
    moved = dataclasses.replace(
        cam, x=cam.x + float(shift[0]), z=cam.z + float(shift[2]), height=cam.height + MOVE_M[1]
    )
    second = render(dataclasses.replace(spec, camera=moved))
    right, down, forward = camera_axes(cam)
    t_world = np.array([moved.x - cam.x, moved.height - cam.height, moved.z - cam.z])
    t_cam = [float(right @ t_world), float(down @ t_world), float(forward @ t_world)]
    first.image.save(folder / "a.png")
    second.image.save(folder / "b.png")
    Image.fromarray(first.masks).save(folder / "a-masks.png")
    np.save(folder / "a-depth.npy", first.depth)
    rng = np.random.default_rng(0)
    ys, xs = np.nonzero(first.depth > 0)
    pick = rng.choice(len(xs), 300, replace=False)
    return Record(
        image=str(folder / "a.png"),
        intrinsics=first.intrinsics,
        points=np.stack([xs[pick], ys[pick]], 1),
        depths=first.depth[ys[pick], xs[pick]],
        depth_type="z",
        dataset="synthetic",
        id=f"synthetic/figure/{SEED}",
        extras={
            "objects": first.objects,
            "masks": str(folder / "a-masks.png"),  # absolute, as depthlm.records makes them on reading
            "depth_map": str(folder / "a-depth.npy"),
            "pair": {
                "image": str(folder / "b.png"),
                "intrinsics": second.intrinsics.to_list(),
                "translation_m": t_cam,
            },
        },
    )


def figure(query: tasks.TaskQuery, out: Path) -> None:
    n = len(query.images)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 5.0), squeeze=False)
    for i, (ax, im) in enumerate(zip(axes[0], query.images)):
        ax.imshow(np.asarray(im))
        k = query.intrinsics[i]
        ax.set_title(
            f"{query.task}: view {i + 1}, {k.width}x{k.height}, f={k.fx:.0f}"
            if n > 1
            else f"{query.task}: {k.width}x{k.height}, f={k.fx:.0f}",
            fontsize=10,
        )
        ax.axis("off")
    lines = textwrap.wrap("Q: " + query.question, 62 * n) + textwrap.wrap(
        "A: " + query.answer.replace("\n", "; "), 62 * n
    )
    fig.text(0.02, 0.02, "\n".join(lines), fontsize=9, va="bottom")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.04 + 0.045 * len(lines), wspace=0.04)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(out_dir: str = "docs/images/tasks") -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = RenderSettings(f_uni=400.0)
    with tempfile.TemporaryDirectory() as tmp:
        record = scene_record(Path(tmp))
        for n, name in enumerate(tasks.names()):
            query = tasks.get(name).query(record, settings, np.random.default_rng(n))
            figure(query, out / f"{name}.png")
            print(f"{name}: Q: {query.question!r} A: {query.answer!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
