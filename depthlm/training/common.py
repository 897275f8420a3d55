"""What both recipes do around the TRL trainer: processor and render settings, the rendered
dataset and its callbacks, the model, resuming, and saving what travels with the model.

depthlm.recipes.sft and depthlm.recipes.grpo stay thin (as TRL's scripts are) by calling these.
"""

from __future__ import annotations

import logging
from pathlib import Path

from depthlm.errors import DepthLMError

log = logging.getLogger(__name__)


def prepare_run(script_args, training_args, model_args, *, kind: str):
    """Processor, render settings, dataset, renderer and callbacks shared by the SFT and GRPO recipes."""
    from depthlm.models import load_processor
    from depthlm.training.callbacks import EpochCallback, SampleImagesCallback, SaveRenderSettingsCallback
    from depthlm.training.config import render_settings
    from depthlm.training.data import build_dataset, preview

    processor = load_processor(
        model_args.model_name_or_path, min_pixels=script_args.min_pixels, max_pixels=script_args.max_pixels
    )
    settings = render_settings(script_args, processor)
    check_max_length(training_args, settings)
    sample_log = Path(training_args.output_dir) / "sample_log" if script_args.sample_log else None
    dataset, renderer = build_dataset(
        script_args, settings, seed=training_args.seed, kind=kind, sample_log_dir=sample_log
    )
    renderer.record_samples = False  # until training starts (EpochCallback)
    # The rows are records rendered by a transform: the Trainer must not drop their columns.
    training_args.remove_unused_columns = False
    if script_args.streaming:
        # accelerate's default for an IterableDataset is rank 0 reading and sending every batch
        # (so rank 0 would render all samples): let each rank read (and render) its own shards.
        training_args.accelerator_config.dispatch_batches = False
    callbacks = [
        EpochCallback(renderer),
        SaveRenderSettingsCallback(settings),
        SampleImagesCallback(preview(renderer, script_args.log_samples)),
    ]
    return processor, settings, dataset, callbacks


def check_max_length(training_args, settings) -> None:
    """Refuse a max_length that could cut a sample: truncation drops the answer (or image tokens).

    A sample is at most max_pixels / grid^2 image tokens plus the question and answer."""
    max_length = getattr(training_args, "max_length", None)
    longest = settings.max_pixels // (settings.grid * settings.grid) + 256
    if max_length is not None and max_length < longest:
        raise DepthLMError(
            f"max_length {max_length} could truncate samples of up to {longest} tokens (max_pixels "
            f"{settings.max_pixels} is {settings.max_pixels // settings.grid**2} image tokens): set max_length "
            "to null (samples are bounded by the pixel budget) or lower max_pixels"
        )


def load_training_model(model_args, training_args):
    """The model (class from its config, SDPA unless flash-attn is installed), quantised for QLoRA
    when asked, with the vision tower frozen when asked."""
    from accelerate import PartialState
    from trl import get_quantization_config

    from depthlm.models import load_model

    quantization_config = get_quantization_config(model_args)
    # A quantised model sits whole on this process's GPU (k-bit weights cannot be moved later).
    kbit_device_map = {"": PartialState().local_process_index}
    model = load_model(
        model_args.model_name_or_path,
        dtype=model_args.dtype or "auto",
        attn_implementation=model_args.attn_implementation,
        device_map=kbit_device_map if quantization_config is not None else None,
        quantization_config=quantization_config,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    if model_args.freeze_vision_tower:
        frozen = freeze_vision_tower(model)
        log.info("froze %d vision-tower parameters", frozen)
    return model


def freeze_vision_tower(model) -> int:
    """Freeze the vision encoder's patch embedding and blocks; the merger (projector) stays trainable.
    Returns the number of parameters frozen."""
    visual = getattr(getattr(model, "model", model), "visual", None) or getattr(model, "visual", None)
    if visual is None:
        raise DepthLMError(f"{type(model).__name__} has no vision tower (.visual) to freeze")
    frozen = 0
    for name, param in visual.named_parameters():
        if not name.startswith("merger") and "deepstack_merger" not in name:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def train_and_save(trainer):
    """The tail both recipes share: resume (depthlm.training.checkpoints.resume_from), train, save.

    ``trainer.render_settings`` are written first, so a killed run's folder still says how it renders."""
    from depthlm.training.checkpoints import resume_from

    args, settings, processor = trainer.args, trainer.render_settings, trainer.processing_class
    if trainer.accelerator.is_main_process:
        settings.save(args.output_dir)
    checkpoint = resume_from(args)
    if checkpoint:
        trainer.accelerator.print(f"Resuming from {checkpoint}")
    trainer.train(resume_from_checkpoint=checkpoint)
    save_outputs(trainer, processor, settings, args.output_dir)
    trainer.accelerator.print(f"Model, processor and render settings saved to {args.output_dir}")
    return trainer


def save_outputs(trainer, processor, settings, output_dir: str) -> None:
    """Model (or adapter), processor and render settings, so evaluation and chat find everything."""
    trainer.save_model(output_dir)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(output_dir)
        settings.save(output_dir)
