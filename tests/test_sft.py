"""The SFT recipe (depthlm.recipes.sft) on a tiny random Qwen-VL model and synthetic records, on the CPU.

Every test trains or inspects the trainer the recipe itself builds (``sft.build_trainer``).
The killed-and-resumed run in a real process is slow (two training processes); the in-process
kill-and-rerun checks compare final weights and the loss curve with an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from training_helpers import interrupted_and_uninterrupted, step_losses, synthetic_records, trained_weights

from depthlm.errors import DepthLMError
from depthlm.recipes import grpo, sft
from depthlm.settings import RenderSettings
from depthlm.training import checkpoints, common

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "recipes" / "configs" / "tiny_cpu.yaml"


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> str:
    return str(synthetic_records(tmp_path_factory.mktemp("sft-records"), 24, name="synth", size=(320, 240)))


def parse(model_dir, records, output_dir, *extra: str):
    return sft.make_parser().parse_args_and_config(
        [
            "--config",
            str(CONFIG),
            "--model_name_or_path",
            str(model_dir),
            "--record_sets",
            records,
            "--output_dir",
            str(output_dir),
            "--report_to",
            "none",
            *extra,
        ]
    )


def build_trainer(model_dir, records, output_dir, *extra):
    """The real SFTTrainer the recipe builds (without training)."""
    return sft.build_trainer(*parse(model_dir, records, output_dir, *extra))


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl"])
def test_loss_is_only_on_the_answer_and_images_are_not_rescaled(arch, request, records, tmp_path):
    from depthlm.models import processor_grid, would_resize

    model_dir = request.getfixturevalue("tiny_model_dir" if arch == "qwen2_5_vl" else "tiny_qwen3_dir")
    trainer = build_trainer(model_dir, records, tmp_path / "out")
    processor, settings, dataset = trainer.processing_class, trainer.render_settings, trainer.train_dataset
    assert trainer.args.assistant_only_loss  # from the YAML, visible; the recipe refuses false
    rows = [dataset[i] for i in range(4)]
    batch = trainer.data_collator([dict(r) for r in rows])  # the collator the trainer trains with
    tokenizer = processor.tokenizer
    for row, ids, labels in zip(rows, batch["input_ids"], batch["labels"]):
        answer = row["messages"][-1]["content"][0]["text"]
        trained = tokenizer.decode(ids[labels != -100])
        assert trained.strip() == answer + "<|im_end|>", trained
        assert answer not in tokenizer.decode(ids[labels == -100])
    # every image reaches the model at exactly its rendered size: grid (t, h/14, w/14)
    patch = processor.image_processor.patch_size
    for row, thw in zip(rows, batch["image_grid_thw"].tolist()):
        w, h = row["images"][0].size
        assert not would_resize(processor, w, h)
        assert thw == [1, h // patch, w // patch]
    assert settings.grid == processor_grid(processor) == (28 if arch == "qwen2_5_vl" else 32)
    assert settings.max_pixels == processor.image_processor.size["longest_edge"]


def test_recipe_trains_and_saves_model_processor_and_render_settings(tiny_model_dir, records, tmp_path):
    from safetensors.torch import load_file

    from depthlm.models import load_model, load_processor

    out = tmp_path / "run"
    args = parse(
        tiny_model_dir,
        records,
        out,
        "--max_steps",
        "4",
        "--save_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
    )
    args[1].report_to = ["tensorboard"]
    trainer = sft.main(*args)
    assert trainer.state.global_step == 4
    saved = RenderSettings.load(out)
    assert saved is not None and saved.f_uni == 150 and saved.grid == 28 and saved.max_pixels == 18816
    assert RenderSettings.load(out / "checkpoint-2") == saved  # checkpoints evaluate like the final model
    assert load_processor(out).image_processor.size["longest_edge"] == 18816
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert type(load_model(out)).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert len(list((out / "samples").glob("sample_*.png"))) == 4
    events = list((out / "runs").rglob("events.out.tfevents*"))
    assert events and any(b"train_samples" in e.read_bytes() for e in events)


def test_streaming_and_pre_rendered_modes_train(tiny_model_dir, records, tmp_path):
    for mode in (
        ["--streaming", "true", "--samples_per_epoch", "8"],
        ["--pre_rendered", "true", "--samples_per_epoch", "8"],
    ):
        out = tmp_path / mode[0].strip("-")
        args = parse(
            tiny_model_dir,
            records,
            out,
            "--max_steps",
            "2",
            "--save_strategy",
            "no",
            "--per_device_train_batch_size",
            "4",
            *mode,
        )
        trainer = sft.main(*args)
        assert trainer.state.global_step == 2 and RenderSettings.load(out) is not None


def test_each_epoch_and_worker_renders_its_own_samples_in_the_trainer(tiny_model_dir, records, tmp_path):
    """Two dataloader workers, two epochs: the EpochCallback reaches the forked workers."""
    out = tmp_path / "workers"
    args = parse(
        tiny_model_dir, records, out,
        "--max_steps", "8", "--samples_per_epoch", "16", "--per_device_train_batch_size", "4",
        "--dataloader_num_workers", "2", "--sample_log", "true", "--save_strategy", "no", "--log_samples", "0",
    )  # fmt: skip
    sft.main(*args)
    entries = [json.loads(x) for x in (out / "sample_log" / "rank0.jsonl").read_text().splitlines()]
    assert {(e["epoch"], e["worker"]) for e in entries} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for epoch in (0, 1):
        assert sorted(e["key"][0] for e in entries if e["epoch"] == epoch) == list(range(16))


def test_resume_picks_the_last_complete_checkpoint_and_skips_one_killed_while_saving(tmp_path):
    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_st'), (10, None)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if state is not None:  # trainer_state.json is written last: a kill mid-save leaves none or half
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert checkpoints.last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert checkpoints.last_checkpoint(tmp_path / "missing") is None


def test_resume_means_what_it_means_in_transformers_and_open_r1(tmp_path):
    """Unset: resume if there is a checkpoint (open-r1); true: there must be one; false: start afresh."""
    from types import SimpleNamespace

    def resume(value, folder=tmp_path):
        return checkpoints.resume_from(SimpleNamespace(resume_from_checkpoint=value, output_dir=str(folder)))

    assert resume(None) is None and resume("false") is None
    with pytest.raises(DepthLMError, match="holds no complete checkpoint"):
        resume("true")
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text("{}")
    last = str(tmp_path / "checkpoint-3")
    assert resume(None) == resume("true") == resume(True) == resume(last) == last
    assert resume("false") is None
    with pytest.raises(DepthLMError, match="not a checkpoint folder"):
        resume(str(tmp_path / "checkpoint-9"))


@pytest.mark.parametrize("variant", ["full", "lora"])
def test_a_killed_run_resumes_the_model_not_only_the_step(variant, tiny_model_dir, records, tmp_path):
    """Killed after checkpoint 3 of 6 and rerun: the same final weights and the same losses at
    steps 4-6 as a run that was never interrupted (the run is deterministic on the CPU).

    Fails on the old recipe: transformers saved visual.* / model.layers.* and resumed with a plain
    load_state_dict, so steps 4-6 ran on the base weights (about 9 s per variant)."""
    lora = (
        ["--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj"]
        if variant == "lora"
        else []
    )

    def parse_run(out):
        return parse(
            tiny_model_dir, records, out,
            "--max_steps", "6", "--save_steps", "3", "--per_device_train_batch_size", "4",
            "--logging_steps", "1", "--log_samples", "0", "--learning_rate", "5e-3", *lora,
        )  # fmt: skip

    straight, resumed = interrupted_and_uninterrupted(sft, parse_run, tmp_path, kill_at=3)
    assert resumed.state.global_step == straight.state.global_step == 6
    before, after = trained_weights(straight), trained_weights(resumed)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), [
        k for k in before if not torch.equal(before[k], after[k])
    ][:3]
    losses, resumed_losses = step_losses(straight), step_losses(resumed)
    assert [resumed_losses[s] for s in (4, 5, 6)] == [losses[s] for s in (4, 5, 6)]
    if variant == "lora":
        assert (tmp_path / "resumed" / "adapter_config.json").is_file()
        assert any("lora_" in k for k in after)


def test_a_checkpoint_that_does_not_fit_the_model_is_refused(tiny_model_dir, tiny_qwen3_dir):
    from depthlm.models import load_model

    model = load_model(tiny_model_dir)
    checkpoints.load_checkpoint_weights(model, tiny_model_dir)  # its own weights, in the saved layout: fine
    with pytest.raises(DepthLMError, match="checkpoint does not match the model"):
        checkpoints.load_checkpoint_weights(model, tiny_qwen3_dir)


def test_lora_with_frozen_vision_tower(tiny_model_dir, records, tmp_path):
    out = tmp_path / "lora"
    script_args, training_args, model_args = parse(
        tiny_model_dir,
        records,
        out,
        "--max_steps",
        "2",
        "--save_strategy",
        "no",
        "--per_device_train_batch_size",
        "4",
        "--use_peft",
        "--lora_r",
        "4",
        "--lora_target_modules",
        "q_proj",
        "v_proj",
        "--freeze_vision_tower",
    )
    trainer = sft.main(script_args, training_args, model_args)
    assert (out / "adapter_config.json").is_file() and (out / "depthlm_render.json").is_file()
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # freezing alone (no LoRA): only the merger of the vision tower still trains
    model = common.load_training_model(model_args, training_args)
    visual = [(n, p.requires_grad) for n, p in model.model.visual.named_parameters()]
    assert all(req == n.startswith("merger") for n, req in visual)


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tiny_model_dir, records, tmp_path):
    """About 25 s: a real training process is killed after its first checkpoint, then resumed."""
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        str(REPO / "recipes" / "sft.py"),
        "--config",
        str(CONFIG),
        "--model_name_or_path",
        str(tiny_model_dir),
        "--record_sets",
        records,
        "--output_dir",
        str(out),
        "--report_to",
        "none",
        "--per_device_train_batch_size",
        "4",
        "--max_steps",
        "400",
        "--save_steps",
        "3",
        "--save_total_limit",
        "1",
        "--logging_steps",
        "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not list(out.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    last = checkpoints.last_checkpoint(out)  # the kill may land while a later checkpoint is written
    assert last, "no checkpoint written before the deadline"
    killed_at = int(last.rsplit("-", 1)[1])
    assert killed_at < 400 and not (out / "model.safetensors").exists()

    # the same command, with fewer total steps so the test stays short, picks up the last checkpoint
    cmd[cmd.index("--max_steps") + 1] = str(killed_at + 3)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((out / f"checkpoint-{killed_at + 3}" / "trainer_state.json").read_text())
    assert state["global_step"] == killed_at + 3
    assert (out / "model.safetensors").is_file() and RenderSettings.load(out) is not None
    # resumed, not restarted: it started from the killed run's checkpoint and logged only the remaining steps
    assert f"Resuming from {last}" in done.stdout
    assert "missing keys" not in done.stderr and "unexpected keys" not in done.stderr
    assert done.stdout.count("'loss':") == 3  # one log line per step: only the remaining 3 steps ran
    assert [h["step"] for h in state["log_history"] if "loss" in h][-3:] == [
        killed_at + 1,
        killed_at + 2,
        killed_at + 3,
    ]


@pytest.mark.parametrize(
    "config", sorted((REPO / "recipes" / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_recipe_config_parses(config):
    """Every YAML parses with its recipe's TrlParser (a typo in a key fails here, not on a GPU node)."""
    from depthlm.training.config import render_settings

    recipe = grpo if "grpo" in config.name else sft
    script_args, training_args, model_args = recipe.make_parser().parse_args_and_config(
        ["--config", str(config), "--use_cpu", "true"]  # GPU configs ask for bf16, which needs use_cpu here
    )
    assert model_args.model_name_or_path and script_args.record_sets and training_args.output_dir
    grid = 32 if "qwen3" in config.name else 28
    settings = render_settings(script_args, grid=grid)
    common.check_max_length(training_args, settings)  # no config may truncate its own samples
    assert (
        checkpoints.resume_from(training_args) is None
    )  # resumes when rerun; starts fresh in an empty folder
    if recipe is sft:
        assert training_args.assistant_only_loss
    if not config.name.startswith("tiny"):
        assert settings.f_uni == 1000 and training_args.bf16 and training_args.gradient_checkpointing
        assert settings.max_pixels >= 1400 * 1200  # the paper's largest crop is never cut down
    else:
        assert not training_args.gradient_checkpointing and not training_args.bf16


