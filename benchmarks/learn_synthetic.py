"""Does the supervision path teach a tiny model? Trains random tiny Qwen-VL models from scratch
on synthetic scenes with the SFT recipe, on the CPU, and evaluates them with vLLM.

- memorize: 64 fixed queries (one point on each of 64 scenes, the very views evaluation shows);
  the model must answer them with delta1 >= 0.9 and no parse failure within 5 minutes. This
  proves rendering, template, answer-only labels, generation and parsing end to end.
- memorize --tasks all (or a list): one tiny model trained on every task (depthlm.tasks), balanced:
  one record set per task of --queries-per-task synthetic scenes (16 labelled points, masks, a
  dense depth map and a second view each: ``depthlm build synthetic --depth-map --second-view``)
  whose own task mix is that task alone (``--record_set_tasks``), trained by the SFT recipe with
  ``--pre_rendered`` (each scene asked once), so every task has exactly --queries-per-task
  queries; the queries trained are re-rendered exactly as the recipe rendered them
  (build_dataset + the renderer, epoch 0), answered by the model (vLLM, or --backend
  transformers) and scored per task (delta1, or accuracy for ``closer``), next to a per-task
  constant (the median truth, or the commoner letter).
- generalize: many scenes with random crops, scored on held-out scenes against the constant
  training median, with the paper's ablations as variants: marker vs text coordinates
  (`text_coords`), unified vs native focal length (`native_focal`: images fed at their
  captured focal length), the `easy` scene preset (fixed camera height and pitch), and an
  arrow three times the default size (`big_marker`, 21 px at f_uni 150).

    python benchmarks/learn_synthetic.py                                   # memorize + marker (~10 min)
    python benchmarks/learn_synthetic.py --parts memorize                  # ~2 min
    python benchmarks/learn_synthetic.py --parts memorize --tasks all      # every task, one model (docs/tasks.md)
    python benchmarks/learn_synthetic.py --variants marker text_coords native_focal easy
    python benchmarks/learn_synthetic.py --parts generalize --arch qwen3_vl --steps 4000 \
        --variants marker text_coords native_focal --out runs/learn_q3long   # ablations, ~30 min

The runs reuse what their folders hold (rerun to continue); the last stdout line is one JSON
object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from depthlm.demo import DemoConfig, build_data, build_model, evaluate_models, train, trained
from depthlm.markers import marker_size
from depthlm.records import Record, read_records, write_records

F_UNI = 150.0  # recipes/configs/tiny_cpu.yaml
VARIANTS = ("marker", "text_coords", "native_focal", "easy", "qwen3", "big_marker")
BIG_MARKER = 3 * marker_size(F_UNI)  # 21 px instead of 7: longer than one 16-px Qwen3-VL patch


def native_focal(path: Path, out: Path) -> Path:
    """The records as if every image were already at f_uni: rendering then leaves the image at
    its captured scale (the 'native focal length' ablation). Depths become ray distances first,
    with the true intrinsics, so the labels stay exact."""
    if (out / "records.jsonl").is_file():
        return out
    rows = []
    for r in read_records(path):
        k = r.intrinsics
        intr = replace(k, fx=F_UNI, fy=F_UNI)
        rows.append(Record(r.image, intr, r.points, r.depths_as("ray"), "ray", r.dataset, r.split, r.id))
    out.mkdir(parents=True, exist_ok=True)
    write_records(out / "records.jsonl", rows)
    return out


def run(cfg: DemoConfig, *, native: bool = False) -> dict:
    """One training + evaluation run; returns its figures."""
    start = time.perf_counter()
    data = build_data(cfg, progress=True)
    if native:
        data = {name: native_focal(p, cfg.folder / "native" / name) for name, p in data.items()}
    base = build_model(cfg)
    fresh = not trained(cfg.folder / "sft")
    model_dir, train_seconds = train(cfg, base, data["trained"])
    results = evaluate_models(cfg, model_dir, data)
    out = {"train_seconds": round(train_seconds, 1), "steps": cfg.max_steps, "fresh": fresh}
    for key, res in results.items():
        for name, m in res["datasets"].items():
            out[f"{key}.{name}.delta1"] = round(m["delta1"], 4)
            out[f"{key}.{name}.abs_rel"] = round(m["abs_rel"], 4)
            out[f"{key}.{name}.parse_failures"] = round(m["parse_failure_rate"] * m["n"])
            out[f"{key}.{name}.n"] = m["n"]
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps({"run": str(cfg.folder), **out}), flush=True)
    return out


def memorize(args) -> dict:
    cfg = DemoConfig(
        out=str(args.out / "memorize"),
        train_images=64,
        heldout_images=16,
        max_steps=args.memorize_steps,
        train_crop=False,
        seed=args.seed,
    )
    r = run(cfg)
    return {
        "trained_delta1": r["model.trained.delta1"],
        "trained_parse_failures": r["model.trained.parse_failures"],
        "constant_trained_delta1": r["median.trained.delta1"],
        "train_seconds": r["train_seconds"],
        "steps": cfg.max_steps,
        "queries": r["model.trained.n"],
        "within_5_minutes": r["train_seconds"] <= 300,
    }


def memorize_tasks(args) -> dict:
    """One multi-task model memorising the queries it trained on; one score per task
    (depthlm.task_demo: the same run as ``depthlm demo --tasks``)."""
    from depthlm.task_demo import run_task_demo, task_names

    cfg = DemoConfig(
        out=str(args.out / "memorize-tasks"),
        max_steps=args.memorize_task_steps,
        seed=args.seed,
        backend=args.backend,
    )
    result = run_task_demo(
        cfg, task_names(args.tasks), args.queries_per_task, checkpoint=args.checkpoint, progress=False
    )
    result.pop("answers")
    return result


def generalize(args, variant: str) -> dict:
    cfg = DemoConfig(
        out=str(args.out / f"generalize-{variant}"),
        train_images=args.train_images,
        heldout_images=args.heldout_images,
        max_steps=args.steps,
        train_crop=True,
        eval_queries=args.heldout_images,
        seed=args.seed,
        preset="easy" if variant == "easy" else "default",
        template="text_coords" if variant == "text_coords" else "plain",
        arch="qwen3_vl" if variant == "qwen3" else args.arch,
        data_dir=str(args.out / ("data-easy" if variant == "easy" else "data")),
        extra_train_args=["--marker_size", str(BIG_MARKER)] if variant == "big_marker" else [],
    )
    r = run(cfg, native=variant == "native_focal")
    return {
        "trained_delta1": r["model.held-out.delta1"],
        "constant_delta1": r["median.held-out.delta1"],
        "trained_abs_rel": r["model.held-out.abs_rel"],
        "constant_abs_rel": r["median.held-out.abs_rel"],
        "parse_failures": r["model.held-out.parse_failures"],
        "train_set_delta1": r["model.trained.delta1"],
        "train_seconds": r["train_seconds"],
        "steps": cfg.max_steps,
        "train_images": cfg.train_images,
        "heldout_queries": r["model.held-out.n"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/learn_synthetic"))
    p.add_argument(
        "--parts", nargs="+", default=["memorize", "generalize"], choices=["memorize", "generalize"]
    )
    p.add_argument("--variants", nargs="+", default=["marker"], choices=VARIANTS)
    p.add_argument("--memorize-steps", type=int, default=300)
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--heldout-images", type=int, default=200)
    p.add_argument("--steps", type=int, default=1500, help="generalize: SFT steps per variant")
    p.add_argument(
        "--arch",
        default="qwen2_5_vl",
        choices=["qwen2_5_vl", "qwen3_vl"],
        help="generalize: tiny model family",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help="memorize: a multi-task model over these depthlm.tasks names ('all': every task)",
    )
    p.add_argument(
        "--queries-per-task", type=int, default=8, help="memorize --tasks: scenes (and queries) per task"
    )
    p.add_argument("--memorize-task-steps", type=int, default=400, help="memorize --tasks: SFT steps")
    p.add_argument(
        "--checkpoint", type=int, help="memorize --tasks: score checkpoint-N of the run instead of training"
    )
    p.add_argument("--backend", default="vllm", choices=["vllm", "transformers"], help="memorize --tasks")
    args = p.parse_args()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    figures: dict = {"cpu_count": os.cpu_count(), "load_average_at_start": round(os.getloadavg()[0], 2)}
    if "memorize" in args.parts and args.tasks:
        figures["memorize"] = m = memorize_tasks(args)
        for name, d in m["detail"].items():
            print(
                f"memorize[{name}]: {d['metric']} {m[name]} on {d['n']} trained queries "
                f"(constant {d['constant']}, parse failures {d['parse_failure_rate']})",
                flush=True,
            )
        print(f"memorize: {m['steps']} steps in {m['train_seconds']} s, one model", flush=True)
    elif "memorize" in args.parts:
        figures["memorize"] = memorize(args)
        m = figures["memorize"]
        print(
            f"memorize: delta1 {m['trained_delta1']:.3f} on {m['queries']} trained queries "
            f"({m['trained_parse_failures']} parse failures) after {m['steps']} steps in {m['train_seconds']:.0f} s; "
            f"constant {m['constant_trained_delta1']:.3f}",
            flush=True,
        )
    if "generalize" in args.parts:
        figures["generalize"] = {}
        for variant in args.variants:
            g = generalize(args, variant)
            figures["generalize"][variant] = g
            print(
                f"generalize[{variant}]: held-out delta1 {g['trained_delta1']:.3f} vs constant "
                f"{g['constant_delta1']:.3f} (AbsRel {g['trained_abs_rel']:.3f} vs {g['constant_abs_rel']:.3f}), "
                f"{g['steps']} steps in {g['train_seconds']:.0f} s",
                flush=True,
            )
        first = figures["generalize"][args.variants[0]]
        figures["generalize"]["trained_delta1"] = first["trained_delta1"]
        figures["generalize"]["constant_delta1"] = first["constant_delta1"]
    print(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
