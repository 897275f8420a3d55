"""The one place models and processors are loaded (training, evaluation, chat, the app).

Rules it enforces, so no caller has to remember them:
- the model class comes from the checkpoint's config (``architectures`` / ``model_type``),
  never from the path string;
- attention is SDPA unless flash-attn is installed (the reference code required flash-attn);
- remote code stays off unless asked for;
- the image processor is the torchvision backend (about 3x faster than PIL on a 1M-pixel
  view: 7.6 vs 23.6 ms); its pixel budget can be set; the Qwen-VL one gets channels-first
  input (:mod:`depthlm.image_processor`: same pixels, about twice as fast on one thread);
- torchvision must import (the Qwen-VL processors need it): scripts/setup.sh makes sure it
  does, and where it does not, loading says so in one line.

``would_resize`` mirrors the Qwen processors' own ``smart_resize`` so the rendering path
can guarantee the processor never rescales an image it rendered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from depthlm.errors import DepthLMError

# model_type (or its text/vision sub-config type) -> family name used across depthlm
FAMILIES = {
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "qwen3_vl": "qwen3_vl",
    "qwen3_vl_moe": "qwen3_vl_moe",
}


# ---------------------------------------------------------------------------- checkpoints


def check_model_path(path: str | Path) -> str:
    """Return ``path`` as a string if it can be a model: a local folder with config.json, or a
    hub id (``owner/name``) when no such local path exists. Otherwise a DepthLMError that says why."""
    text = str(path)
    local = Path(text).expanduser()
    if local.is_file():
        raise DepthLMError(f"{text}: is a file; expected a model folder (with config.json) or a hub model id")
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise DepthLMError(f"{text}: not a model folder (no config.json inside)")
        return str(local)
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise DepthLMError(f"{text}: no such model folder (and not a hub id of the form owner/name)")
    return text


def load_config(path: str | Path, *, trust_remote_code: bool = False, revision: str | None = None):
    """The checkpoint's transformers config, with loading problems turned into one clear line."""
    from transformers import AutoConfig

    name = check_model_path(path)
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError, KeyError) as err:
        where = "" if Path(name).is_dir() else " (no such local folder; tried it as a hub model id)"
        raise DepthLMError(f"{name}: cannot read the model config{where}: {_first_line(err)}") from err


def model_family(config: Any) -> str:
    """``"qwen2_5_vl"``, ``"qwen3_vl"``, ``"qwen2_vl"``, ... (the config's model_type for other models)."""
    model_type = getattr(config, "model_type", None) or ""
    for suffix in ("_text", "_vision"):
        if model_type.endswith(suffix) and model_type[: -len(suffix)] in FAMILIES:
            model_type = model_type[: -len(suffix)]
    return FAMILIES.get(model_type, model_type)


def is_image_text_model(config: Any) -> bool:
    """True when the config describes a vision-language model (as TRL's sft.py decides it)."""
    from transformers import AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    image_text = set(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.values())
    architectures = getattr(config, "architectures", None) or []
    if architectures:
        return any(arch in image_text for arch in architectures)
    return type(config) in AutoModelForImageTextToText._model_mapping


def default_attention() -> str:
    """flash_attention_2 where flash-attn is installed (GPU machines), SDPA everywhere else."""
    from transformers.utils import is_flash_attn_2_available

    return "flash_attention_2" if is_flash_attn_2_available() else "sdpa"


def load_model(
    path: str | Path,
    *,
    dtype: Any = "auto",
    attn_implementation: str | None = None,
    device_map: Any = None,
    trust_remote_code: bool = False,
    **kwargs: Any,
):
    """Load a checkpoint with the model class its config names (image-text-to-text or causal LM)."""
    require_torchvision()  # first: a broken one fails inside transformers' imports otherwise
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    config = load_config(path, trust_remote_code=trust_remote_code, revision=kwargs.get("revision"))
    auto = AutoModelForImageTextToText if is_image_text_model(config) else AutoModelForCausalLM
    try:
        return auto.from_pretrained(
            check_model_path(path),
            config=config,
            dtype=dtype,
            attn_implementation=attn_implementation or default_attention(),
            device_map=device_map,
            trust_remote_code=trust_remote_code,
            **kwargs,
        )
    except (OSError, ValueError) as err:
        raise DepthLMError(f"{path}: cannot load the model weights: {_first_line(err)}") from err


