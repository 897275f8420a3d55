"""depthlm.models: the one place models and processors are loaded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.models import (
    default_attention,
    load_config,
    load_model,
    load_processor,
    model_family,
    processed_size,
    processor_grid,
    visual_tokens,
    would_resize,
)
from depthlm.tiny import build_tiny_model

HERE = Path(__file__).parent
ROOT = HERE.parent


def random_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def model_dir(request, tiny_model_dir, tiny_qwen3_dir) -> Path:
    return {"qwen2_5_vl": tiny_model_dir, "qwen3_vl": tiny_qwen3_dir}[request.param]


# ---------------------------------------------------------------------------- models


def test_model_class_comes_from_the_config_not_the_path(tmp_path, tiny_model_dir):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    misleading = tmp_path / "Qwen3-VL-8B-text-only-causal-lm"  # the name says one thing, config.json another
    shutil.copytree(tiny_model_dir, misleading)
    assert type(load_model(misleading)).__name__ == "Qwen2_5_VLForConditionalGeneration"

    causal = tmp_path / "Qwen2.5-VL-3B-Instruct"
    config = Qwen2Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=1
    )
    Qwen2ForCausalLM(config).save_pretrained(causal)
    assert type(load_model(causal)).__name__ == "Qwen2ForCausalLM"


def test_load_model_defaults(model_dir):
    model = load_model(model_dir)
    assert (
        model.config._attn_implementation == "sdpa" == default_attention()
    )  # flash-attn is not installed here
    assert next(model.parameters()).dtype == torch.float32  # "auto": the checkpoint's dtype
    assert not model.training
    half = load_model(model_dir, dtype=torch.bfloat16, attn_implementation="eager")
    assert next(half.parameters()).dtype == torch.bfloat16
    assert half.config._attn_implementation == "eager"


def test_model_family(tiny_model_dir, tiny_qwen3_dir):
    assert model_family(load_config(tiny_model_dir)) == "qwen2_5_vl"
    assert model_family(load_config(tiny_qwen3_dir)) == "qwen3_vl"
    assert model_family(load_config(tiny_qwen3_dir).text_config) == "qwen3_vl"
    from transformers import LlamaConfig

    assert model_family(LlamaConfig()) == "llama"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "not a model folder (no config.json"),
        (lambda p: (p / "weights.bin").write_bytes(b"x") and p / "weights.bin", "is a file"),
        (lambda p: p / "missing" / "model", "no such model folder"),
        (lambda p: "nobody-here/no-such-model", "not a local folder, and not in the Hugging Face cache"),
    ],
    ids=["empty-folder", "file", "missing-path", "hub-id-offline"],
)
def test_not_a_model_is_one_clear_error(tmp_path, make, message):
    target = make(tmp_path)
    with pytest.raises(DepthLMError, match=re.escape(message)) as info:
        load_model(target)
    assert str(target) in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(DepthLMError, match=re.escape(message)):
        load_processor(target)


def test_a_hub_id_fails_fast_without_the_network_and_says_how_to_get_it(monkeypatch, tmp_path):
    """Offline, transformers spent 37 s retrying the hub before failing."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    with pytest.raises(DepthLMError) as info:
        load_model("Qwen/Qwen2.5-VL-3B-Instruct")
    assert time.perf_counter() - start < 2
    assert "not a local folder" in str(info.value) and "hf download Qwen/Qwen2.5-VL-3B-Instruct" in str(
        info.value
    )


EVIL = """
import pathlib
pathlib.Path(__file__).with_name("RAN").write_text("the folder's Python ran")
"""


def evil_folder(tiny_model_dir: Path, tmp_path: Path, where: str) -> Path:
    """A copy of a real model folder whose `where` (file, or file:key for a nested part) names
    custom code in `evil.py`."""
    file, _, key = where.partition(":")
    folder = tmp_path / f"evil-{file.split('.')[0]}-{key}"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "evil.py").write_text(EVIL)
    data = json.loads((folder / file).read_text())
    part = data[key] if key else data
    part["auto_map"] = {
        "AutoConfig": "evil.EvilConfig",
        "AutoImageProcessor": "evil.EvilProcessor",
        "AutoTokenizer": ["evil.EvilTokenizer", None],
    }
    (folder / file).write_text(json.dumps(data))
    return folder


@pytest.mark.parametrize(
    "where",
    [
        "config.json",
        "processor_config.json",
        "processor_config.json:image_processor",
        "tokenizer_config.json",
    ],
)
def test_a_folder_naming_custom_code_is_refused_in_one_line_and_never_runs(tiny_model_dir, tmp_path, where):
    folder = evil_folder(tiny_model_dir, tmp_path, where)
    for load in (load_model, load_processor, load_config):
        with pytest.raises(DepthLMError, match="auto_map") as info:
            load(folder)
        assert "\n" not in str(info.value) and where.split(":")[0] in str(info.value)
    with pytest.raises(DepthLMError, match="trust_remote_code"):
        load_model(tiny_model_dir, trust_remote_code=True)
    assert not (folder / "RAN").exists()


