"""Supervised fine-tuning of a Qwen-VL-class model on DepthLMBench record sets (TRL SFTTrainer).

Full fine-tune of Qwen2.5-VL-3B with the paper's settings, on 8 GPUs:

```bash
depthlm sft --config recipes/configs/qwen2_5_vl_3b_full.yaml --accelerate_config recipes/accelerate/zero2.yaml
accelerate launch --config_file recipes/accelerate/zero2.yaml recipes/sft.py \
    --config recipes/configs/qwen2_5_vl_3b_full.yaml          # the same run
```

LoRA on one GPU, any field of the YAML overridden on the command line:

```bash
depthlm sft --config recipes/configs/qwen2_5_vl_7b_lora.yaml --output_dir runs/7b-lora --learning_rate 1e-4 \
    --accelerate_config recipes/accelerate/ddp.yaml --num_processes 1
```

A tiny random model on the CPU, in minutes (no accelerate flags: runs in this process):

```bash
depthlm sft --config recipes/configs/tiny_cpu.yaml \
    --model_name_or_path runs/tiny-model --record_sets runs/synthetic/train.jsonl
```

Samples are rendered on the fly from the records (depthlm.training.data); the loss covers only
the answer tokens (``assistant_only_loss: true`` in every config, required here); the output
folder holds the model, the processor and ``depthlm_render.json``. Rerunning the same command
resumes from the last checkpoint in ``output_dir`` (depthlm.training.checkpoints).

Python API (stable): ``make_parser()``, ``build_trainer(script_args, training_args, model_args)``
returns the real ``SFTTrainer`` untrained, ``train(trainer)``, ``main(...)`` = both, ``cli(argv)``.
"""

from __future__ import annotations

from trl import SFTTrainer

from depthlm.errors import DepthLMError
from depthlm.training.checkpoints import CheckpointLoadingMixin
from depthlm.training.common import train_and_save as train  # noqa: F401  (part of the recipe API)


class DepthLMSFTTrainer(CheckpointLoadingMixin, SFTTrainer):
    """TRL's SFTTrainer that resumes the model, not only the step (depthlm.training.checkpoints)."""


def build_trainer(script_args, training_args, model_args) -> DepthLMSFTTrainer:
    """The trainer this recipe trains with, built but not trained (tests inspect its batches)."""
    from trl import get_peft_config

    from depthlm.training.common import load_training_model, prepare_run

    if not training_args.assistant_only_loss:  # the reference code trained the prompt too
        raise DepthLMError("assistant_only_loss must be true: the loss belongs on the answer tokens only")
    processor, settings, dataset, callbacks = prepare_run(script_args, training_args, model_args, kind="sft")
    trainer = DepthLMSFTTrainer(
        model=load_training_model(model_args, training_args),
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
        callbacks=callbacks,
    )
    trainer.render_settings = settings
    return trainer


def main(script_args, training_args, model_args):
    """Build and train as configured; returns the trainer."""
    return train(build_trainer(script_args, training_args, model_args))


def make_parser(prog: str | None = None):
    from trl import SFTConfig, TrlParser

    from depthlm.training.config import DataArguments, DepthLMModelConfig

    return TrlParser((DataArguments, SFTConfig, DepthLMModelConfig), prog=prog)


def cli(argv: list[str] | None = None, *, launch: bool = False) -> int:
    """``depthlm sft`` / ``python recipes/sft.py``: YAML + flags, with ``launch``
    (``depthlm sft``) flags the parser does not know are ``accelerate launch`` flags."""
    from depthlm.recipes.launch import run_recipe

    return run_recipe(__file__, "sft", make_parser, main, argv, launch=launch)


if __name__ == "__main__":
    raise SystemExit(cli())
