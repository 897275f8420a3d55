"""The one place models and processors are loaded (training, evaluation, chat, the app).

Rules it enforces, so no caller has to remember them:
- the model class comes from the checkpoint's config (``architectures`` / ``model_type``),
  never from the path string;
- attention is SDPA unless flash-attn is installed (the reference code required flash-attn);
- no code from model folders: trust_remote_code=False everywhere, folders naming custom code
  (`auto_map`) refused in one line, hub ids only from the local cache (never the network);
- a LoRA run (adapter_config.json, no config.json) is a model: base + adapter, merged;
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


ADAPTER_CONFIG = "adapter_config.json"  # a PEFT (LoRA) run: weights relative to a base model
# Files in which transformers looks for `auto_map` (custom model, tokenizer or processor code).
CODE_MAP_FILES = (
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    ADAPTER_CONFIG,
)


def model_folder(path: str | Path) -> str:
    """The local folder of a model or LoRA adapter, checked; never touches the network.

    A hub id is accepted only when it is already in the local Hugging Face cache (it resolves
    to that snapshot), so a typo or an offline machine fails in milliseconds, saying how to
    get the model. A folder that names custom code (``auto_map``) is refused: depthlm never
    runs Python from a model folder (trust_remote_code stays off, and nothing prompts)."""
    text = str(path)
    local = Path(text).expanduser()
    if local.is_file():
        raise DepthLMError(f"{text}: is a file; expected a model folder (with config.json)")
    if not local.is_dir():
        local = Path(_cached_snapshot(text))
    for name in CODE_MAP_FILES:
        file = local / name
        if file.is_file():
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise DepthLMError(f"{file}: not valid JSON ({_first_line(err)})") from None
            if _names_code(data):
                raise DepthLMError(
                    f"{text}: refusing to load: {name} names custom code (auto_map); depthlm never runs "
                    "Python from a model folder (trust_remote_code is off)"
                )
    if not (local / "config.json").is_file() and not (local / ADAPTER_CONFIG).is_file():
        raise DepthLMError(f"{text}: not a model folder (no config.json, nor a LoRA adapter_config.json)")
    return str(local)


def _names_code(data: Any) -> bool:
    """Whether a JSON value holds an ``auto_map`` at any depth (processor_config.json nests the
    image processor's, which AutoImageProcessor would act on)."""
    if isinstance(data, dict):
        return "auto_map" in data or any(_names_code(v) for v in data.values())
    return isinstance(data, list) and any(_names_code(v) for v in data)


def _cached_snapshot(text: str) -> str:
    """A hub id's snapshot in the local Hugging Face cache, or a DepthLMError saying how to get it."""
    how = (
        f"depthlm loads models from local folders only; download it first, e.g. "
        f"`hf download {text} --local-dir models/{text.rsplit('/', 1)[-1]}`, and pass that folder"
    )
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise DepthLMError(f"{text}: no such model folder ({how})")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(text, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        raise DepthLMError(f"{text}: not a local folder, and not in the Hugging Face cache ({how})") from None


def adapter_base(folder: str) -> str | None:
    """The base model folder of a LoRA adapter folder (from adapter_config.json), else None."""
    path = Path(folder)
    if (path / "config.json").is_file() or not (path / ADAPTER_CONFIG).is_file():
        return None
    try:
        base = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise DepthLMError(
            f"{path / ADAPTER_CONFIG}: not a valid adapter config ({_first_line(err)})"
        ) from None
    if not isinstance(base, str) or not base:
        raise DepthLMError(f"{path / ADAPTER_CONFIG}: names no base model (base_model_name_or_path)")
    if not Path(base).expanduser().is_absolute() and not Path(base).expanduser().is_dir():
        beside = path.parent / base  # a run saved with a relative base path, read from elsewhere
        base = str(beside) if beside.is_dir() else base
    try:
        resolved = model_folder(base)
    except DepthLMError as err:
        raise DepthLMError(f"{folder}: LoRA adapter whose base model cannot be loaded: {err}") from None
    if adapter_base(resolved) is not None:
        raise DepthLMError(f"{folder}: LoRA adapter on another adapter ({base}): merge the base first")
    return resolved


def check_model_path(path: str | Path) -> str:
    """The local folder of a FULL model (what vLLM and other engines load), checked.

    A LoRA adapter folder is refused with the way out: ``depthlm merge`` writes a full model,
    and the transformers backend loads adapters directly (:func:`load_model`)."""
    folder = model_folder(path)
    if adapter_base(folder) is not None:
        raise DepthLMError(
            f"{path}: a LoRA adapter folder (adapter_config.json, no config.json): this engine loads "
            f"full models; run `depthlm merge {path} --out MERGED` and use MERGED, or use the "
            "transformers backend, which loads the base model with the adapter"
        )
    return folder


def load_config(path: str | Path, *, trust_remote_code: bool = False, revision: str | None = None):
    """The checkpoint's transformers config (a LoRA adapter's: its base model's), with loading
    problems turned into one clear line."""
    from transformers import AutoConfig

    _refuse_remote_code(trust_remote_code)
    folder = model_folder(path)
    name = adapter_base(folder) or folder
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=False, revision=revision)
    except (OSError, ValueError, KeyError) as err:
        raise DepthLMError(f"{name}: cannot read the model config: {_first_line(err)}") from err


def _refuse_remote_code(trust_remote_code: bool) -> None:
    if trust_remote_code:
        raise DepthLMError(
            "trust_remote_code is not supported: depthlm never runs Python from a model folder "
            "(use a model whose architecture transformers ships)"
        )


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
    """Load a checkpoint with the model class its config names (image-text-to-text or causal LM).

    A LoRA adapter folder (a LoRA run's output: adapter_config.json, no config.json) loads as
    its base model with the adapter merged in (peft), so it is a model wherever a folder is."""
    _refuse_remote_code(trust_remote_code)
    folder = model_folder(path)  # before importing torch/transformers: a bad path fails at once
    base = adapter_base(folder)
    require_torchvision()  # before transformers: a broken one fails inside its imports otherwise
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    config = load_config(folder, revision=kwargs.get("revision"))
    auto = AutoModelForImageTextToText if is_image_text_model(config) else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(
            base or folder,
            config=config,
            dtype=dtype,
            attn_implementation=attn_implementation or default_attention(),
            device_map=device_map,
            trust_remote_code=False,
            **kwargs,
        )
    except (OSError, ValueError) as err:
        raise DepthLMError(f"{base or path}: cannot load the model weights: {_first_line(err)}") from err
    if base is None:
        return model
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, folder).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise DepthLMError(f"{path}: cannot apply the LoRA adapter to {base}: {_first_line(err)}") from err


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


def _processor_folder(path: str | Path) -> str:
    """Where a model's processor is: its folder, or a LoRA adapter's base when the adapter
    folder saved none."""
    folder = model_folder(path)
    base = adapter_base(folder)
    if base is not None and not (Path(folder) / "tokenizer_config.json").is_file():
        return base
    return folder


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_processor(path: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None):
    """Load the checkpoint's processor (torchvision image backend) and an optional pixel budget.

    ``min_pixels``/``max_pixels`` replace the saved budget (the processor upscales images below
    ``min_pixels`` and downscales those above ``max_pixels``).
    """
    name = _processor_folder(path)  # before importing torch/transformers: a bad path fails at once
    require_torchvision()
    from transformers import AutoImageProcessor

    from depthlm.image_processor import channels_first

    cls = _processor_class(name)
    budget = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    try:
        processor = cls.from_pretrained(name, trust_remote_code=False)
        image_processor = AutoImageProcessor.from_pretrained(
            name, backend="torchvision", trust_remote_code=False, **budget
        )
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
