"""``depthlm merge ADAPTER --out DIR``: a LoRA run as a full model folder.

A LoRA recipe writes an adapter folder (adapter_config.json + adapter weights, no
config.json). depthlm's transformers loading takes such a folder directly (base named in
adapter_config.json + the adapter), but vLLM and other engines load full models: this writes
the base with the adapter merged in (peft's ``merge_and_unload``), the processor, and the
render settings the run was trained with, so DIR is a model folder like any other.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from depthlm.errors import DepthLMError
from depthlm.settings import SETTINGS_FILE, RenderSettings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("adapter", help="LoRA adapter folder (adapter_config.json naming its base model)")
    p.add_argument("--out", required=True, help="folder to write the merged model to (new or empty)")
    p.add_argument(
        "--dtype",
        default="auto",
        help="weights dtype of the merged model: auto (the base's), float32, bfloat16, float16",
    )


def merge(adapter: str | Path, out: str | Path, dtype: str = "auto") -> Path:
    """Write base + adapter as a full model folder at `out`; returns `out`."""
    from depthlm.models import adapter_base, load_model, load_processor, model_folder

    folder = model_folder(adapter)
    base = adapter_base(folder)
    if base is None:
        raise DepthLMError(
            f"{adapter}: not a LoRA adapter folder (it has a config.json: already a full model)"
        )
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DepthLMError(f"{out}: exists and is not an empty folder; choose a new --out")
    settings = RenderSettings.load(folder) or RenderSettings.load(base)
    if settings is None:
        raise DepthLMError(
            f"{adapter}: records no render settings ({SETTINGS_FILE}), nor does its base {base}: "
            "a merged model without them would be evaluated with guessed settings"
        )
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise DepthLMError(f"--dtype {dtype!r}: expected auto, float32, bfloat16 or float16")
    model = load_model(folder, dtype=dtype)
    processor = load_processor(folder)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    settings.save(tmp)
    if out.exists():
        out.rmdir()
    tmp.rename(out)  # a half-written folder never looks like a model
    return out


def run(args: argparse.Namespace) -> int:
    out = merge(args.adapter, args.out, args.dtype)
    print(f"merged {args.adapter} into its base model: {out} (a full model folder: eval, ask, app, vLLM)")
    return 0