def test_answering_yes_to_a_prompt_runs_nothing(tiny_model_dir, tmp_path):
    """`echo y | depthlm ask --model FOLDER` ran the folder's Python: now nothing prompts."""
    folder = evil_folder(tiny_model_dir, tmp_path, "processor_config.json:image_processor")
    random_image(64, 48).save(tmp_path / "photo.png")
    cmd = [sys.executable, "-m", "depthlm.cli", "ask", "--model", str(folder), "--backend", "transformers"]
    cmd += ["--image", str(tmp_path / "photo.png"), "--point", "10,10", "--fov", "60"]
    out = subprocess.run(cmd, input="y\n", capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "auto_map" in out.stderr and "Traceback" not in out.stderr
    assert not (folder / "RAN").exists()


def test_broken_weights_are_one_clear_error(tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(DepthLMError, match="cannot load the model weights"):
        load_model(broken)


# ---------------------------------------------------------------------------- processors


def test_processor_is_the_fast_backend_with_the_budget_asked_for(model_dir):
    processor = load_processor(model_dir)
    assert not type(processor.image_processor).__name__.endswith("Pil")  # torchvision works here
    assert processor.chat_template is not None and hasattr(processor, "video_processor")
    saved = json.loads((model_dir / "processor_config.json").read_text())["image_processor"]["size"]
    assert processor.image_processor.size.longest_edge == saved["longest_edge"]
    small = load_processor(model_dir, min_pixels=2 * 32 * 32, max_pixels=40 * 32 * 32)
    assert small.image_processor.size.shortest_edge == 2 * 32 * 32
    assert small.image_processor.size.longest_edge == 40 * 32 * 32


def test_fast_and_pil_image_processors_give_the_same_pixels_for_rendered_views(tiny_model_dir):
    import numpy as np
    from PIL import Image
    from transformers import AutoImageProcessor

    fast = load_processor(tiny_model_dir).image_processor
    pil = AutoImageProcessor.from_pretrained(tiny_model_dir, backend="pil")
    rng = np.random.default_rng(0)
    for w, h in ((28 * 12, 28 * 9), (28 * 41, 28 * 31)):  # grid-aligned, as depthlm renders them
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        a = fast(images=[im], return_tensors="pt")
        b = pil(images=[im], return_tensors="pt")
        assert a["image_grid_thw"].tolist() == b["image_grid_thw"].tolist()
        assert float((a["pixel_values"] - b["pixel_values"]).abs().max()) < 1e-6


def test_grid_is_patch_times_merge(tiny_model_dir, tiny_qwen3_dir):
    assert processor_grid(load_processor(tiny_model_dir)) == 28
    assert processor_grid(load_processor(tiny_qwen3_dir)) == 32


@pytest.mark.parametrize(
    "width, height",
    [(280, 224), (333, 250), (640, 480), (1400, 1000), (50, 40), (28 * 37, 28 * 3)],
)
def test_resize_prediction_matches_the_real_processor(model_dir, width, height):
    """would_resize / processed_size / visual_tokens against what the processor actually does."""
    processor = load_processor(model_dir, max_pixels=600 * 1024)
    image_processor = processor.image_processor
    grid_thw = image_processor(random_image(width, height), return_tensors="pt")["image_grid_thw"][0].tolist()
    patch, merge = image_processor.patch_size, image_processor.merge_size
    actual = (grid_thw[2] * patch, grid_thw[1] * patch)
    assert processed_size(processor, width, height) == actual
    assert would_resize(processor, width, height) == (actual != (width, height))
    assert visual_tokens(processor, width, height) == grid_thw[1] * grid_thw[2] // merge**2
    prompt = "<|vision_start|><|image_pad|><|vision_end|>How far?"
    ids = processor(images=[random_image(width, height)], text=[prompt], return_tensors="pt")["input_ids"]
    assert int((ids == processor.image_token_id).sum()) == visual_tokens(processor, width, height)


def test_grid_aligned_images_within_budget_are_not_resized(model_dir):
    processor = load_processor(model_dir, min_pixels=4 * 32 * 32, max_pixels=100 * 32 * 32)
    grid = processor_grid(processor)
    assert not would_resize(processor, 10 * grid, 8 * grid)
    assert would_resize(processor, 10 * grid + 1, 8 * grid)  # not a grid multiple
    assert would_resize(processor, 20 * grid, 20 * grid)  # above max_pixels
    assert would_resize(processor, grid, grid)  # below min_pixels
    with pytest.raises(DepthLMError, match="cannot be processed"):
        would_resize(processor, 201 * grid, grid)  # Qwen refuses aspect ratios above 200


def test_pil_and_torchvision_backends_agree_on_unresized_images(model_dir):
    """Why the backend choice is harmless for rendered images: vLLM may use the torchvision one."""
    from transformers import AutoImageProcessor

    pil = load_processor(model_dir).image_processor
    fast = AutoImageProcessor.from_pretrained(model_dir, backend="torchvision")
    grid = pil.patch_size * pil.merge_size
    image = random_image(10 * grid, 8 * grid)
    a, b = pil(image, return_tensors="pt"), fast(image, return_tensors="pt")
    assert torch.equal(a["image_grid_thw"], b["image_grid_thw"])
    assert torch.allclose(a["pixel_values"], b["pixel_values"], atol=1e-5)


def test_forward_and_generate_through_the_loaders(model_dir):
    processor, model = load_processor(model_dir), load_model(model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How far is it?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    grid = processor_grid(processor)
    inputs = processor(images=[random_image(9 * grid, 7 * grid)], text=[text], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


NO_TORCHVISION = """
import sys
if sys.argv[2] == "absent":
    sys.modules["torchvision"] = None  # as if not installed
from depthlm.errors import DepthLMError
from depthlm.models import load_processor
try:
    load_processor(sys.argv[1])
except DepthLMError as err:
    print(err)
"""


@pytest.mark.parametrize("state", ["absent", "broken"])
def test_a_missing_or_broken_torchvision_is_one_clear_line(tmp_path, tiny_model_dir, state):
    """broken: PyPI's wheel beside torch+cpu before scripts/fix_torchvision.py (setup.sh runs it),
    simulated by a package on PYTHONPATH that raises what it raises."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if state == "broken":
        fake = tmp_path / "fake" / "torchvision"
        fake.mkdir(parents=True)
        (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
        env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-c", NO_TORCHVISION, str(tiny_model_dir), state],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    line = run.stdout.strip()
    assert line.startswith("torchvision cannot be imported") and "scripts/setup.sh" in line
    assert len(line.splitlines()) == 1
    if state == "broken":
        assert "operator torchvision::nms does not exist" in line


# ---------------------------------------------------------------------------- vLLM


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl"])
def test_vllm_greedy_output_equals_transformers(tmp_path, arch):
    pytest.importorskip("vllm")
    model = build_tiny_model(arch, tmp_path / arch, size="nano")
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, str(HERE / "vllm_parity.py"), str(model)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(
        f"{arch}: subprocess {time.perf_counter() - start:.1f} s, "
        + json.dumps({k: v for k, v in result.items() if k.endswith("_s")})
    )
    assert all(len(ids) > 0 for ids in result["vllm"])
    assert result["vllm"] == result["hf"]


def test_processor_takes_channels_first_pixels_and_still_gives_the_stock_output(
    tiny_model_dir, tiny_qwen3_dir, tmp_path
):
    """depthlm.image_processor: PIL images are made contiguous before normalising (half the
    time on one thread). Same pixel_values as the stock class, saved and pickled as it."""
    import pickle

    from transformers import AutoImageProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor as Stock

    for model in (tiny_model_dir, tiny_qwen3_dir):
        ours = load_processor(model).image_processor
        stock = AutoImageProcessor.from_pretrained(model, backend="torchvision")
        assert type(stock) is Stock and type(ours) is not Stock and isinstance(ours, Stock)
        grid = ours.patch_size * ours.merge_size
        image = random_image(11 * grid, 7 * grid, seed=4)
        assert ours.process_image(image).is_contiguous() and not stock.process_image(image).is_contiguous()
        a, b = (
            ours(images=[image, image.rotate(90, expand=True)]),
            stock(images=[image, image.rotate(90, expand=True)]),
        )
        assert torch.equal(a["pixel_values"], b["pixel_values"])
        assert torch.equal(a["image_grid_thw"], b["image_grid_thw"])
        # a checkpoint saved with it names the stock class and loads as it
        ours.save_pretrained(tmp_path / model.name)
        saved = json.loads((tmp_path / model.name / "preprocessor_config.json").read_text())
        assert saved["image_processor_type"] == "Qwen2VLImageProcessor"
        assert type(AutoImageProcessor.from_pretrained(tmp_path / model.name, backend="torchvision")) is Stock
        copy = pickle.loads(pickle.dumps(ours))  # DataLoader workers under spawn pickle the collator
        assert torch.equal(copy(images=[image])["pixel_values"], stock(images=[image])["pixel_values"])
