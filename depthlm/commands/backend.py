"""Command-line options -> a backend: the one place ``depthlm eval``, ``ask``, ``chat`` and
``app`` turn ``--model/--backend/--engine-arg/...`` into render settings and a
:func:`depthlm.inference.make_backend` call."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from depthlm.errors import DepthLMError
from depthlm.inference import stop_on_sigterm  # noqa: F401  (re-exported for the commands)
from depthlm.settings import PRESETS, RenderSettings, resolve_settings

BACKENDS = ("transformers", "vllm", "openai")
BASELINES = ("constant", "median")


def add_backend_arguments(
    p: argparse.ArgumentParser, *, default: str = "transformers", model_required: bool = True
) -> None:
    """Model, backend and engine options (the same flags, meaning the same, in every command)."""
    p.add_argument(
        "--model",
        required=model_required,
        help="model folder or hub id; with --backend openai the served model name; "
        "constant:2.0 or median:TRAIN_DATA for a baseline",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default,
        help=f"transformers, vllm or openai (a running server); default {default} (baselines need none)",
    )
    p.add_argument(
        "--base-url",
        nargs="+",
        help="openai backend: server URL(s), e.g. http://127.0.0.1:8000/v1; several replicas share "
        "the queries (default OPENAI_BASE_URL)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="openai backend: requests in flight per URL")
    p.add_argument(
        "--dtype", default="auto", help="in-process backends: model dtype (auto, float32, bfloat16)"
    )
    p.add_argument("--batch-size", type=int, default=3, help="transformers backend batch size (reference: 3)")
    p.add_argument(
        "--render-settings",
        help="model folder whose depthlm_render.json to use (needed with --backend openai)",
    )
    p.add_argument(
        "--preset", choices=sorted(PRESETS), help="render settings when the model folder records none"
    )
    p.add_argument(
        "--max-tokens", type=int, help="new tokens per answer (default: the template's answer + 8)"
    )
    vllm = p.add_argument_group("vLLM engine (--backend vllm)")
    vllm.add_argument("--tensor-parallel-size", type=int, help="GPUs one model is split over (vLLM TP)")
    vllm.add_argument("--pipeline-parallel-size", type=int, help="pipeline stages (vLLM PP; nodes with Ray)")
    vllm.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any vllm.LLM / EngineArgs argument, repeatable; VALUE is read as YAML "
        "(gpu_memory_utilization=0.8, enforce_eager=true, limit_mm_per_prompt={image: 1})",
    )


def parse_engine_args(items: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` -> {key: value}, values read as YAML/JSON scalars or mappings."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise DepthLMError(f"--engine-arg {item!r}: expected KEY=VALUE, e.g. gpu_memory_utilization=0.8")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as err:
            raise DepthLMError(f"--engine-arg {item!r}: cannot read the value: {err}") from None
    return out


def engine_kwargs(args: argparse.Namespace, config_engine: dict | None = None) -> dict[str, Any]:
    """vLLM engine arguments: the config's ``engine:`` block, then --engine-arg, then the
    parallelism flags (later wins)."""
    engine = dict(config_engine or {})
    engine.update(parse_engine_args(getattr(args, "engine_arg", None)))
    for flag in ("tensor_parallel_size", "pipeline_parallel_size"):
        value = getattr(args, flag, None)
        if value is not None:
            if value < 1:
                raise DepthLMError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
            engine[flag] = value
    return engine


def backend_kind(args: argparse.Namespace) -> str:
    """The backend for --model: baselines (constant:2.0, median:DATA) need none, else --backend."""
    from depthlm.inference import split_model_spec

    if not args.model:
        raise DepthLMError("--model is required")
    kind, _ = split_model_spec(args.model)
    return kind if kind in BASELINES else args.backend


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> RenderSettings:
    """Render settings: the model folder's, or --render-settings / --preset; an openai server's
    model has no folder here, so without either the defaults are used with a warning."""
    kind = backend_kind(args)
    if kind == "openai" and not (args.render_settings or args.preset):
        print(
            "warning: --backend openai without --render-settings or --preset uses the default render "
            "settings; they must match how the served model was trained",
            file=sys.stderr,
        )
    source = args.render_settings or (args.model if kind in ("vllm", "transformers") else None)
    return resolve_settings(source, args.preset, **overrides)


def backend_from_args(
    args: argparse.Namespace,
    settings: RenderSettings,
    config_engine: dict | None = None,
    tasks_asked: list[str] | None = None,
):
    """A backend from depthlm.inference (the one generation layer), built from the shared options.
    `tasks_asked`: tasks the caller will ask beyond the model's own (eval --tasks), for vLLM's
    images-per-prompt limit."""
    import os

    from depthlm.inference import make_backend

    kind = backend_kind(args)
    engine = engine_kwargs(args, config_engine)
    if engine and kind != "vllm":
        raise DepthLMError(
            f"engine arguments ({', '.join(engine)}) are for --backend vllm, not {kind}; "
            "an openai server takes them when it starts (vllm serve --tensor-parallel-size ...)"
        )
    opts: dict[str, Any] = {}
    if kind in ("vllm", "transformers"):
        opts["dtype"] = args.dtype
    if kind == "vllm" and engine:
        opts["engine_kwargs"] = engine
    if kind == "vllm" and tasks_asked:
        opts["tasks_asked"] = list(tasks_asked)
    if kind == "transformers":
        opts["batch_size"] = args.batch_size
    if kind == "openai":
        urls = list(args.base_url or [])
        if not urls and not os.environ.get("OPENAI_BASE_URL"):
            raise DepthLMError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        opts.update(base_url=urls or None, concurrency=args.concurrency)
    return make_backend(kind, args.model, settings, **opts)
