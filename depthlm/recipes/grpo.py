"""GRPO fine-tuning of a Qwen-VL-class model on DepthLMBench record sets (TRL GRPOTrainer).

Rewards come from depthlm.rewards by name (``reward_funcs: [neg_abs_rel, delta1, format]`` in
the YAML, weighted by ``reward_weights``); the ground truth travels in the ``depth`` column and
the answer format in ``template``. On GPUs generation runs in vLLM colocated with training:

```bash
depthlm grpo --config recipes/configs/qwen2_5_vl_3b_grpo.yaml --accelerate_config recipes/accelerate/zero2.yaml
accelerate launch --config_file recipes/accelerate/zero2.yaml recipes/grpo.py \
    --config recipes/configs/qwen2_5_vl_3b_grpo.yaml          # the same run
```

On a CPU it generates with transformers (vLLM's CPU build repacks its weights, so the trainer
cannot update them in place); a tiny random model runs in a minute:

```bash
depthlm grpo --config recipes/configs/tiny_cpu_grpo.yaml \
    --model_name_or_path runs/tiny-model --record_sets runs/synthetic/train.jsonl
```

A GRPO run usually starts from an SFT checkpoint (the paper: SFT and GRPO reach similar
accuracy per sample, GRPO costs 8-16x more compute per sample). Rerunning the same command
resumes from the last checkpoint in ``output_dir``.

Python API (stable): ``make_parser()``, ``build_trainer(script_args, training_args, model_args)``
returns the real ``GRPOTrainer`` untrained, ``train(trainer)``, ``main(...)`` = both, ``cli(argv)``.
"""

from __future__ import annotations

import logging

from trl import GRPOTrainer

from depthlm.training.checkpoints import CheckpointLoadingMixin
from depthlm.training.common import train_and_save as train  # noqa: F401  (part of the recipe API)

log = logging.getLogger(__name__)


class DepthLMGRPOTrainer(CheckpointLoadingMixin, GRPOTrainer):
    """TRL's GRPOTrainer that resumes the model, not only the step (depthlm.training.checkpoints)."""


def use_vllm_where_it_works(training_args) -> None:
    """vLLM generation needs a GPU for GRPO; on a CPU fall back to transformers generation."""
    import torch

    if training_args.use_vllm and not torch.cuda.is_available():
        log.warning(
            "use_vllm needs a GPU for GRPO (vLLM's CPU build cannot take weight updates); generating with transformers"
        )
        training_args.use_vllm = False


def build_trainer(script_args, training_args, model_args) -> DepthLMGRPOTrainer:
    """The trainer this recipe trains with, built but not trained."""
    from trl import get_peft_config

    from depthlm.rewards import get_rewards
    from depthlm.training.common import load_training_model, prepare_run

    reward_funcs = get_rewards(script_args.reward_funcs)
    use_vllm_where_it_works(training_args)
    processor, settings, dataset, callbacks = prepare_run(script_args, training_args, model_args, kind="grpo")
    trainer = DepthLMGRPOTrainer(
        model=load_training_model(model_args, training_args),
        reward_funcs=reward_funcs,
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
    from trl import GRPOConfig, TrlParser

    from depthlm.training.config import DepthLMModelConfig, GRPODataArguments

    return TrlParser((GRPODataArguments, GRPOConfig, DepthLMModelConfig), prog=prog)


def cli(argv: list[str] | None = None, *, launch: bool = False) -> int:
    """``depthlm grpo`` / ``python recipes/grpo.py``: YAML + flags, with ``launch``
    (``depthlm grpo``) flags the parser does not know are ``accelerate launch`` flags."""
    from depthlm.recipes.launch import run_recipe

    return run_recipe(__file__, "grpo", make_parser, main, argv, launch=launch)


if __name__ == "__main__":
    raise SystemExit(cli())
