"""Supervised fine-tuning of a Qwen-VL-class model on DepthLMBench record sets (TRL SFTTrainer).

Full fine-tune of Qwen2.5-VL-3B with the paper's settings, on 8 GPUs:

```bash
accelerate launch --config_file recipes/accelerate/zero2.yaml recipes/sft.py \
    --config recipes/configs/qwen2_5_vl_3b_full.yaml
```

LoRA on one GPU, any field of the YAML overridden on the command line:

```bash
accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 1 recipes/sft.py \
    --config recipes/configs/qwen2_5_vl_7b_lora.yaml --output_dir runs/7b-lora --learning_rate 1e-4
```

A tiny random model on the CPU, in minutes:

```bash
python recipes/sft.py --config recipes/configs/tiny_cpu.yaml \
    --model_name_or_path runs/tiny-model --record_sets runs/synthetic/train.jsonl
```

Samples are rendered on the fly from the records (depthlm.training.data); the loss covers only
the answer tokens (``assistant_only_loss``); the output folder holds the model, the processor
and ``depthlm_render.json``, the rendering settings evaluation and chat read back.
"""

from __future__ import annotations

import logging
import os
import sys

from depthlm.errors import DepthLMError


def main(script_args, training_args, model_args):
    """Train as configured; returns the trainer (handy for notebooks and benchmarks)."""
    from trl import SFTTrainer, get_peft_config

    from depthlm.training.run import load_training_model, prepare_run, resume_checkpoint, save_outputs

    training_args.assistant_only_loss = True  # loss on the answer only (the reference trained the prompt too)
    processor, settings, dataset, callbacks = prepare_run(script_args, training_args, model_args, kind="sft")
    model = load_training_model(model_args, training_args)
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
        callbacks=callbacks,
    )
    if trainer.accelerator.is_main_process:  # early, so a killed run's folder still says how it renders
        settings.save(training_args.output_dir)
    checkpoint = resume_checkpoint(training_args)
    if checkpoint:
        trainer.accelerator.print(f"Resuming from {checkpoint}")
    trainer.train(resume_from_checkpoint=checkpoint)
    save_outputs(trainer, processor, settings, training_args.output_dir)
    trainer.accelerator.print(f"Model, processor and render settings saved to {training_args.output_dir}")
    return trainer


def make_parser():
    from trl import SFTConfig, TrlParser

    from depthlm.training.config import DataArguments, DepthLMModelConfig

    return TrlParser((DataArguments, SFTConfig, DepthLMModelConfig))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    script_args, training_args, model_args = make_parser().parse_args_and_config()
    try:
        main(script_args, training_args, model_args)
    except DepthLMError as err:  # bad records, settings or model folder: one clear line, no traceback
        sys.exit(f"error: {err}")
