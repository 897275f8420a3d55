"""Tiny random-weight Qwen-VL models: they must load and run like the real ones, offline."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.tiny import (
    ARCHS,
    SPECIAL_TOKENS,
    SPECS,
    build_tiny_model,
    chat_template,
    model_config,
    train_tokenizer,
)

QUESTION = "How far is the point marked by the red arrow from the camera?"
ANSWER = "The point is around 3.42 meters away from the camera."


@pytest.fixture(scope="module", params=ARCHS)
def nano_dir(request, tmp_path_factory) -> Path:
    return build_tiny_model(request.param, tmp_path_factory.mktemp(f"nano-{request.param}"), size="nano")


def image_chat(processor, width: int, height: int, seed: int = 0):
    """Processor inputs for one user turn: an image and the depth question."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    return processor(images=[image], text=[text], return_tensors="pt")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_loads_offline_with_auto_classes(nano_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(nano_dir, local_files_only=True)
    processor = AutoProcessor.from_pretrained(nano_dir, local_files_only=True)
    arch = model.config.model_type
    expected = {
        "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
        "qwen3_vl": "Qwen3VLForConditionalGeneration",
    }
    assert type(model).__name__ == expected[arch]
    assert (
        type(processor).__name__
        == {"qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen3_vl": "Qwen3VLProcessor"}[arch]
    )
    tok = processor.tokenizer
    for token in SPECIAL_TOKENS:  # each special token is one id, and the config points at the right ones
        assert tok.convert_tokens_to_ids(token) != tok.unk_token_id
        assert tok.decode([tok.convert_tokens_to_ids(token)]) == token
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert tok.eos_token == "<|im_end|>"
    assert model.config.text_config.vocab_size >= len(tok)
    assert processor.chat_template == chat_template(arch)
    card = (nano_dir / "README.md").read_text()
    assert "Random weights" in card and arch in card and "nano" in card


def test_forward_and_generate_on_image_chat(nano_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(nano_dir, local_files_only=True)
    processor = AutoProcessor.from_pretrained(nano_dir, local_files_only=True)
    grid = processor.image_processor.patch_size * processor.image_processor.merge_size
    inputs = image_chat(processor, 10 * grid, 8 * grid)
    image_id = model.config.image_token_id
    assert int((inputs["input_ids"] == image_id).sum()) == 80  # 10 x 8 merged patches, no resize
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape
    assert torch.isfinite(logits).all()
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert 1 <= len(new) <= 8
    assert isinstance(processor.decode(new, skip_special_tokens=True), str)


def test_same_seed_same_model_other_seed_other_weights(tmp_path):
    a = build_tiny_model("qwen2_5_vl", tmp_path / "a", size="nano", seed=3)
    b = build_tiny_model("qwen2_5_vl", tmp_path / "b", size="nano", seed=3)
    c = build_tiny_model("qwen2_5_vl", tmp_path / "c", size="nano", seed=4)
    assert sha(a / "model.safetensors") == sha(b / "model.safetensors")
    assert sha(a / "model.safetensors") != sha(c / "model.safetensors")
    assert sha(a / "tokenizer.json") == sha(c / "tokenizer.json")


def test_tokenizer_covers_depthlm_prompts_and_answers():
    from depthlm.prompts import TEMPLATES

    tok = train_tokenizer(SPECS["tiny"].bpe_vocab)
    texts = [QUESTION, ANSWER, "<think> x </think>\n\n<answer> 12.07 </answer>"]
    for template in TEMPLATES.values():
        texts += [template.format_question(marker="red arrow", x=5, y=7, width=64, height=48)]
        texts += [template.format_answer(0.5), template.format_answer(123.45)]
    for text in texts:
        ids = tok(text, add_special_tokens=False).input_ids
        assert tok.decode(ids) == text
        if len(text) > 12:  # words, not bare numbers (digits are always single tokens)
            assert len(ids) < len(text.encode()) / 2  # trained merges, not raw bytes
    digits = [tok.decode([i]) for i in tok("3.42", add_special_tokens=False).input_ids]
    assert digits == ["3", ".", "4", "2"]  # Qwen's pre-tokenizer: one token per digit
    assert tok("<|im_start|>assistant\n", add_special_tokens=False).input_ids[0] == tok.convert_tokens_to_ids(
        "<|im_start|>"
    )


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", list(SPECS))
def test_configs_fit_vllm_cpu_constraints(arch, size):
    tok = train_tokenizer(SPECS[size].bpe_vocab)
    text = model_config(arch, SPECS[size], tok).text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    assert head_dim >= 32  # vLLM's CPU attention rejects 16
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2


def test_sizes_and_parameter_counts(tmp_path):
    counts = {}
    for size in SPECS:
        folder = build_tiny_model("qwen2_5_vl", tmp_path / size, size=size)
        counts[size] = sum(v.numel() for v in _tensors(folder / "model.safetensors"))
    assert counts["nano"] < counts["tiny"] < counts["small"]
    assert 0.5e6 < counts["tiny"] < 1.5e6
    assert 8e6 < counts["small"] < 20e6


def _tensors(path: Path):
    from safetensors.torch import load_file

    return load_file(path).values()


def test_trl_swaps_in_its_training_template_for_assistant_only_loss(tiny_model_dir):
    from transformers import AutoProcessor
    from trl.chat_template_utils import get_training_chat_template, is_chat_template_stop_token_trained

    processor = AutoProcessor.from_pretrained(tiny_model_dir, local_files_only=True)
    training = get_training_chat_template(processor)
    assert training is not None and "{% generation %}" in training
    assert is_chat_template_stop_token_trained(processor, chat_template=training)
    messages = [
        {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]},
    ]
    out = processor.apply_chat_template(
        messages, chat_template=training, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = np.asarray(out["input_ids"]).reshape(-1)
    mask = np.asarray(out["assistant_masks"]).reshape(-1).astype(bool)
    # exactly the answer and its end-of-turn token carry loss; the question does not
    assert processor.tokenizer.decode(ids[mask]).strip() == ANSWER + "<|im_end|>"


def test_refuses_to_overwrite_a_folder_that_is_not_a_tiny_model(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DepthLMError, match="not a depthlm tiny model"):
        build_tiny_model("qwen2_5_vl", tmp_path, size="nano")
    assert (tmp_path / "config.json").read_text() == "{}"
    again = build_tiny_model("qwen3_vl", tmp_path / "m", size="nano")
    build_tiny_model("qwen2_5_vl", again, size="nano")  # its own earlier output is replaced
    assert '"qwen2_5_vl"' in (again / "config.json").read_text()


def test_unknown_arch_or_size_is_a_clear_error(tmp_path):
    with pytest.raises(DepthLMError, match="unknown tiny-model architecture 'llava'"):
        build_tiny_model("llava", tmp_path)
    with pytest.raises(DepthLMError, match="unknown tiny-model size 'huge'"):
        build_tiny_model("qwen3_vl", tmp_path, size="huge")


def test_cli_builds_a_model(tmp_path, capsys):
    from depthlm.cli import main

    out = tmp_path / "cli-model"
    assert main(["tiny-model", "--arch", "qwen3_vl", "--size", "nano", "--seed", "1", "--out", str(out)]) == 0
    assert "wrote random-weight nano qwen3_vl model" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file() and (out / "processor_config.json").is_file()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "weights.bin").write_bytes(b"x")
    assert main(["tiny-model", "--arch", "qwen3_vl", "--out", str(tmp_path / "taken")]) == 2
    assert "not a depthlm tiny model" in capsys.readouterr().err
