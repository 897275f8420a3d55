"""benchmarks/gpu_check.py: the real architecture configs, and its CPU dry run (so it cannot rot)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)

# The keys docs/gpu.md reads; the real run and the dry run fill the same dict.
KEYS = {
    "dry_run", "arch", "device", "versions", "compat", "errors", "params", "train", "generate",
    "answer_only_labels", "train_samples_per_s", "train_steps_per_s", "mfu", "peak_memory_gb",
    "visual_tokens_per_sample", "text_tokens_per_sample", "data_wait_fraction_by_workers",
    "generate_queries_per_s",
}  # fmt: skip


@pytest.mark.parametrize(
    ("arch", "params", "vision"), [("3b", 3_754_622_976, 668_684_288), ("7b", 8_292_166_656, 676_550_144)]
)
def test_kept_configs_have_the_published_model_sizes(arch, params, vision):
    """3.75B and 8.29B parameters, as the hub's Qwen2.5-VL-3B/7B-Instruct safetensors hold."""
    import torch
    from transformers import AutoModelForImageTextToText

    from depthlm.tiny import SPECS, train_tokenizer

    tokenizer = train_tokenizer(SPECS["nano"].bpe_vocab)
    config = gpu_check.real_config(arch, tokenizer)
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == params
    assert sum(p.numel() for p in model.model.visual.parameters()) == vision


def test_model_flops_count_the_language_model_the_vision_tower_and_attention():
    shape = {"text_params_no_embed": 10, "vision_params": 3, "lm_head": 2, "layers": 2, "hidden": 5}
    # 6 * 12 * (4 + 6) + 6 * 3 * 4 * 4 + 12 * 2 * 5 * 10**2
    assert gpu_check.sample_flops(shape, visual=4, text=6) == 720 + 288 + 12_000


@pytest.mark.slow
def test_dry_run_trains_and_generates_through_the_recipe_and_reports_every_key(tmp_path):
    out = tmp_path / "check"
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result == json.loads((out / "gpu_check.json").read_text())
    assert KEYS <= set(result), KEYS - set(result)
    assert result["errors"] == [] and result["dry_run"] is True
    assert result["answer_only_labels"]["ok"], result["answer_only_labels"]
    assert result["train_samples_per_s"] > 0 and result["visual_tokens_per_sample"] == 24
    assert all(r["status"] == "ok" and r["samples_per_s"] > 0 for r in result["train"])
    assert {r["workers"] for r in result["train"]} == {0, 1}
    assert set(result["generate_queries_per_s"]) == {"1", "2"}
    assert all(v > 0 for v in result["generate_queries_per_s"].values())
    assert "build_model" in (out / "gpu_check.log").read_text()
