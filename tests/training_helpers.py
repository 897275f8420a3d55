"""Shared helpers of the training tests: small synthetic record sets and a tiny model, built offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depthlm.records import Record, write_records


def synthetic_records(
    folder: Path, n: int, *, name: str = "synth", size=(224, 168), points: int = 4, seed: int = 0
) -> Path:
    """Write ``n`` procedural scenes (exact z-depth) as a record set; returns the jsonl path."""
    from data_builders.synthetic import render_scene

    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        scene = render_scene(seed=seed * 1000 + i, size=size)
        image = folder / f"{name}_{i:04d}.png"
        scene.image.save(image)
        ys, xs = np.nonzero(scene.depth > 0)
        pick = rng.choice(len(xs), size=points, replace=False)
        pts = np.stack([xs[pick], ys[pick]], axis=1).astype(float)
        records.append(
            Record(
                image=str(image),
                intrinsics=scene.intrinsics,
                points=pts,
                depths=scene.depth[ys[pick], xs[pick]].astype(float),
                depth_type="z",
                dataset=name,
                id=f"{name}/{i:04d}",
            )
        )
    path = folder / f"{name}.jsonl"
    write_records(path, records)
    return path
