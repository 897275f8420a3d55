"""The GPU check: real-size SFT and generation speed of Qwen2.5-VL-3B (random weights) in one call.

    # on a bare H100/H200 with the repo and the wheel folder (scripts/gpu_wheels.sh), see docs/gpu.md
    python3 benchmarks/gpu_check.py --wheels .whl --out $OUT
    # anywhere, in under a minute on a CPU (the test suite runs it): the same steps, tiny model
    .venv/bin/python benchmarks/gpu_check.py --dry-run --out /tmp/gpu-check

What it does, in order, each step timed and guarded so one failure is reported, not fatal:
1. Builds a random-weight model with the real architecture (benchmarks/configs/qwen2_5_vl_3b.json,
   the public config.json; ``--arch 7b`` for the 7B), the real processor and chat template, and a
   byte-level BPE tokenizer trained offline as ``depthlm tiny-model`` does (its token ids replace
   the config's; the embedding keeps the real vocabulary size).
2. Writes synthetic records (DepthLMBench jsonl + PNGs at fx = fy = 1000, 1600x1200 px), so the
   paper's crops (1000-1400 x 700-1200 px at f_uni 1000) fit.
3. Trains through the real SFT recipe (``depthlm.recipes.sft.make_parser`` / ``build_trainer``,
   bf16, SDPA, answer-only loss): batch 1/4/8 with gradient checkpointing on and off, and 0/4/8
   data-loader workers; per run steps/s, samples/s, visual and text tokens per sample, peak GPU
   memory, MFU and the time the GPU waited for batches. Out-of-memory runs are recorded as such.
4. Greedy generation with the transformers backend (the eval path) on the same views, batch 1/8/32:
   queries/s. vLLM is not measured: its wheels cannot travel to that machine (docs/gpu.md).

The last stdout line is one JSON object; ``--out`` receives gpu_check.json and gpu_check.log
(the model and records go to ``--work``, a temporary folder by default: the 3B model is 7.5 GB).
``--wheels DIR`` first installs DIR/*.whl with ``pip install --no-index --no-deps --target`` and
reruns the check with them on the path.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a bare checkout (no pip install of depthlm there)
    sys.path.insert(0, str(REPO))

CONFIGS = {
    "3b": REPO / "benchmarks/configs/qwen2_5_vl_3b.json",
    "7b": REPO / "benchmarks/configs/qwen2_5_vl_7b.json",
}
# Dense bf16 peak of the cards the check is meant for (NVIDIA datasheets, SXM parts), for MFU.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
IMAGE_SIZE, FOCAL = (1600, 1200), 1000.0

# (batch, gradient checkpointing, data-loader workers), most wanted first; later runs are dropped
# when the time budget runs out.
TRAIN_PLAN = [(1, True, 8), (4, True, 8), (8, True, 8), (8, False, 8), (4, False, 8), (1, False, 8)]
TRAIN_PLAN += [(4, True, 0), (4, True, 4)]
GENERATE_BATCHES = (1, 8, 32)
DRY_TRAIN_PLAN = [(1, False, 0), (2, False, 0), (2, False, 1)]
DRY_GENERATE_BATCHES = (1, 2)

log = logging.getLogger("gpu_check")


# ---------------------------------------------------------------------------- environment


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    names = (
        "torch",
        "torchvision",
        "transformers",
        "huggingface-hub",
        "trl",
        "datasets",
        "accelerate",
        "peft",
    )
    for name in (*names, "qwen-vl-utils"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"name": "cpu", "cuda": False, "memory_gb": None, "peak_bf16_tflops": None}
    props = torch.cuda.get_device_properties(0)
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in props.name), None)
    return {
        "name": props.name,
        "cuda": True,
        "cuda_version": torch.version.cuda,
        "memory_gb": round(props.total_memory / 2**30, 1),
        "peak_bf16_tflops": peak / 1e12 if peak else None,
    }


def compat_notes(vers: dict[str, str | None]) -> list[str]:
    """What is known not to work with the versions found (checked again by the runs themselves)."""
    from packaging.version import Version

    notes = []
    tf = vers.get("transformers")
    if tf and Version(tf) < Version("5.18"):
        notes.append(
            f"transformers {tf} < 5.18 (pyproject's floor): TRL refuses assistant_only_loss for VLMs "
            "('Assistant-only loss for vision datasets requires transformers>=5.18.0') and the recipe "
            "requires it, so no training run can work; carry transformers (scripts/gpu_wheels.sh does)"
        )
    if vers.get("torchvision") is None:
        notes.append("torchvision missing: the Qwen-VL processors cannot be built")
    return notes


# ---------------------------------------------------------------------------- model and data


def build_model(out: Path, arch: str, dry_run: bool, device: str) -> dict[str, Any]:
    """A random-weight Qwen2.5-VL folder (model, processor, generation config) at ``out``."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from depthlm.tiny import SPECS, build_processor, model_config, train_tokenizer

    tokenizer = train_tokenizer(SPECS["tiny"].bpe_vocab)
    processor = build_processor("qwen2_5_vl", tokenizer)
    if dry_run:
        config = model_config("qwen2_5_vl", SPECS["tiny"], tokenizer)
    else:
        config = real_config(arch, tokenizer)
    dtype = torch.float32 if dry_run else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config = GenerationConfig(
        bos_token_id=eos[1], eos_token_id=eos, pad_token_id=eos[1], do_sample=False
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    info = {
        "params": sum(p.numel() for p in model.parameters()),
        "vision_params": sum(p.numel() for p in model.model.visual.parameters()),
        "flops_shape": _flops_shape(model),
    }
    del model
    _free()
    return info


def real_config(arch: str, tokenizer):
    """The public Qwen2.5-VL config kept in the repo, with ``tokenizer``'s special-token ids."""
    from transformers import Qwen2_5_VLConfig

    raw = json.loads(CONFIGS[arch].read_text(encoding="utf-8"))
    raw.pop("_comment", None)
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in _TOKEN_IDS.items()}
    raw.update(ids, pad_token_id=ids["bos_token_id"])
    return Qwen2_5_VLConfig.from_dict(raw)


