"""GRPO fine-tuning of a Qwen-VL-class model on DepthLMBench record sets (TRL GRPOTrainer).

Rewards come from depthlm.rewards by name (``reward_funcs: [neg_abs_rel, delta1, format]`` in
the YAML, weighted by ``reward_weights``); the ground truth travels in the ``depth`` column and
the answer format in ``template``. On GPUs generation runs in vLLM colocated with training:

```bash
accelerate launch --config_file recipes/accelerate/zero2.yaml recipes/grpo.py \
    --config recipes/configs/qwen2_5_vl_3b_grpo.yaml
```

On a CPU it generates with transformers (vLLM's CPU build repacks its weights, so the trainer
cannot update them in place); a tiny random model runs in a minute:

```bash
python recipes/grpo.py --config recipes/configs/tiny_cpu_grpo.yaml \
    --model_name_or_path runs/tiny-model --record_sets runs/synthetic/train.jsonl
```

A GRPO run usually starts from an SFT checkpoint (the paper: SFT and GRPO reach similar
accuracy per sample, GRPO costs 8-16x more compute per sample).
"""

from __future__ import annotations

import logging
import os
import sys

from depthlm.errors import DepthLMError

log = logging.getLogger("depthlm.recipes.grpo")


def use_vllm_where_it_works(training_args) -> None:
    """vLLM generation needs a GPU for GRPO; on a CPU fall back to transformers generation."""
    import torch

    if training_args.use_vllm and not torch.cuda.is_available():
        log.warning(
            "use_vllm needs a GPU for GRPO (vLLM's CPU build cannot take weight updates); generating with transformers"
        )
        training_args.use_vllm = False


def main(script_args, training_args, model_args):
    """Train as configured; returns the trainer."""
    from trl import GRPOTrainer, get_peft_config

    from depthlm.rewards import get_rewards
    from depthlm.training.run import load_training_model, prepare_run, resume_checkpoint, save_outputs

    reward_funcs = get_rewards(script_args.reward_funcs)
    use_vllm_where_it_works(training_args)
    processor, settings, dataset, callbacks = prepare_run(
        script_args, training_args, model_args, kind="prompt"
    )
    model = load_training_model(model_args, training_args)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
        callbacks=callbacks,
    )
    if trainer.accelerator.is_main_process:
        settings.save(training_args.output_dir)
    checkpoint = resume_checkpoint(training_args)
    if checkpoint:
        trainer.accelerator.print(f"Resuming from {checkpoint}")
    trainer.train(resume_from_checkpoint=checkpoint)
    save_outputs(trainer, processor, settings, training_args.output_dir)
    trainer.accelerator.print(f"Model, processor and render settings saved to {training_args.output_dir}")
    return trainer


def make_parser():
    from trl import GRPOConfig, TrlParser

    from depthlm.training.config import DepthLMModelConfig, GRPODataArguments

    return TrlParser((GRPODataArguments, GRPOConfig, DepthLMModelConfig))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    script_args, training_args, model_args = make_parser().parse_args_and_config()
    try:
        main(script_args, training_args, model_args)
    except DepthLMError as err:  # bad records, settings or model folder: one clear line, no traceback
        sys.exit(f"error: {err}")