def test_a_max_length_that_could_cut_samples_is_refused(tiny_model_dir, records, tmp_path):
    from depthlm.errors import DepthLMError

    script_args, training_args, model_args = parse(tiny_model_dir, records, tmp_path, "--max_length", "64")
    with pytest.raises(DepthLMError, match="max_length 64 could truncate"):
        sft.main(script_args, training_args, model_args)


def test_the_recipe_refuses_to_train_the_prompt(tiny_model_dir, records, tmp_path):
    with pytest.raises(DepthLMError, match="assistant_only_loss must be true"):
        build_trainer(tiny_model_dir, records, tmp_path, "--assistant_only_loss", "false")


def test_depthlm_sft_runs_accelerate_launch_with_the_flags_the_recipe_does_not_know(monkeypatch, tmp_path):
    """As `trl sft`: recipe flags go to the recipe's file, the others (and --accelerate_config) to accelerate."""
    import accelerate.commands.launch as launch

    launched = []
    monkeypatch.setattr(launch, "launch_command", launched.append)
    accelerate_yaml = str(REPO / "recipes" / "accelerate" / "ddp.yaml")
    argv = ["--config", str(CONFIG), "--num_processes", "2", "--max_steps", "7",
            "--accelerate_config", accelerate_yaml, "--output_dir", str(tmp_path)]  # fmt: skip
    assert sft.cli(argv, launch=True) == 0
    (args,) = launched
    assert args.config_file == accelerate_yaml and args.num_processes == 2
    assert args.training_script == sft.__file__
    assert args.training_script_args == [
        "--config",
        str(CONFIG),
        "--max_steps",
        "7",
        "--output_dir",
        str(tmp_path),
    ]


