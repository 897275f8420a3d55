"""The whole path on a laptop CPU: synthetic scenes -> tiny model -> SFT recipe -> vLLM
evaluation -> a table and pictures.

Why one module: ``depthlm demo``, ``notebooks/quickstart.ipynb`` and
``benchmarks/learn_synthetic.py`` run these same steps, so they cannot drift apart. Every
step leaves its result in the run folder and is skipped when that result is already there,
so a killed demo, rerun with the same folder, continues where it stopped (training resumes
from its last checkpoint).

    >>> from depthlm.demo import DemoConfig, run_demo
    >>> result = run_demo(DemoConfig(out="runs/demo"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from depthlm.errors import DepthLMError
from depthlm.tables import markdown_table

SPLITS = {"trained": "train", "held-out": "val"}  # dataset name in the results -> synthetic split

HONEST_NOTE = (
    "A few CPU minutes teach a 1M-parameter random model the queries it was trained on, not depth:\n"
    "on held-out scenes expect it near the constant-median baseline. A real model (Qwen2.5-VL-3B) with\n"
    "the real configs and data is what generalises; this run shows that every step of that path works."
)


# recipes/configs/tiny_cpu.yaml as data (tests/test_demo.py keeps the two equal), so the demo runs
# from an installed package, outside a checkout; the demo writes it into its run folder.
TINY_RECIPE: dict = {
    "model_name_or_path": "runs/tiny-model",
    "dtype": "float32",
    "record_sets": ["runs/synthetic/train.jsonl"],
    "samples_per_epoch": 512,
    "f_uni": 150,
    "template": "plain",
    "crop_width": [1.12, 1.12],
    "crop_height": [0.75, 0.75],
    "min_pixels": 3136,
    "max_pixels": 18816,
    "output_dir": "runs/tiny-sft",
    "max_steps": 200,
    "assistant_only_loss": True,
    "max_length": None,
    "per_device_train_batch_size": 16,
    "learning_rate": 2.0e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 10,
    "weight_decay": 0.0,
    "logging_steps": 10,
    "save_steps": 100,
    "save_total_limit": 2,
    "report_to": ["tensorboard"],
    "seed": 0,
    "bf16": False,
    "use_cpu": True,
    "gradient_checkpointing": False,
    "dataloader_num_workers": 0,
}


def tiny_config(folder: str | os.PathLike) -> Path:
    """Write the tiny CPU recipe config (TINY_RECIPE) as ``folder/tiny_cpu.yaml``; returns its path."""
    import yaml

    path = Path(folder) / "tiny_cpu.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(TINY_RECIPE, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class DemoConfig:
    """What the demo builds, trains and evaluates. Defaults: under 2 minutes on 2 CPU cores."""

    out: str = "runs/demo"
    train_images: int = 64  # one labelled point each: the queries it trains on
    heldout_images: int = 64  # scenes it never saw, one point each
    image_size: tuple[int, int] = (320, 240)
    preset: str = "default"  # synthetic scene preset ("easy": fixed camera height and pitch)
    arch: str = "qwen2_5_vl"  # tiny model architecture (depthlm.tiny)
    max_steps: int = 300
    learning_rate: float = 2e-3
    batch_size: int = 16
    template: str = "plain"
    marker: str = "arrow"
    train_crop: bool = False  # False: train on exactly the views evaluation shows
    backend: str = "vllm"  # evaluation backend: vllm or transformers
    eval_queries: int | None = None  # at most this many queries per set (None: one per image)
    data_dir: str | None = None  # where the records go (default: <out>/data; share it between runs)
    seed: int = 0
    extra_train_args: list[str] = field(default_factory=list)  # more recipe flags (--name value ...)

    @property
    def folder(self) -> Path:
        return Path(self.out)


# ----------------------------------------------------------------------------- steps


def build_data(cfg: DemoConfig, *, progress: bool = True) -> dict[str, Path]:
    """Synthetic record sets, one per entry of SPLITS (the build resumes a killed run itself)."""
    from data_builders import build

    sizes = {"trained": cfg.train_images, "held-out": cfg.heldout_images}
    paths = {}
    for name, split in SPLITS.items():
        out = Path(cfg.data_dir or cfg.folder / "data") / split
        summary = out / "summary.json"
        if not (summary.is_file() and json.loads(summary.read_text()).get("complete")):
            build(
                "synthetic",
                out=out,
                split=split,
                points_per_image=1,
                seed=cfg.seed,
                progress=progress,
                num_images=sizes[name],
                image_size=tuple(cfg.image_size),
                preset=cfg.preset,
                scene_seed=cfg.seed,
            )
        paths[name] = out
    return paths


def build_model(cfg: DemoConfig) -> Path:
    """The random-weight tiny model training starts from."""
    from depthlm.tiny import build_tiny_model

    out = cfg.folder / f"tiny-{cfg.arch}"
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    return build_tiny_model(cfg.arch, out, size="tiny", seed=cfg.seed)


def recipe_flags(cfg: DemoConfig, model_dir: Path, train_data: Path) -> list[str]:
    """The SFT recipe's flags: the tiny CPU config plus the demo's overrides (``depthlm sft FLAGS``)."""
    return [
        "--config",
        str(tiny_config(cfg.folder)),
        "--model_name_or_path",
        str(model_dir),
        "--record_sets",
        str(train_data),
        "--output_dir",
        str(cfg.folder / "sft"),
        "--max_steps",
        str(cfg.max_steps),
        "--learning_rate",
        str(cfg.learning_rate),
        "--per_device_train_batch_size",
        str(cfg.batch_size),
        "--template",
        cfg.template,
        "--marker",
        cfg.marker,
        "--train_crop",
        str(cfg.train_crop).lower(),
        "--samples_per_epoch",
        str(max(cfg.batch_size, cfg.train_images)),
        "--save_steps",
        str(max(50, cfg.max_steps // 4)),
        "--report_to",
        "none",
        "--seed",
        str(cfg.seed),
        *cfg.extra_train_args,
    ]


def train_command(cfg: DemoConfig, model_dir: Path, train_data: Path) -> list[str]:
    """The command a user would type, ``depthlm sft FLAGS`` (run as ``python -m depthlm.cli sft``)."""
    return [sys.executable, "-m", "depthlm.cli", "sft", *recipe_flags(cfg, model_dir, train_data)]


def recipe_arguments(args: list[str]):
    """The SFT recipe's own parse of these flags: (data, training, model) arguments.

    Why: anything that needs the settings training renders with (the notebook's preview, a
    benchmark's workload) takes them from the recipe's parser and
    ``depthlm.training.config.render_settings``, never from re-reading the YAML."""
    from depthlm.recipes import sft

    return sft.make_parser().parse_args_and_config(args)


def trained(folder: Path) -> bool:
    """Whether a finished model is in `folder` (save_outputs writes the weights, then the processor)."""
    return any(folder.glob("*.safetensors")) and (folder / "processor_config.json").is_file()


def train(cfg: DemoConfig, model_dir: Path, train_data: Path, *, echo: bool = True) -> tuple[Path, float]:
    """Fine-tune with the SFT recipe in its own process (a rerun resumes it); returns (model folder, seconds)."""
    out = cfg.folder / "sft"
    timing = out / "demo_train_seconds.json"
    if trained(out):
        return out, json.loads(timing.read_text())["seconds"] if timing.is_file() else 0.0
    cmd = train_command(cfg, model_dir, train_data)
    if echo:
        print("$ " + " ".join(_short(a) for a in cmd), flush=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not trained(out):
        raise DepthLMError(
            f"training failed (exit code {done.returncode}); its output is above. Rerun to resume."
        )
    timing.write_text(json.dumps({"seconds": round(seconds, 1)}) + "\n")
    return out, seconds


def evaluate_models(
    cfg: DemoConfig, model_dir: Path, data: dict[str, Path], *, progress: bool = True
) -> dict[str, dict]:
    """Metrics of the trained model and of the training-median constant on every set."""
    from depthlm.evaluation import evaluate, load_datasets
    from depthlm.inference import make_backend, median_baseline
    from depthlm.settings import resolve_settings

    results = {key: _finished(cfg.folder / "eval" / key) for key in ("median", "model")}
    if all(results.values()):
        return results
    settings = resolve_settings(model_dir)  # what the model was trained with
    sets = load_datasets([f"{name}={path}" for name, path in data.items()])
    baseline = median_baseline(str(data["trained"]), settings)
    results["median"] = evaluate(
        baseline, sets, cfg.folder / "eval" / "median", max_queries=cfg.eval_queries, progress=False
    )
    backend = make_backend(cfg.backend, str(model_dir), settings)
    try:
        results["model"] = evaluate(
            backend, sets, cfg.folder / "eval" / "model", max_queries=cfg.eval_queries, progress=progress
        )
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()
    return results


def _finished(folder: Path) -> dict | None:
    """The metrics of a complete evaluation in `folder` (so a rerun need not start vLLM)."""
    path = folder / "metrics.json"
    if path.is_file():
        metrics = json.loads(path.read_text())
        if metrics.get("complete"):
            return metrics
    return None


def check_folder(cfg: DemoConfig) -> None:
    """A run folder holds one demo: refuse to mix results of different settings."""
    path = cfg.folder / "demo_config.json"
    wanted = _config_dict(cfg)
    wanted.pop("out")
    if path.is_file():
        found = json.loads(path.read_text())
        changed = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        if changed:
            raise DepthLMError(
                f"{cfg.folder} holds a demo run with other settings ({', '.join(changed)} differ); "
                "use another --out or delete the folder"
            )
    cfg.folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wanted, indent=2) + "\n")


# ----------------------------------------------------------------------------- report


def table(results: dict[str, dict]) -> str:
    """Markdown: delta1 / AbsRel per set for the trained model and the baseline."""
    names = list(SPLITS)
    head = ["", *(f"{n} {m}" for n in names for m in ("delta1", "AbsRel")), "parse failures"]
    labels = {"model": "tiny model after SFT", "median": "constant (training median)"}
    rows = []
    for key in ("model", "median"):
        per = results[key]["datasets"]
        cells = [table_number(per.get(n, {}).get(m)) for n in names for m in ("delta1", "abs_rel")]
        fails = sum(round(per[n]["parse_failure_rate"] * per[n]["n"]) for n in names if n in per)
        rows.append([labels[key], *cells, fails])
    return markdown_table(head, rows, align="l" + "r" * (len(head) - 1))


def sample_figure(eval_dir: Path, path: Path, per_set: int = 4) -> Path:
    """The rendered queries the model was asked (marker and all), with truth and answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from depthlm.evaluation import load_results, rerender

    run, _, rows = load_results(eval_dir)
    rows = [r for r in rows if "skipped" not in r]
    picked = []
    for name in SPLITS:
        picked += [r for r in rows if r["dataset"] == name][:per_set]
    cols = per_set
    fig, axes = plt.subplots(len(SPLITS), cols, figsize=(3.2 * cols, 2.9 * len(SPLITS)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, name in enumerate(SPLITS):
        for j, row in enumerate([r for r in picked if r["dataset"] == name]):
            query = rerender(run, row)
            ax = axes[i][j]
            ax.imshow(query.image)
            said = "unparsed" if row.get("pred") is None else f"{row['pred']:.2f} m"
            ax.set_title(f"{name}: true {row['gt']:.2f} m\nmodel: {said}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def pictures(cfg: DemoConfig) -> list[Path]:
    """Collect the pictures worth looking at into one folder."""
    import shutil

    folder = cfg.folder / "pictures"
    folder.mkdir(parents=True, exist_ok=True)
    out = [sample_figure(cfg.folder / "eval" / "model", folder / "samples.png")]
    for plot in sorted((cfg.folder / "eval" / "model" / "plots").glob("*.png")):
        out.append(Path(shutil.copy(plot, folder / plot.name)))
    return out


def run_demo(cfg: DemoConfig, *, progress: bool = True) -> dict:
    """Every step; returns the figures and writes report.md and results.json in cfg.out."""
    start = time.perf_counter()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # the engine's start-up log drowns the steps
    check_folder(cfg)
    print(f"[1/5] synthetic scenes -> {cfg.folder / 'data'}", flush=True)
    data = build_data(cfg, progress=progress)
    print(f"[2/5] tiny random {cfg.arch} model -> {cfg.folder}", flush=True)
    base = build_model(cfg)
    print(f"[3/5] SFT: {cfg.max_steps} steps with depthlm sft -> {cfg.folder / 'sft'}", flush=True)
    model_dir, train_seconds = train(cfg, base, data["trained"])
    print(
        f"[4/5] evaluation ({cfg.backend}) on trained and held-out queries -> {cfg.folder / 'eval'}",
        flush=True,
    )
    results = evaluate_models(cfg, model_dir, data, progress=progress)
    print(f"[5/5] pictures -> {cfg.folder / 'pictures'}", flush=True)
    figures = pictures(cfg)
    summary = {
        "config": _config_dict(cfg),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "metrics": {key: {n: res["datasets"].get(n, {}) for n in SPLITS} for key, res in results.items()},
        "pictures": [str(p) for p in figures],
    }
    report = f"{table(results)}\n\n{HONEST_NOTE}\n"
    (cfg.folder / "report.md").write_text(report)
    (cfg.folder / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {**summary, "table": table(results)}


def _config_dict(cfg: DemoConfig) -> dict:
    """The config as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(asdict(cfg)))


def table_number(value) -> str:
    """A metric in a results table: 3 decimals, '–' when absent."""
    if value is None:
        return "–"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:.1e}"  # one runaway answer can do that to AbsRel


def _short(arg: str) -> str:
    try:
        return os.path.relpath(arg) if os.path.isabs(arg) else arg
    except ValueError:
        return arg
