"""Resuming a run: which checkpoint, and loading its weights into the model for real.

Why this module exists: transformers 5.x saves a Qwen2.5-VL checkpoint in the hub's original
key layout (``save_pretrained(save_original_format=True)`` reverts the model's conversion
mapping, so the file holds ``visual.*`` / ``model.layers.*``), but ``Trainer`` resumes with a
plain ``model.load_state_dict(..., strict=False)`` that applies no conversion: the model expects
``model.visual.*`` / ``model.language_model.*``, 56 of the tiny model's 57 tensors are silently
skipped, and step, schedule and optimizer state are restored onto the BASE weights
(transformers issues #43701, #40187). :class:`CheckpointLoadingMixin` loads the checkpoint
through the same key conversion ``from_pretrained`` applies, copies the tensors into the
existing parameters (the optimizer keeps its references) and fails loudly if anything is left
unmatched. Adapters (PEFT), FSDP and DeepSpeed checkpoints keep transformers' own loading.

Which checkpoint: the ecosystem's meaning (open-r1's recipes, transformers'
``get_last_checkpoint``): a run resumes from the newest checkpoint in ``output_dir`` unless
``resume_from_checkpoint`` names one (a path) or says ``false``; ``true`` means "there must be
one". Checkpoints are written in place, so a run killed while saving leaves a newest folder
without ``trainer_state.json`` (written last): it is skipped.
"""

from __future__ import annotations

import json
import logging
import os
from copy import deepcopy
from pathlib import Path

from depthlm.errors import DepthLMError

log = logging.getLogger(__name__)

_FALSE = ("false", "no", "0", "none", "")
_TRUE = ("true", "yes", "1", "last")


def last_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """transformers' newest ``checkpoint-N`` in ``output_dir`` whose trainer_state.json is readable."""
    from transformers.trainer_utils import sort_checkpoints

    if not Path(output_dir).is_dir():
        return None
    for path in reversed(sort_checkpoints(str(output_dir))):
        try:
            json.loads((Path(path) / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s: incomplete checkpoint (killed while saving?), skipped", path)
            continue
        return str(path)
    return None


def resume_from(training_args) -> str | None:
    """The checkpoint this run resumes from (None: start fresh). See the module docstring."""
    resume = training_args.resume_from_checkpoint
    text = str(resume).strip().lower() if resume is not None else None
    if text in _FALSE and resume is not None:
        return None
    last = last_checkpoint(training_args.output_dir)
    if resume is None:
        return last
    if text in _TRUE:
        if last is None:
            raise DepthLMError(
                f"resume_from_checkpoint: true, but {training_args.output_dir} holds no complete checkpoint "
                "(leave resume_from_checkpoint unset to resume only when there is one)"
            )
        return last
    if not (Path(resume) / "trainer_state.json").is_file():
        raise DepthLMError(
            f"resume_from_checkpoint {resume}: not a checkpoint folder (no trainer_state.json)"
        )
    return str(resume)


def checkpoint_to_model_keys(model, state_dict: dict) -> dict:
    """Rename (and convert) checkpoint tensors from the saved, original layout to ``model``'s keys.

    The inverse of what ``save_pretrained`` does (transformers' ``revert_weight_conversion``),
    built from the same conversion list, so it stays right for every model transformers maps."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import (
        PrefixChange,
        WeightConverter,
        WeightRenaming,
        rename_source_key,
    )

    conversions = getattr(model, "_weight_conversions", None)
    if conversions is None:  # built from a config, not from_pretrained: what save_pretrained reverts then
        conversions = [
            c
            for c in get_model_conversion_mapping(model, add_legacy=False)
            if not isinstance(c, PrefixChange)
        ]
    renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
    converters = [c for c in conversions if isinstance(c, WeightConverter)]
    by_pattern = {p: c for c in converters for p in c.source_patterns}
    out, pending = {}, {}
    for key, tensor in state_dict.items():
        renamed, pattern = rename_source_key(key, renamings, converters)
        if pattern is None:
            out[renamed] = tensor
        else:  # fused weights (e.g. MoE experts): collect, then convert like from_pretrained
            pending.setdefault(renamed, deepcopy(by_pattern[pattern])).add_tensor(
                renamed, key, pattern, tensor
            )
    for first, converter in pending.items():
        for name, value in converter.convert(first, model=model, config=model.config).items():
            out[name] = value[0] if isinstance(value, list) else value
    return out


def load_checkpoint_weights(model, folder: str | os.PathLike) -> None:
    """Copy a full-model checkpoint (``model.safetensors`` or its sharded index) into ``model``.

    In place (optimizer references stay valid), one shard at a time; a checkpoint that does not
    cover the model is an error, never a silent partial load."""
    from safetensors.torch import load_file
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

    folder = Path(folder)
    if (folder / SAFE_WEIGHTS_INDEX_NAME).is_file():
        index = json.loads((folder / SAFE_WEIGHTS_INDEX_NAME).read_text(encoding="utf-8"))
        shards = sorted(set(index["weight_map"].values()))
    else:
        shards = [SAFE_WEIGHTS_NAME]
    expected = set(model.state_dict())
    loaded, unexpected = set(), []
    for shard in shards:
        tensors = checkpoint_to_model_keys(model, load_file(folder / shard, device="cpu"))
        try:
            result = model.load_state_dict(tensors, strict=False)
        except RuntimeError as err:  # shapes differ: another model's checkpoint
            detail = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
            raise DepthLMError(f"{folder}: checkpoint does not match the model ({detail})") from None
        unexpected += result.unexpected_keys
        loaded |= set(tensors) - set(result.unexpected_keys)
        del tensors
    missing = sorted(expected - loaded - _tied_keys(model))
    if unexpected or missing:
        raise DepthLMError(
            f"{folder}: checkpoint does not match the model ({len(missing)} model tensors missing, e.g. "
            f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]}); refusing to resume onto "
            "partly loaded weights"
        )
    log.info("loaded %d tensors from %s", len(loaded), folder)


def _tied_keys(model) -> set[str]:
    """Parameters save_pretrained leaves out because they share storage with another (tied embeddings)."""
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    return set(tied)


class CheckpointLoadingMixin:
    """Put before a transformers/TRL trainer class: resumes full-model checkpoints with key conversion."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

        target = self.model if model is None else model
        folder = Path(resume_from_checkpoint)
        full_model = (folder / SAFE_WEIGHTS_NAME).is_file() or (folder / SAFE_WEIGHTS_INDEX_NAME).is_file()
        if full_model and not self.is_fsdp_enabled and not hasattr(target, "peft_config"):
            load_checkpoint_weights(target, folder)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)
