"""Every task, one tiny model: the multi-task memorisation check (``depthlm demo --tasks all``).

The same steps as the depth demo (depthlm.demo: synthetic scenes, a random tiny model, the SFT
recipe, vLLM), balanced over tasks: one synthetic record set per task, each set's own task mix
being that task alone (``--record_set_tasks``), pre-rendered so each scene is asked once -- so
every task has exactly ``queries_per_task`` queries. The queries scored are the ones trained:
re-rendered by the recipe's own ``build_dataset`` and seeds, and checked equal (words and pixels)
to the rows the recipe saved when it trained. Each task is scored by its own metric (delta1, or
accuracy for ``closer``) next to a per-task constant answer. ``benchmarks/learn_synthetic.py
--parts memorize --tasks all`` is this function with its figures as JSON.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from depthlm.demo import DemoConfig, build_model, recipe_arguments, recipe_flags, table_number, train
from depthlm.errors import DepthLMError
from depthlm.tables import markdown_table

# One focal length, so every view has one size and a CPU batch's vision input takes few shapes
# (oneDNN compiles the patch convolution once per input shape).
TASK_FOCAL = 300.0
TASK_STEPS = 400  # SFT steps of the task demo (the depth demo's 300 are too few for eight tasks)


def task_names(spec: str | list[str] | None) -> list[str]:
    """'all', 'depth,closer' or a list -> registry names, checked (one line for an unknown name)."""
    from depthlm import tasks as registry

    items = spec if isinstance(spec, list) else [p.strip() for p in (spec or "all").split(",") if p.strip()]
    names = registry.names() if items in (["all"], []) else items
    for name in names:
        registry.get(name)
    if len(set(names)) != len(names):
        raise DepthLMError(f"tasks: a task is named twice: {', '.join(names)}")
    return names


def task_config(cfg: DemoConfig, names: list[str], queries_per_task: int) -> DemoConfig:
    """The demo config of a task run: one record set per task, asked by that task alone."""
    sets = [str(record_set(cfg, name)) for name in names]
    total = queries_per_task * len(names)
    return replace(
        cfg,
        train_images=total,  # = samples_per_epoch: one pass, each scene once
        batch_size=min(cfg.batch_size, total),  # (the epoch is never shorter than one batch)
        train_crop=False,
        # the later --record_sets replaces the demo's single set (argparse: the last one wins)
        extra_train_args=[
            *cfg.extra_train_args,
            "--record_sets",
            *sets,
            "--record_set_tasks",
            *names,
            "--pre_rendered",
            "true",
            "--pre_rendered_dir",  # the rows the recipe trained on, compared with those scored
            str(cfg.folder / "trained_rows"),
        ],
    )


def record_set(cfg: DemoConfig, name: str) -> Path:
    return Path(cfg.data_dir or cfg.folder / "data") / name


def build_task_sets(
    cfg: DemoConfig, names: list[str], queries_per_task: int, *, progress: bool = False
) -> None:
    """One synthetic set per task (different scenes in each): 16 labelled points, masks, a dense
    depth map and a second view per scene (``depthlm build synthetic --depth-map --second-view``)."""
    from data_builders import build

    for k, name in enumerate(names):
        out = record_set(cfg, name)
        if (out / "summary.json").is_file():
            continue
        build(
            "synthetic",
            out=out,
            split="train",
            points_per_image=16,
            seed=cfg.seed,
            progress=progress,
            num_images=queries_per_task,
            image_size=tuple(cfg.image_size),
            focal_range=(TASK_FOCAL, TASK_FOCAL),
            scene_seed=cfg.seed * 1000 + k,
            depth_map=True,
            second_view=True,
        )


def run_task_demo(
    cfg: DemoConfig,
    names: list[str],
    queries_per_task: int = 8,
    *,
    checkpoint: int | None = None,
    progress: bool = True,
) -> dict:
    """Build, train (or take ``checkpoint``-N of the run), answer the trained queries and score
    them per task. Returns {task: score, "detail": {task: {metric, n, constant, parse_failure_rate}},
    "queries", "steps", "train_seconds", "seconds", "within_10_minutes", "all_at_least_0.9",
    "answers": [(query, text)]}."""
    from depthlm.inference import make_backend
    from depthlm.settings import resolve_settings
    from depthlm.training.config import render_settings
    from depthlm.training.data import build_dataset, preview

    start = time.perf_counter()
    cfg = task_config(cfg, names, queries_per_task)
    print(f"[1/4] synthetic scenes, {queries_per_task} per task -> {record_set(cfg, '').parent}", flush=True)
    build_task_sets(cfg, names, queries_per_task, progress=progress)
    data = record_set(cfg, names[0])
    base = build_model(cfg)
    steps, train_seconds = cfg.max_steps, None
    if checkpoint:  # score a checkpoint of the run (e.g. while it trains on a busy machine)
        import json

        model_dir = cfg.folder / "sft" / f"checkpoint-{checkpoint}"
        steps = checkpoint
        state = json.loads((model_dir / "trainer_state.json").read_text())
        cfg = replace(cfg, max_steps=int(state["max_steps"]))
    else:
        print(f"[2/4] SFT on {len(names)} tasks: {cfg.max_steps} steps -> {cfg.folder / 'sft'}", flush=True)
        model_dir, train_seconds = train(cfg, base, data)
    # The queries trained: what the recipe's pre-rendering drew (epoch 0, slot i), drawn again.
    data_args, training_args, _ = recipe_arguments(recipe_flags(cfg, base, data))
    settings = resolve_settings(model_dir)
    if settings != render_settings(data_args, grid=settings.grid):
        raise DepthLMError(f"{model_dir}: recorded render settings differ from the recipe's")
    data_args.pre_rendered, data_args.pre_rendered_dir = False, None  # the renderer alone
    _, renderer = build_dataset(data_args, settings, seed=training_args.seed)
    queries = preview(renderer, len(renderer.source))
    counts = {name: sum(q.task == name for q in queries) for name in names}
    if set(counts.values()) != {queries_per_task}:
        raise DepthLMError(f"unbalanced queries {counts}: expected {queries_per_task} per task")
    same_as_trained(queries, cfg.folder / "trained_rows")
    print(f"[3/4] answering the {len(queries)} trained queries ({cfg.backend})", flush=True)
    backend = make_backend(cfg.backend, str(model_dir), settings)
    try:
        texts = backend.generate(queries)
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()
    result = {**score(names, queries, texts), "queries": len(queries), "steps": steps}
    result["train_seconds"] = None if train_seconds is None else round(train_seconds, 1)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["within_10_minutes"] = None if train_seconds is None else train_seconds <= 600
    result["all_at_least_0.9"] = all(result[n] is not None and result[n] >= 0.9 for n in names)
    result["answers"] = list(zip(queries, texts))
    return result


def score(names: list[str], queries: list, texts: list[str]) -> dict:
    """Each task's own metric on its queries, next to its constant answer."""
    from depthlm import tasks as registry

    scores: dict = {}
    detail: dict = {}
    for name in names:
        task = registry.get(name)
        mine = [(q, t) for q, t in zip(queries, texts) if q.task == name]
        truths = [q.truth for q, _ in mine]
        m = task.metrics([task.parse(t) for _, t in mine], truths)
        c = task.metrics([constant(task, truths)] * len(truths), truths)
        key = task.metric_names[0]
        scores[name] = round(float(m[key]), 4) if mine else None
        detail[name] = {
            "metric": key,
            "n": len(mine),
            "constant": round(float(c[key]), 4) if mine else None,
            "parse_failure_rate": round(float(m.get("parse_failure_rate", 0.0)), 4) if mine else None,
        }
    return {**scores, "detail": detail}


