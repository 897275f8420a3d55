"""Command-line / YAML arguments of the training recipes, as TRL-style dataclasses.

``depthlm.recipes.sft`` and ``depthlm.recipes.grpo`` parse ``DataArguments``, TRL's ``SFTConfig`` /
``GRPOConfig`` and ``DepthLMModelConfig`` with ``trl.TrlParser``, so every field below can
be set in the YAML config or overridden on the command line (``--f_uni 800``).

The rendering fields become a :class:`depthlm.settings.RenderSettings`; the pixel grid and
budget come from the model's processor (:func:`render_settings`) so the processor never
rescales a rendered image, and the settings are saved next to the trained model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ModelConfig

from depthlm.errors import DepthLMError
from depthlm.settings import RenderSettings

_DEFAULTS = RenderSettings()


@dataclass
class DataArguments:
    """Which records to train on, how to mix them, and how each query is rendered."""

    record_sets: list[str] = field(
        default_factory=list,
        metadata={"help": "DepthLMBench record sets: jsonl files or folders of them (one entry per set)."},
    )
    mixing_weights: list[float] = field(
        default_factory=list,
        metadata={
            "help": "One float weight per record set: the share of each epoch's samples drawn from it "
            "(normalised). Empty: proportional to the number of records."
        },
    )
    samples_per_epoch: int | None = field(
        default=None,
        metadata={"help": "Samples (one query point each) per epoch. Default: the total number of records."},
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream records from the jsonl files instead of reading them into memory (for sets that do "
            "not fit). Needs max_steps."
        },
    )
    num_shards: int = field(
        default=64,
        metadata={
            "help": "Streaming only: shards the records are split into between ranks and dataloader workers."
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
    # ---- rendering (depthlm.settings.RenderSettings); the grid comes from the processor
    f_uni: float = field(default=_DEFAULTS.f_uni, metadata={"help": "Unified focal length in pixels."})
    template: str = field(default=_DEFAULTS.template, metadata={"help": "Prompt template (depthlm.prompts)."})
    marker: str = field(default=_DEFAULTS.marker, metadata={"help": "Marker style (depthlm.markers)."})
    marker_color: str = field(default=_DEFAULTS.marker_color, metadata={"help": "Marker colour."})
    marker_size: int | None = field(
        default=None, metadata={"help": "Marker size in pixels (default: by f_uni)."}
    )
    depth_target: str = field(default=_DEFAULTS.depth_target, metadata={"help": "'ray' or 'z'."})
    crop_width: list[float] = field(
        default_factory=lambda: list(_DEFAULTS.crop_width),
        metadata={"help": "Training crop width range, as fractions of f_uni."},
    )
    crop_height: list[float] = field(
        default_factory=lambda: list(_DEFAULTS.crop_height),
        metadata={"help": "Training crop height range, as fractions of f_uni."},
    )
    train_crop: bool = field(default=True, metadata={"help": "Random training crops (False: whole image)."})
    min_pixels: int = field(
        default=_DEFAULTS.min_pixels,
        metadata={"help": "Pixel budget: smallest rendered view (processor min_pixels)."},
    )
    max_pixels: int = field(
        default=_DEFAULTS.max_pixels,
        metadata={"help": "Pixel budget: largest rendered view (processor max_pixels)."},
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
        if self.mixing_weights and len(self.mixing_weights) != len(self.record_sets):
            raise DepthLMError(
                f"{len(self.mixing_weights)} mixing_weights for {len(self.record_sets)} record_sets; "
                "give one weight per set (or none)"
            )
        if any(w < 0 for w in self.mixing_weights) or (self.mixing_weights and sum(self.mixing_weights) <= 0):
            raise DepthLMError(f"mixing_weights must be >= 0 with a positive sum, got {self.mixing_weights}")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise DepthLMError(f"samples_per_epoch must be positive, got {self.samples_per_epoch}")
        if self.streaming and self.pre_rendered:
            raise DepthLMError("choose one of streaming and pre_rendered")


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
    return RenderSettings(
        f_uni=args.f_uni,
        template=args.template,
        marker=args.marker,
        marker_color=args.marker_color,
        marker_size=args.marker_size,
        depth_target=args.depth_target,
        grid=grid or _DEFAULTS.grid,
        max_pixels=args.max_pixels,
        min_pixels=args.min_pixels,
        crop_width=tuple(args.crop_width),
        crop_height=tuple(args.crop_height),
        train_crop=args.train_crop,
    )


@dataclass
class GRPODataArguments(DataArguments):
    """DataArguments plus the GRPO rewards, by name from depthlm.rewards.REWARDS."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["neg_abs_rel", "format"],
        metadata={
            "help": "Reward functions by name: neg_l1, neg_abs_rel, delta1, format (weights: reward_weights)."
        },
    )
