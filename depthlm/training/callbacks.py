"""Trainer callbacks of the training recipes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from transformers import TrainerCallback

from depthlm.errors import DepthLMError
from depthlm.render import Query
from depthlm.settings import RenderSettings
from depthlm.training.data import SampleRenderer

log = logging.getLogger(__name__)


class EpochCallback(TrainerCallback):
    """Tells the renderer which epoch starts, before the dataloader forks its workers, so every
    epoch draws new crops and points (and a resumed run redraws exactly the same ones).

    The first epoch of a run is read from the trainer state (a resumed run starts inside an
    epoch); later ones are counted, because for streaming datasets the trainer's fractional
    epoch counts steps of max_steps, not passes over the data."""

    def __init__(self, renderer: SampleRenderer):
        self.renderer = renderer
        self.started = False

    def on_train_begin(self, args, state, control, **kwargs):
        if args.dataloader_persistent_workers and args.dataloader_num_workers > 0:
            raise DepthLMError(
                "dataloader_persistent_workers would keep the workers' epoch at 0: every epoch would render "
                "the same crops. Turn it off."
            )
        self.renderer.record_samples = True
        self.started = False

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.started:
            self.renderer.epoch += 1
        else:
            self.renderer.epoch = int(state.epoch + 1e-6) if state.epoch else 0
            self.started = True


class SaveRenderSettingsCallback(TrainerCallback):
    """Writes depthlm_render.json into every checkpoint folder, so a checkpoint evaluates (and
    chats) with the rendering it was trained with, like the final model."""

    def __init__(self, settings: RenderSettings):
        self.settings = settings

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                self.settings.save(folder)


class SampleImagesCallback(TrainerCallback):
    """Logs a few rendered training samples (image with marker, question, answer) when training
    starts: as images to TensorBoard when it reports there, and as PNGs in output_dir/samples/."""

    def __init__(self, queries: list[Query]):
        self.queries = queries

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.queries:
            return
        folder = Path(args.output_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, q in enumerate(self.queries):
            q.image.save(folder / f"sample_{i}.png")
            lines.append(f"sample_{i}.png\t{q.meta.get('record_id', '')}\t{q.question}\t{q.answer}")
        (folder / "samples.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if "tensorboard" not in (args.report_to or []):
            return
        from torch.utils.tensorboard import SummaryWriter

        # A writer of its own under the Trainer's TensorBoard folder (output_dir/runs unless
        # TENSORBOARD_LOGGING_DIR is set); `tensorboard --logdir output_dir/runs` shows both.
        root = os.getenv("TENSORBOARD_LOGGING_DIR") or os.path.join(args.output_dir, "runs")
        with SummaryWriter(log_dir=os.path.join(os.path.expanduser(root), "samples")) as writer:
            for i, q in enumerate(self.queries):
                writer.add_image(f"train_samples/{i}", np.asarray(q.image), global_step=0, dataformats="HWC")
                writer.add_text(
                    f"train_samples/{i}", f"**Q:** {q.question}\n\n**A:** {q.answer}", global_step=0
                )
