"""Shared helpers of the training tests: small synthetic record sets and a tiny model, built offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depthlm.records import Record, write_records


def synthetic_records(
    folder: Path, n: int, *, name: str = "synth", size=(224, 168), points: int = 4, seed: int = 0
) -> Path:
    """Write ``n`` procedural scenes (exact z-depth) as a record set; returns the jsonl path."""
    from data_builders.scenes import render_scene

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


class Killed(Exception):
    """Stands for the process dying: raised right after a checkpoint is complete on disk."""


def task_scenes(out: Path, split: str = "train", num_images: int = 6) -> Path:
    """Synthetic scenes as ``depthlm build synthetic --points-per-image 16 --depth-map --second-view``
    writes them (160x120, one focal length): every task can be asked of them."""
    from data_builders import build

    build(
        "synthetic",
        out=out,
        split=split,
        points_per_image=16,
        seed=0,
        progress=False,
        num_images=num_images,
        image_size=(160, 120),
        focal_range=(150.0, 150.0),
        scene_seed=3,
        depth_map=True,
        second_view=True,
    )
    return out


def kill_after_checkpoint(step: int):
    """A callback that 'kills' training once checkpoint-``step`` is saved (on_save runs after the save)."""
    from transformers import TrainerCallback

    class KillAfterCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise Killed(f"killed after checkpoint-{step}")

    return KillAfterCheckpoint()


def interrupted_and_uninterrupted(recipe, parse, out: Path, kill_at: int):
    """Train ``out/straight`` without a break, and ``out/resumed`` killed after checkpoint ``kill_at``
    and rerun from scratch (a fresh trainer from the base model, as a new process would).

    ``parse(output_dir)`` returns the recipe's (script, training, model) arguments. Returns the two
    finished trainers (straight, resumed)."""
    import pytest

    straight = recipe.main(*parse(out / "straight"))
    killed = recipe.build_trainer(*parse(out / "resumed"))
    killed.add_callback(kill_after_checkpoint(kill_at))
    with pytest.raises(Killed):
        recipe.train(killed)
    resumed = recipe.train(recipe.build_trainer(*parse(out / "resumed")))
    return straight, resumed


def trained_weights(trainer) -> dict:
    """Name -> tensor of every parameter of the trained model (adapters included)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def step_losses(trainer) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