# ---------------------------------------------------------------------------- processors


def require_torchvision() -> None:
    """One clear line where torchvision does not import. The Qwen-VL processors need it (their
    video processors), and so does vLLM. PyPI's only Linux wheel dies at import beside torch's
    CPU build (``operator torchvision::nms does not exist``) until scripts/fix_torchvision.py
    patches it, which scripts/setup.sh does (docs/models.md)."""
    try:
        import torchvision  # noqa: F401
    except Exception as err:  # absent (ImportError) or broken (RuntimeError at import)
        raise DepthLMError(
            f"torchvision cannot be imported ({type(err).__name__}: {_first_line(err)}); the Qwen-VL "
            "processors need it: run scripts/setup.sh (beside torch's CPU build it also runs "
            "scripts/fix_torchvision.py)"
        ) from err


def _processor_class(path: str):
    """The processor class the checkpoint names (processor_config.json), else the one for its model_type."""
    import transformers
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = None
    local = Path(path)
    for file in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        if (local / file).is_file():
            name = json.loads((local / file).read_text(encoding="utf-8")).get("processor_class")
            if name:
                break
    if not name:
        name = PROCESSOR_MAPPING_NAMES.get(model_family(load_config(path)))
    cls = getattr(transformers, name, None) if name else None
    if cls is None:
        raise DepthLMError(f"{path}: no known processor class for this model ({name or 'none named'})")
    return cls


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_processor(path: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None):
    """Load the checkpoint's processor (torchvision image backend) and an optional pixel budget.

    ``min_pixels``/``max_pixels`` replace the saved budget (the processor upscales images below
    ``min_pixels`` and downscales those above ``max_pixels``).
    """
    require_torchvision()
    from transformers import AutoImageProcessor

    from depthlm.image_processor import channels_first

    name = check_model_path(path)
    cls = _processor_class(name)
    budget = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    try:
        processor = cls.from_pretrained(name)
        image_processor = AutoImageProcessor.from_pretrained(name, backend="torchvision", **budget)
    except (OSError, ValueError) as err:
        raise DepthLMError(f"{name}: cannot load the processor: {_first_line(err)}") from err
    processor.image_processor = channels_first(image_processor)
    return processor


def _image_processor(processor: Any) -> Any:
    return getattr(processor, "image_processor", processor)


def processor_grid(processor: Any) -> int:
    """The side multiple the processor resizes images to: patch_size * merge_size (28 Qwen2.5-VL, 32 Qwen3-VL)."""
    ip = _image_processor(processor)
    return int(ip.patch_size) * int(ip.merge_size)


def pixel_budget(processor: Any) -> tuple[int, int]:
    """(min_pixels, max_pixels) as the processor applies them (``size`` shortest_edge/longest_edge)."""
    size = _image_processor(processor).size
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    low, high = get("shortest_edge"), get("longest_edge")
    if low is None or high is None:
        raise DepthLMError(f"processor size {size!r} has no shortest_edge/longest_edge pixel budget")
    return int(low), int(high)


def processed_size(processor: Any, width: int, height: int) -> tuple[int, int]:
    """(width, height) the processor turns a width x height image into (Qwen's ``smart_resize``)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    low, high = pixel_budget(processor)
    try:
        new_h, new_w = smart_resize(
            height, width, factor=processor_grid(processor), min_pixels=low, max_pixels=high
        )
    except ValueError as err:
        raise DepthLMError(f"image of {width}x{height} cannot be processed: {err}") from err
    return new_w, new_h


def would_resize(processor: Any, width: int, height: int) -> bool:
    """True if the processor would rescale a width x height image (sides not multiples of the grid,
    or pixel count outside the budget): rendered images must come out False."""
    return processed_size(processor, width, height) != (width, height)


def visual_tokens(processor: Any, width: int, height: int) -> int:
    """Number of image tokens a width x height image becomes in the language model."""
    new_w, new_h = processed_size(processor, width, height)
    grid = processor_grid(processor)
    return (new_w // grid) * (new_h // grid)
