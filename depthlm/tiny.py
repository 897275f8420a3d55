"""Tiny random-weight Qwen-VL models, built offline.

Why: tests, the demo and dry runs of training/evaluation recipes need a real
Qwen2.5-VL / Qwen3-VL model folder (same classes, same processor, same chat
template, loadable by transformers and vLLM) but nothing can be downloaded here
and a 3B model is far too slow on a CPU. A tiny model has the real architecture
with a few hidden units, random weights and a byte-level BPE tokenizer trained in
a fraction of a second on a small corpus of the words depthlm uses.

The chat templates are TRL's own copies of the Qwen templates, so TRL recognises
them and swaps in its training template for ``assistant_only_loss``.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from depthlm.errors import DepthLMError

ARCHS = ("qwen2_5_vl", "qwen3_vl")
SIZES = ("nano", "tiny", "small")
MARKER = "depthlm-tiny-model"  # written into README.md; lets a rebuild overwrite its own folder

# Qwen's special tokens, in the order the real tokenizers number them after the text vocabulary.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


@dataclass(frozen=True)
class TinySpec:
    """Widths and depths of one size. Head dims stay >= 32: vLLM's CPU attention rejects 16."""

    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate: int
    vision_hidden: int
    vision_depth: int
    vision_heads: int
    vision_intermediate: int
    bpe_vocab: int  # target size of the trained BPE vocabulary (a small corpus may stop short of it)


SPECS: dict[str, TinySpec] = {
    "nano": TinySpec(64, 1, 2, 1, 128, 64, 1, 2, 128, 384),
    "tiny": TinySpec(128, 2, 4, 2, 384, 64, 2, 2, 256, 512),
    "small": TinySpec(384, 4, 6, 2, 1536, 192, 4, 6, 768, 1024),
}

# What depthlm's prompts and answers say, plus the chat-template words around them.
CORPUS = """\
You are a helpful assistant.
system user assistant
Given this image, how far is the point pointed by the red arrow from the camera? Output the thinking process \
in <think> </think> and final answer (the meter number only, without the unit) in <answer> </answer> tags.
<think> The point is around 3.42 meters away from the camera. </think>

<answer> 3.42 </answer>
How far is the point marked by the red arrow from the camera?
How far is the point marked by the red dot from the camera? Answer with the distance in meters, a number only.
The point is around 12.07 meters away from the camera.
In this 640x480 image, how far is the pixel at column 320, row 240 (origin at the top-left corner) from the camera?
How far away is this point? Which point is closer to the camera? Which one is farther?
What is the distance between the camera and the object marked by the green circle, cross or box?
The distance is about 0.85 meters. It is 1.5 metres away. About 25 m. Depth in meters, metres, m.
Picture 1: Picture 2: Video 1: the image shows a room, a street, a table, a wall, a car, a door, a chair.
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 0.00 0.25 0.50 0.75 1.00 2.50 4.99 9.87 50.00 99.99
"""


def _corpus() -> list[str]:
    """The embedded corpus plus every registered prompt template filled in, so the tokenizer
    merges the exact words depthlm asks and answers with."""
    lines = CORPUS.splitlines()
    try:
        from depthlm.prompts import TEMPLATES
    except ImportError:  # prompts are optional for building a model
        TEMPLATES = {}
    rng = random.Random(0)
    for template in TEMPLATES.values():
        for _ in range(4):
            metres = rng.uniform(0.3, 80.0)
            x, y = rng.randrange(640), rng.randrange(480)
            question = template.format_question(marker="red arrow", x=x, y=y, width=640, height=480)
            lines += [question, template.format_answer(metres)]
            if template.system:
                lines.append(template.system)
    return lines * 4