def test_a_mixing_weights_count_mismatch_is_one_clear_line(capsys):
    """The recipe's command line turns bad arguments into one line (the old script printed a traceback)."""
    argv = ["--config", str(CONFIG), "--record_sets", "a.jsonl", "b.jsonl", "--mixing_weights", "1"]
    assert sft.cli(argv) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        == "depthlm sft: error: 1 mixing_weights for 2 record_sets; give one weight per set (or none)"
    )


def test_every_render_setting_is_a_recipe_flag_declared_once():
    """DataArguments takes its rendering flags from RenderSettings (all but the processor's grid)."""
    import dataclasses

    from depthlm.training.config import DataArguments, render_settings

    names = {f.name for f in dataclasses.fields(RenderSettings)} - {"grid"}
    assert names <= {f.name for f in dataclasses.fields(DataArguments)}
    script_args, _, _ = sft.make_parser().parse_args_and_config(
        ["--config", str(CONFIG), "--marker_size", "9", "--depth_target", "z", "--crop_width", "1.0", "1.2"]
    )
    settings = render_settings(script_args, grid=28)
    assert (settings.marker_size, settings.depth_target, settings.crop_width) == (9, "z", (1.0, 1.2))
    assert settings.f_uni == 150 and settings.max_pixels == 18816  # from the YAML


@pytest.mark.parametrize("config", ["tiny_cpu.yaml", "qwen2_5_vl_7b_lora.yaml"])
def test_the_ddp_launch_config_leaves_precision_to_the_training_config(config, monkeypatch):
    """ddp.yaml used to force bf16 whatever the training config said (CPU runs autocast to bf16)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args(
        ["--config_file", str(REPO / "recipes" / "accelerate" / "ddp.yaml"), "--num_processes", "2", "x.py"]
    )
    args, *_ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", env["ACCELERATE_MIXED_PRECISION"])
    _, training_args, _ = sft.make_parser().parse_args_and_config(
        ["--config", str(REPO / "recipes" / "configs" / config), "--use_cpu", "true"]
    )
    assert training_args.mixed_precision == ("bf16" if training_args.bf16 else "no")