_TOKEN_IDS = {
    "bos_token_id": "<|endoftext|>",
    "eos_token_id": "<|im_end|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
    "image_token_id": "<|image_pad|>",
    "video_token_id": "<|video_pad|>",
}


def _flops_shape(model) -> dict[str, int]:
    """Parameter counts and widths the MFU estimate needs."""
    text = model.config.get_text_config()
    lm = model.model.language_model
    embed = lm.embed_tokens.weight.numel()
    return {
        "text_params_no_embed": sum(p.numel() for p in lm.parameters()) - embed,
        "vision_params": sum(p.numel() for p in model.model.visual.parameters()),
        "lm_head": text.hidden_size * text.vocab_size,
        "layers": text.num_hidden_layers,
        "hidden": text.hidden_size,
    }


def write_records(root: Path, n_images: int, size: tuple[int, int], focal: float) -> Path:
    """Synthetic DepthLMBench records: noisy textured PNGs (decoding costs what a photo costs),
    8 labelled points each, fx = fy = ``focal``. Returns the jsonl path."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    w, h = size
    lines = []
    for i in range(n_images):
        base = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC), dtype=np.int16)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        name = f"rgb/{i:04d}.png"
        Image.fromarray(img).save(root / name, compress_level=1)
        pts = np.stack([rng.integers(16, w - 16, 8), rng.integers(16, h - 16, 8)], 1)
        depth = np.round(rng.uniform(0.5, 40.0, 8), 3)
        rec = {
            "image": name,
            "intrinsics": [focal, focal, w / 2, h / 2, w, h],
            "pixel_coords": pts.tolist(),
            "depth": depth.tolist(),
        }
        lines.append(json.dumps(rec) + "\n")
    path = root / "train.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- training


class _Timer:
    """Trainer callback: GPU-synchronised step times and the gaps between steps (batch waits)."""

    def __init__(self, warmup: int) -> None:
        from transformers import TrainerCallback

        self.warmup, self.steps, self.waits = warmup, [], []
        self._begin = self._end = None
        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                _sync()
                now = time.perf_counter()
                if timer._end is not None and state.global_step >= timer.warmup:
                    timer.waits.append(now - timer._end)
                timer._begin = now

            def on_step_end(self, args, state, control, **kw):
                _sync()
                timer._end = time.perf_counter()
                if state.global_step > timer.warmup:
                    timer.steps.append(timer._end - timer._begin)

        self.callback = Callback()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def recipe_args(
    model_dir: Path, records: Path, out: Path, batch: int, ckpt: bool, workers: int, steps: int, dry_run: bool
):
    """The SFT recipe's own parser over the paper's settings (as a YAML config would give them)."""
    from depthlm.recipes.sft import make_parser

    argv = [
        "--model_name_or_path", str(model_dir),
        "--record_sets", str(records),
        "--output_dir", str(out),
        "--samples_per_epoch", str(max(64, batch * (steps + 2))),
        "--f_uni", "1000", "--template", "plain", "--marker", "arrow",
        "--crop_width", "1.0", "1.4", "--crop_height", "0.7", "1.2",
        "--min_pixels", "3136", "--max_pixels", "1705984",
        "--assistant_only_loss", "true",
        "--per_device_train_batch_size", str(batch),
        "--gradient_accumulation_steps", "1",
        "--learning_rate", "1e-5", "--max_grad_norm", "0.1",
        "--max_steps", str(steps),
        "--gradient_checkpointing", str(ckpt).lower(),
        "--dataloader_num_workers", str(workers),
        "--save_strategy", "no", "--report_to", "none", "--logging_steps", "1000",
        "--resume_from_checkpoint", "false",
        "--seed", "0",
    ]  # fmt: skip
    if dry_run:  # the tiny model on a CPU: small views, fp32
        argv += ["--bf16", "false", "--use_cpu", "true", "--dtype", "float32", "--f_uni", "150",
                 "--crop_width", "1.12", "1.12", "--crop_height", "0.75", "0.75", "--max_pixels", "18816"]  # fmt: skip
    else:
        argv += ["--bf16", "true", "--dtype", "bfloat16", "--attn_implementation", "sdpa"]
    script_args, training_args, model_args = make_parser().parse_args_and_config(argv)
    training_args.max_length = None  # as the configs say: a sample is bounded by max_pixels, never cut
    return script_args, training_args, model_args


def answer_only_labels(trainer) -> dict[str, Any]:
    """Whether the collated batch labels the answer tokens only (TRL's assistant_only_loss on a VLM)."""
    batch = next(iter(trainer.get_train_dataloader()))
    labels, ids = batch["labels"], batch["input_ids"]
    tok = trainer.processing_class.tokenizer
    labelled = [tok.decode(ids[i][labels[i] != -100]) for i in range(len(ids))]
    ok = all(t.strip() and "<|vision_start|>" not in t and "How far" not in t for t in labelled)
    return {"ok": ok, "example": labelled[0][:120], "labelled_tokens": int((labels != -100).sum())}


def train_run(
    model_dir, records, out, batch, ckpt, workers, steps, warmup, dry_run, shape, peak, labels=None
):
    """One training run through the recipe; ``labels``: a dict to put ``answer_only_labels`` in."""
    import torch

    from depthlm.recipes.sft import build_trainer

    row: dict[str, Any] = {"batch": batch, "gradient_checkpointing": ckpt, "workers": workers}
    args = recipe_args(model_dir, records, out, batch, ckpt, workers, steps, dry_run)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = build_trainer(*args)
    if labels is not None:
        labels["answer_only_labels"] = answer_only_labels(trainer)
    image_id = trainer.model.config.image_token_id
    counts = {"visual": 0, "text": 0, "samples": 0}
    compute_loss = trainer.compute_loss

    def counting_loss(model, inputs, *a, **k):
        visual = inputs["input_ids"] == image_id
        counts["visual"] += int(visual.sum())
        counts["text"] += int((inputs["attention_mask"].bool() & ~visual).sum())
        counts["samples"] += int(inputs["input_ids"].shape[0])
        return compute_loss(model, inputs, *a, **k)

    trainer.compute_loss = counting_loss
    timer = _Timer(warmup)
    trainer.add_callback(timer.callback)
    try:
        start = time.perf_counter()
        trainer.train()
        row["wall_s"] = round(time.perf_counter() - start, 2)
    except torch.OutOfMemoryError as err:
        row.update(status="out of memory", error=str(err).splitlines()[0][:200])
        return row
    finally:
        row["peak_memory_gb"] = (
            round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None
        )
        del trainer
        _free()
    measured = len(timer.steps)
    step_s = sum(timer.steps) / measured
    wait_s = sum(timer.waits) / max(1, len(timer.waits))
    visual = counts["visual"] / counts["samples"]
    text = counts["text"] / counts["samples"]
    seconds_per_step = step_s + wait_s
    flops = batch * sample_flops(shape, visual, text)
    row.update(
        status="ok",
        measured_steps=measured,
        step_s=round(step_s, 4),
        data_wait_s=round(wait_s, 4),
        data_wait_fraction=round(wait_s / seconds_per_step, 3),
        steps_per_s=round(1 / seconds_per_step, 3),
        samples_per_s=round(batch / seconds_per_step, 2),
        visual_tokens_per_sample=round(visual, 1),
        text_tokens_per_sample=round(text, 1),
        tflops_per_step=round(flops / 1e12, 1),
        mfu=round(flops / seconds_per_step / peak, 3) if peak else None,
    )
    return row


def sample_flops(shape: dict[str, int], visual: float, text: float) -> float:
    """Training model FLOPs of one sample (forward + backward, no recomputation counted):
    6 N T for the language model and lm_head over its T tokens, 6 N P for the vision tower over
    its P = 4 x visual patches, and 12 L d T^2 for the language model's attention."""
    tokens = visual + text
    llm = 6 * (shape["text_params_no_embed"] + shape["lm_head"]) * tokens
    vit = 6 * shape["vision_params"] * visual * 4
    attention = 12 * shape["layers"] * shape["hidden"] * tokens**2
    return llm + vit + attention


# ---------------------------------------------------------------------------- generation


def generate_runs(model_dir: Path, records: Path, batches, dry_run: bool, deadline: float) -> list[dict]:
    import numpy as np
    import torch

    from depthlm.inference import make_backend
    from depthlm.records import read_records
    from depthlm.render import render_record
    from depthlm.settings import RenderSettings

    settings = RenderSettings(f_uni=150.0, max_pixels=18816) if dry_run else RenderSettings(f_uni=1000.0)
    recs = read_records(records)
    need = max(batches) * 2
    queries = [
        render_record(recs[i % len(recs)], i % len(recs[i % len(recs)]), settings) for i in range(need)
    ]
    backend = make_backend(
        "transformers", str(model_dir), settings, dtype="float32" if dry_run else "bfloat16", batch_size=1
    )
    rows = []
    for batch in batches:
        if time.perf_counter() > deadline:
            rows.append({"batch": batch, "status": "skipped: time budget"})
            continue
        backend.batch_size = batch
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        try:
            backend.generate(queries[:batch])  # warm-up
            _sync()
            n = batch * 2
            start = time.perf_counter()
            backend.generate(queries[:n])
            _sync()
            took = time.perf_counter() - start
        except torch.OutOfMemoryError as err:
            rows.append({"batch": batch, "status": "out of memory", "error": str(err).splitlines()[0][:200]})
            _free()
            continue
        rows.append(
            {
                "batch": batch,
                "status": "ok",
                "queries": n,
                "queries_per_s": round(n / took, 2),
                "new_tokens_per_query": round(float(np.mean(backend.last_token_counts)), 1),
                "image_px": list(queries[0].image.size),
                "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                if torch.cuda.is_available()
                else None,
            }
        )
    del backend
    _free()
    return rows


# ---------------------------------------------------------------------------- driver


@contextlib.contextmanager
def step(result: dict, name: str):
    """Time a step; a failure is written into the result with its first line, and the check goes on."""
    start = time.perf_counter()
    log.info("== %s", name)
    try:
        yield
    except Exception as err:  # noqa: BLE001 - the check reports every failure and carries on
        line = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        result["errors"].append({"step": name, "error": line[:300]})
        log.error("%s failed: %s\n%s", name, line, traceback.format_exc())
    finally:
        result["timings_s"][name] = round(time.perf_counter() - start, 2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    started = time.perf_counter()
    deadline = started + args.budget_s
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    vers = versions()
    dev = device_info()
    result: dict[str, Any] = {
        "dry_run": args.dry_run,
        "arch": "tiny" if args.dry_run else f"qwen2_5_vl_{args.arch}",
        "device": dev,
        "versions": vers,
        "compat": compat_notes(vers),
        "errors": [],
        "timings_s": {},
    }
    if not args.dry_run and not dev["cuda"]:
        raise SystemExit("no CUDA device: run with --dry-run on a CPU")
    device = "cuda" if dev["cuda"] else "cpu"
    peak = dev["peak_bf16_tflops"] * 1e12 if dev["peak_bf16_tflops"] else None
    model_dir = work / "model"
    info: dict[str, Any] = {}
    with step(result, "build_model"):
        info = build_model(model_dir, args.arch, args.dry_run, device)
        result["params"] = info["params"]
        result["vision_params"] = info["vision_params"]
    records = None
    with step(result, "write_records"):
        size = (320, 240) if args.dry_run else IMAGE_SIZE
        records = write_records(
            work / "records", 8 if args.dry_run else 32, size, 100.0 if args.dry_run else FOCAL
        )
    plan = DRY_TRAIN_PLAN if args.dry_run else TRAIN_PLAN
    steps, warmup = (2, 1) if args.dry_run else (args.steps, 3)
    result["train"] = []
    if info and records:
        for batch, ckpt, workers in plan:
            if time.perf_counter() > deadline - (0 if args.dry_run else 120):  # generation's share
                result["train"].append({"batch": batch, "gradient_checkpointing": ckpt, "workers": workers,
                                        "status": "skipped: time budget"})  # fmt: skip
                continue
            with step(result, f"train_b{batch}_gc{int(ckpt)}_w{workers}"):
                row = train_run(
                    model_dir, records, work / "sft", batch, ckpt, workers, steps + warmup, warmup,
                    args.dry_run, info["flops_shape"], peak, labels=result if not result["train"] else None,
                )  # fmt: skip
                result["train"].append(row)
                log.info("%s", json.dumps(row))
    result["generate"] = []
    if info and records:
        with step(result, "generate"):
            batches = DRY_GENERATE_BATCHES if args.dry_run else GENERATE_BATCHES
            result["generate"] = generate_runs(model_dir, records, batches, args.dry_run, deadline)
    ok_train = [r for r in result["train"] if r.get("status") == "ok"]
    best = max(ok_train, key=lambda r: r["samples_per_s"], default={})
    gens = {str(r["batch"]): r.get("queries_per_s") for r in result["generate"]}
    peaks = [r.get("peak_memory_gb") for r in result["train"] + result["generate"] if r.get("peak_memory_gb")]
    result.update(
        train_samples_per_s=best.get("samples_per_s"),
        train_steps_per_s=best.get("steps_per_s"),
        train_best={k: best.get(k) for k in ("batch", "gradient_checkpointing", "workers")} if best else None,
        mfu=best.get("mfu"),
        visual_tokens_per_sample=best.get("visual_tokens_per_sample"),
        text_tokens_per_sample=best.get("text_tokens_per_sample"),
        data_wait_fraction_by_workers={
            str(r["workers"]): r["data_wait_fraction"]
            for r in ok_train
            if r["batch"] == (2 if args.dry_run else 4) and r["gradient_checkpointing"] == (not args.dry_run)
        },
        peak_memory_gb=max(peaks) if peaks else None,
        generate_queries_per_s=gens,
        total_s=round(time.perf_counter() - started, 1),
        torch_threads=torch.get_num_threads(),
    )
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", required=True, help="folder for gpu_check.json, gpu_check.log and work files"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny model on the CPU: the same steps in < 1 min"
    )
    parser.add_argument("--arch", choices=sorted(CONFIGS), default="3b")
    parser.add_argument(
        "--steps", type=int, default=8, help="measured training steps per run (after 3 warm-up)"
    )
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop starting new runs after this")
    parser.add_argument("--work", help="folder for the model and records (default: a new temporary folder)")
    parser.add_argument(
        "--wheels", help="install DIR/*.whl (--no-index --no-deps --target) and rerun with them"
    )
    args = parser.parse_args(argv)
    if args.wheels:
        return with_wheels(Path(args.wheels), argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "gpu_check.log", mode="w")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=[handler, logging.StreamHandler(sys.stderr)],
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = run(args)
    text = json.dumps(result)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(text)
    return 0


def with_wheels(folder: Path, argv: list[str]) -> int:
    """Install the carried wheels into a fresh target folder and rerun this check with them first
    on the path (and the repo, for depthlm itself: nothing is installed there)."""
    wheels = sorted(str(w) for w in folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"{folder}: no wheels (make them with scripts/gpu_wheels.sh)")
    target = Path(tempfile.mkdtemp(prefix="gpu_check_site_"))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    subprocess.run([*pip, "--no-cache-dir", "--target", str(target), *wheels], check=True)
    path = [str(target), str(REPO), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    rest, skip = [], False
    for arg in argv:  # drop --wheels DIR / --wheels=DIR
        if skip:
            skip = False
        elif arg == "--wheels":
            skip = True
        elif not arg.startswith("--wheels="):
            rest.append(arg)
    return subprocess.run([sys.executable, str(Path(__file__).resolve()), *rest], env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
