"""``depthlm ask``: how far is a point in my photo? And how far apart are two points?

Examples::

    depthlm ask --model runs/sft --image kitchen.jpg --point 320,240
    depthlm ask --model runs/sft --image kitchen.jpg --point 320,240 --point 610,250 --fov 70
    depthlm ask --model runs/sft --image scan.png --point 100,80 --intrinsics 518.9,519.5,325.6,253.7
    depthlm ask --backend openai --base-url http://127.0.0.1:8000/v1 --model depthlm \\
        --render-settings runs/sft --image kitchen.jpg --point 320,240

Points are X,Y pixels (x column, y row, from the top-left) of the photo as it is displayed
(EXIF orientation applied). Prints each point's answer and metres, the 3D distance between
every two points; ``--save PREFIX`` also writes the marked views it sent (no files otherwise).
"""

from __future__ import annotations

import argparse
import signal
import sys

from depthlm.commands.backend import (  # noqa: F401  (chat and app import these from here too)
    BACKENDS,
    add_backend_arguments,
    backend_from_args,
    backend_kind,
    settings_from_args,
    stop_on_sigterm,
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
        "--save",
        metavar="PREFIX",
        help="also save the views sent, PREFIX-A.png ..., and the marked photo PREFIX-points.png "
        "(default: write no files)",
    )
    p.add_argument("question", nargs="?", help="your own question (default: the model's training question)")


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
    previous = stop_on_sigterm()
    try:
        result = ask(
            backend, photo.image, camera.intrinsics, points, settings, args.question, args.max_tokens
        )
    finally:
        backend.close()
        signal.signal(signal.SIGTERM, previous)
    print(f"question: {result.question}")
    for line in result.lines():
        print(line)
    if args.save:
        saved = save_images(result, photo.image, args.save)
        print("saved: " + ", ".join(str(p) for p in saved))
    return 0
