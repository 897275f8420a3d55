"""Command-line / YAML arguments of the training recipes, as TRL-style dataclasses.

``depthlm.recipes.sft`` and ``depthlm.recipes.grpo`` parse ``DataArguments``, TRL's ``SFTConfig`` /
``GRPOConfig`` and ``DepthLMModelConfig`` with ``trl.TrlParser``, so every field below can
be set in the YAML config or overridden on the command line (``--f_uni 800``).

The rendering fields become a :class:`depthlm.settings.RenderSettings`; the pixel grid and
budget come from the model's processor (:func:`render_settings`) so the processor never
rescales a rendered image, and the settings are saved next to the trained model.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from trl import ModelConfig

from depthlm.errors import DepthLMError
from depthlm.settings import RenderSettings

_DEFAULTS = RenderSettings()

# Help for the rendering flags; their names, types and defaults come from RenderSettings itself.
_RENDER_HELP = {
    "f_uni": "Unified focal length in pixels.",
    "template": "Prompt template (depthlm.prompts).",
    "marker": "Marker style (depthlm.markers).",
    "marker_color": "Marker colour.",
    "marker_size": "Marker size in pixels (default: by f_uni).",
    "depth_target": "'ray' (distance from the camera) or 'z'.",
    "max_pixels": "Pixel budget: largest rendered view (processor max_pixels).",
    "min_pixels": "Pixel budget: smallest rendered view (processor min_pixels).",
    "crop_width": "Training crop width range [min, max], as fractions of f_uni.",
    "crop_height": "Training crop height range [min, max], as fractions of f_uni.",
    "train_crop": "Random training crops (False: whole image).",
    "tasks": "Task mix (see DataArguments.tasks).",
}
FROM_PROCESSOR = ("grid",)  # read from the model's processor, never set by hand


def _render_arguments() -> type:
    """A dataclass with one flag per RenderSettings field (but the grid): declared once, in
    RenderSettings; tuples become lists (the argument parser's form of a pair)."""
    hints = typing.get_type_hints(RenderSettings)
    specs = []
    for f in dataclasses.fields(RenderSettings):
        if f.name in FROM_PROCESSOR:
            continue
        kind, default = hints[f.name], getattr(_DEFAULTS, f.name)
        meta = {"help": _RENDER_HELP.get(f.name, "")}
        if isinstance(default, tuple):
            spec = field(default_factory=lambda d=default: list(d), metadata=meta)
            kind = list[float]
        else:
            spec = field(default=default, metadata=meta)
        specs.append((f.name, kind, spec))
    return dataclasses.make_dataclass("RenderArguments", specs)


RenderArguments = _render_arguments()
RENDER_FIELDS = tuple(f.name for f in dataclasses.fields(RenderArguments))


@dataclass
class DataArguments(RenderArguments):
    """Which records to train on, how to mix them, and how each query is rendered."""

    record_sets: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Record sets, one entry per set: DepthLMBench jsonl files or folders of them, or parquet "
            "sets (a .parquet file, a folder of them, or a data_builders/export.py folder)."
        },
    )
    mixing_weights: list[float] = field(
        default_factory=list,
        metadata={
            "help": "One float weight per record set: the probability of drawing each sample from it "
            "(datasets.interleave_datasets). Empty: one pass over every record (streaming: equal weights)."
        },
    )
    record_set_tasks: list[str] = field(
        default_factory=list,
        metadata={
            "help": "One task mix per record set, paired with record_sets as mixing_weights are: "
            "'depth=1,region=0.5', 'all', or '-' for the global tasks (in YAML also a mapping or null). "
            "A set's own mix replaces the global tasks for its rows. Empty: every set uses tasks."
        },
    )
    datasets: list[dict] = field(
        default_factory=list,
        metadata={
            "help": "YAML only, the form TRL's DatasetMixtureConfig and open-r1's dataset_mixture use: a list of "
            "{path: SET, weight: W, tasks: MIX} ('fraction' is read as the weight; tasks: the set's own "
            "task mix); adds to record_sets / mixing_weights / record_set_tasks."
        },
    )
    samples_per_epoch: int | None = field(
        default=None,
        metadata={
            "help": "Samples (one query point each) per epoch, over all ranks. Default: the total number of "
            "records (streaming: required)."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the record sets (datasets.IterableDataset) instead of reading them into memory "
            "(for sets that do not fit). Each rank reads its own files: give each set at least as many "
            "files as ranks. Needs max_steps and samples_per_epoch."
        },
    )
    pre_rendered: bool = field(
        default=False,
        metadata={
            "help": "Render every sample once (epoch 0) into a fixed dataset instead of re-rendering each epoch "
            "(for inspection and debugging)."
        },
    )
    pre_rendered_dir: str | None = field(
        default=None,
        metadata={"help": "With pre_rendered: also save the rendered dataset here (datasets.save_to_disk)."},
    )
    check_images: bool = field(
        default=True, metadata={"help": "Check that every record's image file exists when reading records."}
    )
    tasks: str | None = field(
        default=None,
        metadata={
            "help": "Task mix (depthlm.tasks): 'depth=1,distance=0.3', 'all', or in YAML a mapping "
            "{depth: 1.0, distance: 0.3}. Each sample draws one task the record can serve, by weight, with "
            "the sample's own rng. Default: depth alone (the rows are exactly those of depth-only training)."
        },
    )
    # ---- logging
    log_samples: int = field(
        default=4, metadata={"help": "Rendered training samples logged as images when training starts."}
    )
    sample_log: bool = field(
        default=False,
        metadata={
            "help": "Write the id of every sample each rank renders to output_dir/sample_log/rank<k>.jsonl "
            "(checks that ranks and workers see different samples)."
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.record_sets, str):
            self.record_sets = [self.record_sets]
        if self.datasets:
            self._take_dataset_mixture()
        if self.mixing_weights and len(self.mixing_weights) != len(self.record_sets):
            raise DepthLMError(
                f"{len(self.mixing_weights)} mixing_weights for {len(self.record_sets)} record_sets; "
                "give one weight per set (or none)"
            )
        if any(w < 0 for w in self.mixing_weights) or (self.mixing_weights and sum(self.mixing_weights) <= 0):
            raise DepthLMError(f"mixing_weights must be >= 0 with a positive sum, got {self.mixing_weights}")
        if isinstance(self.record_set_tasks, str):
            self.record_set_tasks = [self.record_set_tasks]
        if self.record_set_tasks and len(self.record_set_tasks) != len(self.record_sets):
            raise DepthLMError(
                f"{len(self.record_set_tasks)} record_set_tasks for {len(self.record_sets)} record_sets; "
                "give one task mix per set ('-' for the global tasks), or none"
            )
        self.set_task_mixes()  # bad names or weights: one line naming the set, before any data is read
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise DepthLMError(f"samples_per_epoch must be positive, got {self.samples_per_epoch}")
        if self.streaming and self.pre_rendered:
            raise DepthLMError("choose one of streaming and pre_rendered")
        if self.streaming and self.samples_per_epoch is None:
            raise DepthLMError("streaming needs samples_per_epoch (a stream's size is unknown)")

    def _take_dataset_mixture(self) -> None:
        """``datasets: [{path, weight}]`` (TRL / open-r1 form) -> record_sets + mixing_weights."""
        if self.mixing_weights and len(self.mixing_weights) != len(self.record_sets):
            return  # the count check below names the mismatch
        weights = list(self.mixing_weights) or ([1.0] * len(self.record_sets) if self.record_sets else [])
        if isinstance(self.record_set_tasks, str):
            self.record_set_tasks = [self.record_set_tasks]
        if self.record_set_tasks and len(self.record_set_tasks) != len(self.record_sets):
            return  # the count check names the mismatch
        set_tasks = list(self.record_set_tasks) or [None] * len(self.record_sets)
        given = []
        for i, entry in enumerate(self.datasets):
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise DepthLMError(f"datasets[{i}]: expected {{path: SET, weight: W}}, got {entry!r}")
            unknown = set(entry) - {"path", "weight", "fraction", "tasks"}
            if unknown:
                raise DepthLMError(f"datasets[{i}] ({entry['path']}): unknown keys {sorted(unknown)}")
            given.append(entry.get("weight", entry.get("fraction")))
            set_tasks.append(entry.get("tasks"))
            self.record_sets.append(entry["path"])
        self.datasets = []  # taken: a copy of these arguments must not add the sets again
        if any(t is not None for t in set_tasks):
            self.record_set_tasks = set_tasks
        if all(w is None for w in given) and not self.mixing_weights:
            return  # no weights anywhere: one pass over every record
        try:
            self.mixing_weights = weights + [float(1.0 if w is None else w) for w in given]
        except (TypeError, ValueError):
            raise DepthLMError(f"datasets: weights must be numbers, got {given}") from None

    def set_task_mixes(self) -> list[dict[str, float] | None] | None:
        """Each record set's task mix ({task: weight}; None: ``depth`` alone), its own or the global
        ``tasks``; None when every set has the same one: the rows are then exactly those of that
        mix trained globally (or of depth-only training), as without per-set mixes."""
        mixes = self._effective_mixes()
        return None if all(m == mixes[0] for m in mixes) else mixes

    def trained_tasks(self) -> dict[str, float] | str | None:
        """The tasks the model folder records (ask, chat and the app offer these): the global mix,
        or with per-set mixes their union, each task at its largest weight in any set's mix."""
        mixes = self._effective_mixes()
        if not mixes:
            return self.tasks
        if all(m == mixes[0] for m in mixes):
            return mixes[0]
        from depthlm import tasks

        union: dict[str, float] = {}
        for m in mixes:
            for name, weight in (m or {"depth": 1.0}).items():
                union[name] = max(weight, union.get(name, 0.0))
        return {name: union[name] for name in tasks.names() if name in union}  # registry order

    def _effective_mixes(self) -> list[dict[str, float] | None]:
        """One parsed mix per set ([] without record_set_tasks); a bad one is one line naming the set."""
        from depthlm.tasks.mix import parse_weights

        def parsed(spec, where: str) -> dict[str, float] | None:
            try:
                weights = parse_weights(spec)
            except DepthLMError as err:
                raise DepthLMError(f"{where}: {err}") from None
            return None if weights == {"depth": 1.0} else weights

        default = parsed(self.tasks, "tasks")
        mixes = []
        for k, (path, spec) in enumerate(zip(self.record_sets, self.record_set_tasks)):
            where = f"record set {k} ({path})"
            if spec is None or (isinstance(spec, str) and spec.strip() in ("", "-")):
                mixes.append(default)
            elif isinstance(spec, (str, dict)):
                mixes.append(parsed(spec, where))
            else:
                raise DepthLMError(f"{where}: tasks must be a mapping or 'depth=1,region=0.5', got {spec!r}")
        return mixes


@dataclass
class DepthLMModelConfig(ModelConfig):
    """TRL's ModelConfig (LoRA/QLoRA, dtype, attention) plus vision-tower freezing."""

    freeze_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "Freeze the vision encoder (the patch embedding and ViT blocks; the merger still trains)."
        },
    )


def render_settings(args: DataArguments, processor=None, *, grid: int | None = None) -> RenderSettings:
    """The RenderSettings for these arguments, with the grid of ``processor`` (patch * merge size).

    Why from the processor: rendered views have sides on this grid and a pixel count inside the
    budget, which is exactly what the processor keeps unchanged."""
    if processor is not None:
        from depthlm.models import processor_grid

        grid = processor_grid(processor)
    fields = {name: getattr(args, name) for name in RENDER_FIELDS}
    if isinstance(args, DataArguments):  # per-set mixes: the model records their union
        fields["tasks"] = args.trained_tasks()
    return RenderSettings(**fields, grid=grid or _DEFAULTS.grid)


@dataclass
class GRPODataArguments(DataArguments):
    """DataArguments plus the GRPO rewards, by name from depthlm.rewards.REWARDS."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["neg_abs_rel", "format"],
        metadata={
            "help": "Reward functions by name: neg_l1, neg_abs_rel, delta1, format (weights: reward_weights)."
        },
    )
