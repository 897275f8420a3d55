"""The GRPO recipe (depthlm.recipes.grpo) on a tiny random Qwen-VL model, generating with transformers
on the CPU (about 13 s: 3 steps of 2 prompts x 4 generations)."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_helpers import interrupted_and_uninterrupted, step_losses, synthetic_records, trained_weights

from depthlm.errors import DepthLMError
from depthlm.recipes import grpo
from depthlm.rewards import REWARDS
from depthlm.settings import RenderSettings

REPO = Path(__file__).resolve().parents[1]


def parse(*extra: str):
    return grpo.make_parser().parse_args_and_config(
        ["--config", str(REPO / "recipes" / "configs" / "tiny_cpu_grpo.yaml"), "--report_to", "none", *extra]
    )


def test_grpo_recipe_runs_with_rewards_chosen_by_name(tiny_model_dir, tmp_path, monkeypatch):
    records = synthetic_records(tmp_path / "records", 8, name="synth", size=(320, 240))
    calls = []

    def recording(completions, **columns):
        calls.append(columns)
        return [0.0] * len(completions)

    monkeypatch.setitem(REWARDS, "recording", recording)
    out = tmp_path / "grpo"
    script_args, training_args, model_args = parse(
        "--model_name_or_path", str(tiny_model_dir),
        "--record_sets", str(records),
        "--output_dir", str(out),
        "--max_steps", "3",
        "--per_device_train_batch_size", "8",
        "--num_generations", "4",
        "--max_completion_length", "12",
        "--save_strategy", "no",
        "--use_vllm", "true",  # no GPU here: the recipe must fall back to transformers generation
        "--reward_funcs", "neg_abs_rel", "format", "recording",
        "--reward_weights", "1.0", "0.2", "0.0",
    )  # fmt: skip
    trainer = grpo.main(script_args, training_args, model_args)
    assert trainer.state.global_step == 3 and training_args.use_vllm is False
    logged = trainer.state.log_history[0]
    assert {"rewards/neg_abs_rel_reward/mean", "rewards/format_reward/mean", "parse_failure_rate"} <= set(
        logged
    )
    assert len(calls) == 3
    for columns in calls:
        depth, template, images = columns["depth"], columns["template"], columns["images"]
        assert len(depth) == 8 and set(template) == {"plain"}
        # a GRPO group is one prompt: the same rendered image and depth for its 4 generations
        for g in range(0, 8, 4):
            assert len(set(depth[g : g + 4])) == 1
            assert len({images[i][0].tobytes() for i in range(g, g + 4)}) == 1
        assert len(set(depth)) == 2
    assert RenderSettings.load(out) is not None and (out / "model.safetensors").is_file()


def test_unknown_reward_is_a_clear_error(tiny_model_dir, tmp_path):
    script_args, training_args, model_args = parse(
        "--model_name_or_path", str(tiny_model_dir), "--record_sets", "x.jsonl", "--output_dir", str(tmp_path),
        "--reward_funcs", "neg_l2",
    )  # fmt: skip
    with pytest.raises(DepthLMError, match="unknown reward 'neg_l2'"):
        grpo.main(script_args, training_args, model_args)


def test_a_killed_grpo_run_resumes_the_model_not_only_the_step(tiny_model_dir, tmp_path, monkeypatch):
    """Killed after checkpoint 2 of 4 and rerun: same final weights and losses as an unbroken run
    (sampling is seeded and restored with the checkpoint's RNG state). About 15 s."""
    import torch
    from safetensors.torch import load_file

    records = synthetic_records(tmp_path / "records", 8, name="synth", size=(320, 240))
    # a random model's answers all fail to parse, so depth rewards tie and nothing would train:
    # reward the completion's length, which varies within a group
    monkeypatch.setitem(REWARDS, "length", lambda completions, **_: [float(len(str(c))) for c in completions])

    def parse_run(out):
        return parse(
            "--model_name_or_path", str(tiny_model_dir), "--record_sets", str(records), "--output_dir", str(out),
            "--max_steps", "4", "--save_steps", "2", "--per_device_train_batch_size", "4",
            "--num_generations", "2", "--max_completion_length", "8", "--learning_rate", "1e-2",
            "--log_samples", "0", "--reward_funcs", "length", "--reward_weights", "1.0",
        )  # fmt: skip

    straight, resumed = interrupted_and_uninterrupted(grpo, parse_run, tmp_path, kill_at=2)
    before, after = trained_weights(straight), trained_weights(resumed)
    assert all(torch.equal(before[k], after[k]) for k in before)
    base = load_file(tiny_model_dir / "model.safetensors")
    assert not torch.equal(
        after["lm_head.weight"], base["lm_head.weight"]
    )  # it trained: else equality proves nothing
    losses, resumed_losses = step_losses(straight), step_losses(resumed)
    assert [resumed_losses[s] for s in (3, 4)] == [losses[s] for s in (3, 4)]
