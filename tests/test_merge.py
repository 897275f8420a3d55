"""A LoRA run is a model everywhere: load (base + adapter), refuse for vLLM with the way out,
``depthlm merge`` to a full folder that loads and generates the same answers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics
from depthlm.render import render
from depthlm.settings import SETTINGS_FILE, RenderSettings

SETTINGS = RenderSettings(f_uni=150, template="plain", max_pixels=64 * 28 * 28)


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter trained a few steps with peft on the tiny model, saved as a recipe does
    (adapter + render settings; the processor saved or not)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    ids = torch.randint(0, 200, (2, 24))
    losses = []
    for _ in range(6):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]  # it learned something: the adapter changes the model
    out = tmp_path_factory.mktemp("lora-run")
    model.save_pretrained(out)
    SETTINGS.save(out)
    assert not (out / "config.json").exists() and (out / "adapter_config.json").is_file()
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tiny_model_dir
    )
    model.eval()
    return out, model, ids


def logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_adapter_folder_loads_as_base_plus_adapter(lora_run, tiny_model_dir):
    from depthlm.models import load_config, load_model, load_processor

    folder, peft_model, ids = lora_run
    loaded = load_model(folder, dtype=torch.float32)
    torch.testing.assert_close(logits(loaded, ids), logits(peft_model, ids), rtol=1e-4, atol=1e-4)
    base = load_model(tiny_model_dir, dtype=torch.float32)
    assert not torch.allclose(logits(base, ids), logits(loaded, ids), atol=1e-3)
    assert load_config(folder).model_type == "qwen2_5_vl"
    assert load_processor(folder).tokenizer("hi")["input_ids"]  # the base's processor


def test_vllm_refuses_an_adapter_with_the_way_out(lora_run):
    from depthlm.inference import VLLMBackend

    with pytest.raises(DepthLMError, match=r"depthlm merge .* --out"):
        VLLMBackend(str(lora_run[0]), SETTINGS)


def test_merge_writes_a_full_model_that_answers_like_the_adapter(lora_run, tmp_path):
    from depthlm.cli import main
    from depthlm.inference import TransformersBackend
    from depthlm.models import check_model_path, load_model

    folder, peft_model, ids = lora_run
    out = tmp_path / "merged"
    assert main(["merge", str(folder), "--out", str(out)]) == 0
    assert check_model_path(out) == str(out)  # a full model folder: vLLM takes it
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert RenderSettings.load(out) == SETTINGS and (out / SETTINGS_FILE).is_file()
    merged = load_model(out, dtype=torch.float32)
    torch.testing.assert_close(logits(merged, ids), logits(peft_model, ids), rtol=1e-4, atol=1e-4)

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    k = Intrinsics(110.0, 110.0, 63.5, 47.5, 128, 96)
    queries = [render(image, k, (30, 40), SETTINGS), render(image, k, (100, 70), SETTINGS)]
    answers = {}
    for name, model in (("adapter", folder), ("merged", out)):
        backend = TransformersBackend(str(model), SETTINGS, dtype="float32")
        answers[name] = backend.generate(queries, max_tokens=8)
    assert answers["adapter"] == answers["merged"] and all(answers["merged"])

    assert main(["merge", str(folder), "--out", str(out)]) == 2  # not over an existing model


def test_merge_refuses_a_full_model(tiny_model_dir, tmp_path, capsys):
    from depthlm.cli import main

    assert main(["merge", str(tiny_model_dir), "--out", str(tmp_path / "m")]) == 2
    assert "not a LoRA adapter folder" in capsys.readouterr().err


def test_an_adapter_saved_with_a_relative_base_path_loads_from_anywhere(
    lora_run, tiny_model_dir, tmp_path, monkeypatch
):
    """Recipes save base_model_name_or_path as given (often relative to where training ran)."""
    import shutil

    from depthlm.models import adapter_base

    runs = tmp_path / "runs"
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny")
    shutil.copytree(lora_run[0], runs / "lora")
    cfg = json.loads((runs / "lora" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "../models/tiny"  # relative to runs/
    (runs / "lora" / "adapter_config.json").write_text(json.dumps(cfg))
    for cwd in (runs, tmp_path.parent):  # where training ran, and anywhere else
        monkeypatch.chdir(cwd)
        assert os.path.samefile(adapter_base(str(runs / "lora")), tmp_path / "models" / "tiny")


@pytest.mark.slow
def test_vllm_serves_the_merged_folder_as_transformers_does(lora_run, tmp_path):
    """The merged folder is a model for vLLM too: greedy tokens equal transformers' (float32)."""
    import subprocess
    import sys
    from pathlib import Path

    from depthlm.cli import main

    pytest.importorskip("vllm")
    out = tmp_path / "merged"
    assert main(["merge", str(lora_run[0]), "--out", str(out), "--dtype", "float32"]) == 0
    here = Path(__file__).parent
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    run = subprocess.run(
        [sys.executable, str(here / "vllm_parity.py"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=here.parent,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert all(len(ids) > 0 for ids in result["vllm"]) and result["vllm"] == result["hf"]
