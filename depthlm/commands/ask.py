"""``depthlm ask``: how far is a point in my photo? And how far apart are two points?

Examples::

    depthlm ask --model runs/sft --image kitchen.jpg --point 320,240
    depthlm ask --model runs/sft --image kitchen.jpg --point 320,240 --point 610,250 --fov 70
    depthlm ask --model runs/sft --image scan.png --point 100,80 --intrinsics 518.9,519.5,325.6,253.7
    depthlm ask --backend openai --base-url http://127.0.0.1:8000/v1 --model depthlm \\
        --render-settings runs/sft --image kitchen.jpg --point 320,240

Points are X,Y pixels (x column, y row, from the top-left) of the photo as it is displayed
(EXIF orientation applied). Prints each point's answer and metres, the 3D distance between
every two points, and saves the marked views it sent (``--save PREFIX``).
"""

from __future__ import annotations

import argparse
import signal
import sys

from depthlm.errors import DepthLMError
from depthlm.settings import PRESETS, RenderSettings, resolve_settings

BACKENDS = ("transformers", "vllm", "openai")


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """Model and backend options shared by ask, chat and app."""
    p.add_argument(
        "--model",
        required=True,
        help="model folder or hub id; with --backend openai the served model name; constant:2.0 for a dry run",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="transformers",
        help="transformers (default: quickest start for a few questions), vllm, or openai (a running server)",
    )
    p.add_argument("--base-url", help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument(
        "--dtype", default="auto", help="in-process backends: model dtype (auto, float32, bfloat16)"
    )
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


def add_camera_arguments(p: argparse.ArgumentParser) -> None:
    cam = p.add_mutually_exclusive_group()
    cam.add_argument(
        "--intrinsics", help="fx,fy,cx,cy in pixels of the photo as displayed (or fx,fy,cx,cy,W,H)"
    )
    cam.add_argument("--fov", type=float, help="horizontal field of view in degrees")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_backend_arguments(p)
    p.add_argument("--image", required=True, help="your photo (JPEG, PNG, WebP, ...)")
    p.add_argument(
        "--point",
        action="append",
        required=True,
        metavar="X,Y",
        help="pixel to ask about (repeat for several points)",
    )
    add_camera_arguments(p)
    p.add_argument(
        "--save", default="ask", metavar="PREFIX", help="saves PREFIX-A.png ... and PREFIX-points.png"
    )
    p.add_argument("question", nargs="?", help="your own question (default: the model's training question)")


def backend_kind(args: argparse.Namespace) -> str:
    """The backend for --model: baselines (constant:2.0, median:DATA) need none, else --backend."""
    from depthlm.inference import split_model_spec

    kind, _ = split_model_spec(args.model)
    return kind if kind in ("constant", "median") else args.backend


def settings_from_args(args: argparse.Namespace) -> RenderSettings:
    kind = backend_kind(args)
    if kind == "openai" and not (args.render_settings or args.preset):
        print(
            "note: --backend openai without --render-settings or --preset uses the default render settings; "
            "they must match how the served model was trained",
            file=sys.stderr,
        )
    source = args.render_settings or (args.model if kind in ("vllm", "transformers") else None)
    return resolve_settings(source, args.preset)


def backend_from_args(args: argparse.Namespace, settings: RenderSettings):
    """A backend from depthlm.inference (the one generation layer), built from the shared options."""
    from depthlm.inference import make_backend

    kind = backend_kind(args)
    opts: dict = {}
    if kind in ("vllm", "transformers"):
        opts["dtype"] = args.dtype
    if kind == "openai":
        if not args.base_url:
            raise DepthLMError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        opts["base_url"] = args.base_url
    return make_backend(kind, args.model, settings, **opts)


def stop_on_sigterm() -> None:
    """Make `kill` (SIGTERM) stop a long-running command like Ctrl-C does, so its ``finally``
    shuts the backend down (a vLLM engine runs in a child process that would outlive us)."""

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def camera_lines(camera) -> list[str]:
    lines = [f"camera: {camera.describe()}"]
    if camera.warning:
        lines.append(f"warning: {camera.warning}")
    return lines


def run(args: argparse.Namespace) -> int:
    from depthlm.ask import ask, check_points, load_photo, parse_point, save_images
    from depthlm.intrinsics_guess import guess_camera

    photo = load_photo(args.image)
    points = [parse_point(p) for p in args.point]
    camera = guess_camera(photo.size, photo.exif, intrinsics=args.intrinsics, fov=args.fov)
    check_points(points, photo.size)  # before loading a model: a typo costs nothing
    settings = settings_from_args(args)
    for line in camera_lines(camera):
        print(line, file=sys.stderr if line.startswith("warning") else sys.stdout)
    backend = backend_from_args(args, settings)
    try:
        result = ask(
            backend, photo.image, camera.intrinsics, points, settings, args.question, args.max_tokens
        )
    finally:
        backend.close()
    print(f"question: {result.question}")
    for line in result.lines():
        print(line)
    saved = save_images(result, photo.image, args.save)
    print("saved: " + ", ".join(str(p) for p in saved))
    return 0