def train_tokenizer(vocab_size: int):
    """A Qwen2Tokenizer whose byte-level BPE is trained here, with Qwen's pre-tokenizer and special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    # tokenizers 0.23 wants merges as (left, right) tuples
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    vocab = dict(state["vocab"])
    for token in SPECIAL_TOKENS:  # after the text vocabulary, in Qwen's order
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS),
        model_max_length=32768,
    )
    return tokenizer


def chat_template(arch: str) -> str:
    """TRL's stored copy of the model's own chat template (identity-compared by TRL)."""
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / f"{arch}.jinja"
    return path.read_text(encoding="utf-8")


def _padded(n: int, multiple: int = 64) -> int:
    return -(-n // multiple) * multiple


def model_config(arch: str, spec: TinySpec, tokenizer):
    """The transformers config for ``arch`` at ``spec``, with token ids taken from ``tokenizer``."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = spec.text_hidden // spec.text_heads
    text = dict(
        vocab_size=_padded(len(tokenizer)),
        hidden_size=spec.text_hidden,
        intermediate_size=spec.text_intermediate,
        num_hidden_layers=spec.text_layers,
        num_attention_heads=spec.text_heads,
        num_key_value_heads=spec.text_kv_heads,
        max_position_embeddings=32768,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    tokens = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    # M-RoPE splits head_dim/2 rotary frequencies between (time, height, width); the sections must sum to it.
    half = head_dim // 2
    if arch == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        section = [half // 4, half * 3 // 8, half - half // 4 - half * 3 // 8]  # 16/24/24 at head_dim 128
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": section}
        vision = dict(
            depth=spec.vision_depth,
            hidden_size=spec.vision_hidden,
            intermediate_size=spec.vision_intermediate,
            num_heads=spec.vision_heads,
            out_hidden_size=spec.text_hidden,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=list(range(spec.vision_depth - 1, spec.vision_depth, 2))
            if spec.vision_depth < 4
            else list(range(1, spec.vision_depth, 2)),
        )
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens)
    if arch == "qwen3_vl":
        from transformers import Qwen3VLConfig

        section = [half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16]  # 24/20/20 at head_dim 128
        text["head_dim"] = head_dim
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": section,
            "mrope_interleaved": True,
        }
        vision = dict(
            depth=spec.vision_depth,
            hidden_size=spec.vision_hidden,
            intermediate_size=spec.vision_intermediate,
            num_heads=spec.vision_heads,
            out_hidden_size=spec.text_hidden,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=256,
            deepstack_visual_indexes=[spec.vision_depth // 2],
        )
        return Qwen3VLConfig(text_config=text, vision_config=vision, **tokens)
    raise DepthLMError(f"unknown tiny-model architecture {arch!r}; known: {', '.join(ARCHS)}")


def build_processor(arch: str, tokenizer):
    """The real model's processor: same class, patch/merge sizes, normalisation and pixel budget.

    The image processor is the PIL one; depthlm.models.load_processor loads the torchvision
    backend, so what is saved here only records the settings.
    """
    from depthlm.models import require_torchvision

    require_torchvision()  # the video processors need it
    from transformers import Qwen2_5_VLProcessor, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if arch == "qwen2_5_vl":
        processor_class = Qwen2_5_VLProcessor
        image = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 1280, patch_size=14)
    else:
        processor_class = Qwen3VLProcessor
        half = [0.5, 0.5, 0.5]
        size = {"shortest_edge": 65536, "longest_edge": 16777216}
        image = Qwen2VLImageProcessorPil(size=size, patch_size=16, image_mean=half, image_std=half)
    parts = {"image_processor": image, "tokenizer": tokenizer, "chat_template": chat_template(arch)}
    if arch == "qwen2_5_vl":
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        video = Qwen2VLVideoProcessor(min_pixels=128 * 28 * 28, max_pixels=28 * 28 * 768, patch_size=14)
    else:
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        video = Qwen3VLVideoProcessor()
    return processor_class(video_processor=video, **parts)


def _prepare(out_dir: Path) -> None:
    """Refuse to write over a folder that is not an earlier tiny model (it could be a real checkpoint)."""
    if out_dir.is_file():
        raise DepthLMError(f"{out_dir}: is a file, expected a folder for the tiny model")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        readme = out_dir / "README.md"
        if not (readme.is_file() and MARKER in readme.read_text(encoding="utf-8", errors="replace")):
            raise DepthLMError(
                f"{out_dir}: folder is not empty and is not a depthlm tiny model; not overwriting"
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _model_card(arch: str, size: str, seed: int, spec: TinySpec, n_params: int, vocab: int) -> str:
    return f"""---
tags: [{MARKER}, random-weights, test-model]
---
# Tiny random-weight {arch} model ({MARKER})

**Random weights: this model knows nothing.** Built offline by `depthlm tiny-model --arch {arch} --size {size} --seed {seed}`
for tests, the demo and dry runs of training/evaluation before renting GPUs.

- architecture: {arch} (real transformers/vLLM model classes, processor and TRL chat template)
- size: {size}, {n_params:,} parameters, seed {seed}
- tokenizer: byte-level BPE with {vocab} tokens trained on a small corpus of depthlm prompts
- spec: `{json.dumps(asdict(spec))}`
"""


def build_tiny_model(arch: str, out_dir: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Build, save and return a tiny random-weight ``arch`` model folder at ``out_dir``.

    Deterministic: the same (arch, size, seed) gives the same weights and tokenizer. The folder
    loads with ``AutoModelForImageTextToText``/``AutoProcessor`` and ``vllm.LLM`` without network.
    """
    if arch not in ARCHS:
        raise DepthLMError(f"unknown tiny-model architecture {arch!r}; known: {', '.join(ARCHS)}")
    if size not in SIZES:
        raise DepthLMError(f"unknown tiny-model size {size!r}; known: {', '.join(SIZES)}")
    from depthlm.models import require_torchvision

    require_torchvision()  # first: a broken one fails inside transformers' imports otherwise
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    out_dir = Path(out_dir)
    spec = SPECS[size]
    tokenizer = train_tokenizer(spec.bpe_vocab)
    config = model_config(arch, spec, tokenizer)
    processor = build_processor(arch, tokenizer)

    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config = GenerationConfig(
        bos_token_id=eos[1], eos_token_id=eos, pad_token_id=eos[1], do_sample=False
    )
    _prepare(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    card = _model_card(arch, size, seed, spec, n_params, len(tokenizer))
    (out_dir / "README.md").write_text(card, encoding="utf-8")
    return out_dir