def same_as_trained(queries: list, rows_dir: Path) -> None:
    """Stop unless the queries to score are the rows the recipe trained on (same words, same
    images, same order), as its pre-rendering saved them."""
    import datasets

    rows = datasets.load_from_disk(str(rows_dir))
    if len(rows) != len(queries):
        raise DepthLMError(f"{rows_dir}: {len(rows)} trained rows, {len(queries)} queries to score")
    for i, (row, query) in enumerate(zip(rows, queries)):
        want = query.sft_example()
        texts = [[p["text"] for p in m["content"] if p["type"] == "text"] for m in row["messages"]]
        if texts != [[p["text"] for p in m["content"] if p["type"] == "text"] for m in want["messages"]]:
            raise DepthLMError(
                f"{rows_dir}: row {i} was not trained with the words of query {i} ({query.task})"
            )
        if [im.convert("RGB").tobytes() for im in row["images"]] != [im.tobytes() for im in want["images"]]:
            raise DepthLMError(
                f"{rows_dir}: row {i} was not trained with the image(s) of query {i} ({query.task})"
            )


def constant(task, truths: list):
    """The per-task constant answer: the median truth, the commoner letter, or each label's median."""
    import numpy as np

    if task.answer_kind == "choice":
        return max(("A", "B"), key=truths.count)
    if task.answer_kind == "labelled":
        return {
            k: float(np.median([t[k] for t in truths if k in t]))
            for k in sorted({k for t in truths for k in t})
        }
    return float(np.median(truths))


def task_table(result: dict, names: list[str]) -> str:
    """Markdown: per task, the model on its trained queries next to the constant answer."""
    rows = []
    for name in names:
        d = result["detail"][name]
        rows.append(
            [
                name,
                d["metric"],
                table_number(result[name]),
                table_number(d["constant"]),
                d["n"],
                table_number(d["parse_failure_rate"]),
            ]
        )
    head = ["task", "metric", "tiny model, trained queries", "constant", "n", "parse failures"]
    return markdown_table(head, rows, align="ll" + "r" * 4)


def task_figure(answers: list, path: Path) -> Path:
    """One trained query per task as the model saw it (its first image), with truth and answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from depthlm import tasks as registry

    firsts: dict = {}
    for query, text in answers:
        firsts.setdefault(query.task, (query, text))
    n = len(firsts)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, (query, text)) in zip(axes.flat, firsts.items()):
        ax.imshow(query.images[0])
        said = registry.get(name).parse(text)
        ax.set_title(
            f"{name}: true {_truth(query.truth)}\nmodel: {'unparsed' if said is None else _truth(said)}",
            fontsize=8,
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _truth(truth) -> str:
    if isinstance(truth, dict):
        return ", ".join(f"{k} {v:.2f}" for k, v in truth.items())
    return truth if isinstance(truth, str) else f"{truth:.2f}"
